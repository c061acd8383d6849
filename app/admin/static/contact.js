// One contact: edit its fields (422s shown next to them), consent with its evidence, events, sync.
"use strict";
(() => {
  const { api, el, badge, banner, when, clearErrors, showErrors } = window.popsync;
  const root = document.getElementById("contact");
  const id = root.dataset.id;
  const form = document.getElementById("contact-form");
  const FIELDS = ["first_name", "last_name", "email", "phone", "birthday", "country", "gender", "email_consent", "sms_consent"];
  const PLATFORM = root.dataset.platform === "shopline" ? "SHOPLINE" : "Shopify";
  let loaded = null;
  let formNames = {};

  const SYNC_WORDS = {
    pending: () => `Waiting to be written to the ${PLATFORM} customer; the worker does it within seconds.`,
    synced: () => `The ${PLATFORM} customer has this contact's details.`,
    local: () => `Kept in popsync only: it was imported without writing to the store's customers.`,
    conflict: (detail) =>
      `${PLATFORM} allows one customer per email and one per phone, and another customer already holds ` +
      `this contact's email or phone, so that part was not written. ${detail || ""} Merge the customers in ` +
      `${PLATFORM}, or change this contact's email or phone, then retry.`,
    failed: (detail) =>
      `${PLATFORM} kept refusing the write, or could not be reached, for too long. ${detail || ""} ` +
      `Retry sends it again.`,
  };

  const customerLink = (contact) => {
    const target = document.getElementById("customer");
    target.replaceChildren();
    const customerId = contact.platform_customer_id;
    if (!customerId) {
      target.textContent = `Not linked to a ${PLATFORM} customer yet.`;
      return;
    }
    const number = String(customerId).split("/").pop();
    if (root.dataset.platform === "shopify" && /^\d+$/.test(number)) {
      const href = `https://${root.dataset.domain}/admin/customers/${number}`;
      target.append(el("a", { href, target: "_top", rel: "noopener", text: "Open the customer in Shopify" }));
    } else {
      target.append(`${PLATFORM} customer `, el("code", { text: customerId }));
    }
  };

  const evidence = (contact) => {
    const box = document.getElementById("evidence");
    box.replaceChildren();
    const submitted = (contact.events || []).filter((event) => event.kind === "submitted");
    for (const [channel, label] of [["email", "Email"], ["sms", "SMS"]]) {
      const proof = submitted.find((event) => event[channel + "_consent"] === true);
      const heading = el("h3", {}, [label + " ", badge(contact[channel + "_consent"])]);
      box.append(heading);
      if (!proof) {
        box.append(el("p", { class: "muted", text: "No consent given on a popup form." }));
        continue;
      }
      const rows = [
        ["Form", formNames[proof.form_id] || (proof.form_id ? "Form " + proof.form_id : "—")],
        ["Text shown", proof[channel + "_consent_text"] || "—"],
        ["Page", proof.page_url || "—"],
        ["Time", when(proof.submitted_at || proof.occurred_at)],
        ["Client address", proof.client_ip || "—"],
      ];
      box.append(el("dl", { class: "evidence" }, rows.flatMap(([term, value]) => [el("dt", { text: term }), el("dd", { text: value })])));
    }
  };

  const EVENT_WORDS = {
    submitted: "Filled in a popup form", opened: "Opened an email", clicked: "Clicked a link", imported: "Imported from a CSV file",
    mirrored: "Changed in the store", edited: "Edited by you", unsubscribed: "Unsubscribed",
  };
  const events = (contact) => {
    const list = document.getElementById("events");
    const items = (contact.events || []).map((event) => {
      const detail = event.page_url || event.url || event.message_id || event.filename || "";
      return el("li", {}, [
        el("div", { text: EVENT_WORDS[event.kind] || event.kind }),
        detail ? el("div", { class: "muted", text: String(detail) }) : null,
        el("div", { class: "when", text: when(event.occurred_at) }),
      ]);
    });
    list.replaceChildren(...(items.length ? items : [el("li", { class: "muted", text: "Nothing yet." })]));
  };

  const sync = (contact) => {
    const words = SYNC_WORDS[contact.sync_status];
    document.getElementById("sync-badge").replaceWith(Object.assign(badge(contact.sync_status), { id: "sync-badge" }));
    document.getElementById("sync-words").textContent = words ? words(contact.sync_detail) : contact.sync_detail || "";
    document.getElementById("retry").hidden = !["conflict", "failed"].includes(contact.sync_status);
  };

  const show = (contact) => {
    loaded = contact;
    for (const name of FIELDS) {
      const input = document.getElementById("f-" + name);
      input.value = contact[name] == null ? "" : contact[name];
    }
    document.getElementById("f-tags").value = (contact.tags || []).join(", ");
    customerLink(contact);
    evidence(contact);
    events(contact);
    sync(contact);
    document.getElementById("tags").textContent = (contact.tags || []).length ? "Tags: " + contact.tags.join(", ") : "No tags.";
    document.getElementById("source").textContent = "First came from: " + (contact.source || "—") + " · added " + when(contact.created_at);
    document.querySelector(".page-header h1").textContent = contact.name || contact.email || contact.phone || "Contact";
    root.dataset.loaded = String(Date.now());
  };

  const load = async () => {
    const [result, formsResult] = await Promise.all([api("/api/v1/contacts/" + id), api("/api/v1/forms")]);
    if (formsResult.ok && formsResult.data) {
      formNames = Object.fromEntries((formsResult.data.forms || []).map((f) => [String(f.id), f.name]));
    }
    if (!result.ok) return banner("The contact could not be loaded.", "critical");
    show(result.data);
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const changes = {};
    for (const name of FIELDS) {
      const value = document.getElementById("f-" + name).value.trim();
      const before = loaded[name] == null ? "" : String(loaded[name]);
      if (value !== before) changes[name] = value === "" ? null : value;
    }
    // Tags as typed: trimmed, empty ones dropped, each once, in their order.
    const tags = [...new Set(document.getElementById("f-tags").value.split(",").map((t) => t.trim()).filter(Boolean))];
    if (tags.join("\n") !== (loaded.tags || []).join("\n")) changes.tags = tags;
    if (!Object.keys(changes).length) return banner("Nothing to save.");
    const result = await api("/api/v1/contacts/" + id, { method: "PATCH", json: changes });
    if (result.status === 422) {
      showErrors(form, result.data && result.data.errors, document.getElementById("form-error"));
      return banner("Some fields need a look.", "critical");
    }
    if (!result.ok) return banner((result.data && result.data.error) || "The contact could not be saved.", "critical");
    banner("Saved.", "success");
    load();
  });

  document.getElementById("retry").addEventListener("click", async () => {
    const result = await api(`/api/v1/contacts/${id}/retry-sync`, { method: "POST" });
    banner(result.ok ? "Queued again: the worker retries it now." : "The retry could not be queued.", result.ok ? "success" : "critical");
    if (result.ok) setTimeout(load, 1500);
  });

  load();
})();
