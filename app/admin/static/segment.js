// The segment builder: match all/any, conditions added and removed, a live count while editing.
// The count comes from POST /admin/segments/count (the same validation and SQL as the API's segments),
// so nothing is saved until the merchant presses Save.
"use strict";
(() => {
  const { api, el, banner, link, clearErrors, showErrors, debounce } = window.popsync;
  const form = document.getElementById("segment-form");
  const list = document.getElementById("conditions");
  const id = form.dataset.id;
  const countNode = document.getElementById("count");
  const countNote = document.getElementById("count-note");
  const CONSENT = ["subscribed", "not_subscribed", "pending", "unsubscribed"];
  // The conditions of app/contacts/segments.py: field -> [label, ops, kind of value].
  const FIELDS = {
    email_consent: ["Email consent", ["is", "is_not"], CONSENT],
    sms_consent: ["SMS consent", ["is", "is_not"], CONSENT],
    email: ["Email", ["present", "absent"], "none"],
    phone: ["Phone", ["present", "absent"], "none"],
    country: ["Country", ["in", "not_in"], "countries"],
    gender: ["Gender", ["is", "is_not"], ["female", "male", "other", "unspecified"]],
    birthday_month: ["Birthday month", ["is"], "month"],
    created_at: ["Added", ["within_days", "not_within_days"], "days"],
    updated_at: ["Updated", ["within_days", "not_within_days"], "days"],
    source: ["Came from", ["is", "is_not"], ["form", "open", "click", "import", "platform", "merchant"]],
    form: ["Popup form", ["submitted", "not_submitted"], "form"],
    tag: ["Tag", ["has", "has_not"], "tag"],
    opened: ["Opened an email", ["within_days", "not_within_days"], "days"],
    clicked: ["Clicked a link", ["within_days", "not_within_days"], "days"],
    sync_status: ["Sync status", ["is", "is_not"], ["pending", "synced", "conflict", "failed", "local"]],
  };
  const OPS = {
    present: "is present", absent: "is absent", is: "is", is_not: "is not", in: "is one of", not_in: "is none of",
    within_days: "within the last", not_within_days: "not within the last", submitted: "submitted",
    not_submitted: "did not submit", has: "has", has_not: "does not have",
  };
  let forms = [];
  let serial = 0;

  const options = (select, pairs, chosen) => {
    select.replaceChildren(...pairs.map(([value, label]) => el("option", { value, text: label })));
    if (chosen !== undefined && chosen !== null) select.value = String(chosen);
  };

  const valueControl = (kind, value, id) => {
    if (kind === "none") return el("span", { class: "muted", text: "" });
    if (Array.isArray(kind) || kind === "form") {
      const select = el("select", { id, class: "value" });
      const pairs = kind === "form" ? forms.map((f) => [String(f.id), f.name]) : kind.map((v) => [v, v.replace(/_/g, " ")]);
      options(select, pairs, value);
      return select;
    }
    const input = el("input", { id, class: "value", type: ["month", "days"].includes(kind) ? "number" : "text" });
    if (kind === "month") Object.assign(input, { min: 1, max: 12 });
    if (kind === "days") input.min = 1;
    if (kind === "countries") input.placeholder = "US, CA";
    input.value = Array.isArray(value) ? value.join(", ") : value == null ? "" : String(value);
    return input;
  };

  const readValue = (kind, control) => {
    if (kind === "none") return null;
    const raw = control.value.trim();
    if (kind === "countries") return raw.split(/[\s,]+/).filter(Boolean).map((code) => code.toUpperCase());
    if (kind === "month" || kind === "days") return raw === "" ? null : Number(raw);
    return raw;
  };

  const addCondition = (condition = { field: "email_consent", op: "is", value: "subscribed" }) => {
    const n = ++serial;
    const item = el("li", {});
    const fieldSelect = el("select", { id: `c${n}-field`, class: "field-name" });
    options(fieldSelect, Object.entries(FIELDS).map(([key, spec]) => [key, spec[0]]), condition.field);
    const opSelect = el("select", { id: `c${n}-op`, class: "op" });
    const valueSlot = el("div", { class: "field" });
    const render = (value) => {
      const [, ops, kind] = FIELDS[fieldSelect.value];
      options(opSelect, ops.map((op) => [op, OPS[op]]), ops.includes(condition.op) ? condition.op : ops[0]);
      const control = valueControl(kind, value, `c${n}-value`);
      valueSlot.replaceChildren(
        el("label", { for: control.id || null, class: control.id ? "" : "visually-hidden", text: "Value" }),
        control,
        el("p", { class: "field-error", "data-error-slot": "value" }),
      );
      item.dataset.kind = typeof kind === "string" ? kind : "choice";
    };
    const remove = el("button", { type: "button", class: "button", text: "Remove", "aria-label": "Remove this condition" });
    remove.addEventListener("click", () => {
      item.remove();
      recount();
    });
    fieldSelect.addEventListener("change", () => {
      condition = { field: fieldSelect.value };
      render(null);
      recount();
    });
    item.append(
      el("div", { class: "field" }, [el("label", { for: fieldSelect.id, text: "Field" }), fieldSelect]),
      el("div", { class: "field" }, [el("label", { for: opSelect.id, text: "Condition" }), opSelect]),
      valueSlot,
      remove,
    );
    list.append(item);
    render(condition.value);
    return item;
  };

  const spec = () => ({
    name: document.getElementById("s-name").value.trim(),
    match: form.querySelector("input[name=match]:checked").value,
    conditions: [...list.children].map((item) => {
      const field = item.querySelector(".field-name").value;
      const kind = FIELDS[field][2];
      return { field, op: item.querySelector(".op").value, value: readValue(kind, item.querySelector(".value") || {}) };
    }),
  });

  // Errors name conditions by position ("conditions[2].value"): shown under that condition.
  const placeErrors = (errors) => {
    const rest = {};
    for (const [key, message] of Object.entries(errors || {})) {
      const found = /^conditions\[(\d+)\]/.exec(key);
      const item = found && list.children[Number(found[1])];
      const slot = item && item.querySelector("[data-error-slot]");
      if (slot) slot.textContent = message;
      else rest[key] = message;
    }
    showErrors(form, rest, document.getElementById("form-error"));
  };

  const recount = debounce(async () => {
    const body = spec();
    countNote.textContent = "counting…";
    const result = await api("/admin/segments/count", { method: "POST", json: { match: body.match, conditions: body.conditions } });
    clearErrors(list);
    if (result.status === 422) {
      countNode.textContent = "—";
      countNote.textContent = "finish the conditions to see a count";
      placeErrors(result.data.errors);
      return;
    }
    if (!result.ok) return (countNote.textContent = "the count is not available");
    countNode.textContent = String(result.data.count);
    countNote.textContent = result.data.count === 1 ? "contact matches" : "contacts match";
    form.dataset.counted = String(result.data.count);
  }, 300);

  form.addEventListener("input", recount);
  form.addEventListener("change", recount);
  document.getElementById("add-condition").addEventListener("click", () => {
    const item = addCondition();
    item.querySelector("select").focus();
    recount();
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const result = await api(id ? "/api/v1/segments/" + id : "/api/v1/segments", { method: id ? "PATCH" : "POST", json: spec() });
    if (result.status === 422) return placeErrors(result.data.errors);
    if (!result.ok) return banner("The segment could not be saved.", "critical");
    if (!id) {
      location.href = link("/admin/segments/" + result.data.id);
      return;
    }
    banner("Saved.", "success");
  });

  const remove = document.getElementById("delete");
  remove.addEventListener("click", async () => {
    if (!window.confirm("Delete this segment? Its contacts stay.")) return;
    const result = await api("/api/v1/segments/" + id, { method: "DELETE" });
    if (result.ok) location.href = link("/admin/segments");
    else banner("The segment could not be deleted.", "critical");
  });

  (async () => {
    const formsResult = await api("/api/v1/forms");
    forms = (formsResult.ok && formsResult.data.forms) || [];
    if (id) {
      const result = await api("/api/v1/segments/" + id);
      if (!result.ok) return banner("The segment could not be loaded.", "critical");
      document.getElementById("s-name").value = result.data.name;
      form.querySelector(`input[name=match][value="${result.data.match}"]`).checked = true;
      result.data.conditions.forEach((condition) => addCondition(condition));
      remove.hidden = false;
    } else {
      addCondition();
    }
    recount();
  })();
})();
