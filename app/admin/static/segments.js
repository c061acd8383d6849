// The segment list with live counts.
"use strict";
(() => {
  const { api, el, banner, link } = window.popsync;
  const OPS = {
    present: "is present", absent: "is absent", is: "is", is_not: "is not", in: "is one of", not_in: "is none of",
    within_days: "within the last (days)", not_within_days: "not within the last (days)", submitted: "submitted",
    not_submitted: "did not submit", has: "has", has_not: "does not have",
  };
  const describe = (condition) => {
    const value = Array.isArray(condition.value) ? condition.value.join(", ") : condition.value;
    return [condition.field.replace(/_/g, " "), OPS[condition.op] || condition.op, value == null ? "" : value].join(" ").trim();
  };
  (async () => {
    const result = await api("/api/v1/segments");
    if (!result.ok) return banner("The segments could not be loaded.", "critical");
    const list = result.data.segments || [];
    document.getElementById("segment-rows").replaceChildren(
      ...list.map((segment) =>
        el("tr", {}, [
          el("td", {}, el("a", { href: link("/admin/segments/" + segment.id), text: segment.name })),
          el("td", { text: segment.match === "any" ? "Any condition" : "All conditions" }),
          el("td", { text: segment.conditions.map(describe).join("; ") || "Every contact" }),
          el("td", {}, el("a", { href: link("/admin/contacts?segment=" + segment.id), text: String(segment.count) })),
        ]),
      ),
    );
    document.getElementById("empty").hidden = list.length > 0;
  })();
})();
