// The popup forms with their last 30 days' figures.
"use strict";
(() => {
  const { api, el, banner, badge, link } = window.popsync;
  const TEMPLATES = { newsletter: "Newsletter", email_sms: "Email and SMS", profile: "Profile" };
  (async () => {
    const result = await api("/api/v1/forms");
    if (!result.ok) return banner("The forms could not be loaded.", "critical");
    const forms = result.data.forms || [];
    document.getElementById("form-rows").replaceChildren(
      ...forms.map((form) => {
        const stats = form.stats || {};
        const rate = stats.conversion_rate == null ? "—" : (100 * stats.conversion_rate).toFixed(1) + "%";
        const status = badge(form.active ? "on" : "off");
        status.textContent = form.active ? "Active" : "Off";
        return el("tr", {}, [
          el("td", {}, el("a", { href: link("/admin/forms/" + form.id), text: form.name })),
          el("td", { text: TEMPLATES[form.template] || form.template }),
          el("td", {}, status),
          el("td", { text: String(stats.views ?? 0) }),
          el("td", { text: String(stats.submissions ?? 0) }),
          el("td", { text: rate }),
        ]);
      }),
    );
    document.getElementById("empty").hidden = forms.length > 0;
  })();
})();
