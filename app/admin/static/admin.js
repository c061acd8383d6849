// popsync admin: what every page shares. No framework: small helpers over fetch and the DOM.
// Data is always put on the page with textContent (never as HTML), so nothing a shopper typed can run here.
"use strict";
(() => {
  const body = document.body;
  const embedded = body.dataset.embedded === "1";
  const csrfMeta = document.querySelector('meta[name="popsync-csrf"]');
  const csrf = csrfMeta ? csrfMeta.content : "";
  const linkQuery = body.dataset.linkQuery || "";
  const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

  // Inside the Shopify admin, App Bridge's fetch adds a fresh session token to requests to this app;
  // on its own the page's cookie goes along and unsafe methods carry the session's CSRF token.
  const api = async (path, options = {}) => {
    const method = (options.method || "GET").toUpperCase();
    const headers = { Accept: "application/json", ...(options.headers || {}) };
    let payload = options.body;
    if (options.json !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(options.json);
    }
    if (!embedded && UNSAFE.has(method)) headers["X-Popsync-CSRF"] = csrf;
    const response = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
    let data = null;
    if (response.status !== 204 && (response.headers.get("Content-Type") || "").includes("json")) {
      data = await response.json().catch(() => null);
    }
    if (response.status === 401) banner("Your popsync session has ended: open popsync again from your store admin.", "critical");
    return { status: response.status, ok: response.ok, data, response };
  };

  const link = (path) => (linkQuery ? path + (path.includes("?") ? "&" : "?") + linkQuery : path);

  const el = (tag, attrs = {}, children = []) => {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else if (name === "class") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of [].concat(children)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  };

  const banner = (message, kind = "") => {
    const node = document.getElementById("banner");
    if (!node) return;
    node.className = "banner " + kind;
    node.textContent = message;
    node.hidden = !message;
  };

  const WORDS = {
    subscribed: "Subscribed", unsubscribed: "Unsubscribed", not_subscribed: "Not subscribed", pending: "Pending",
    synced: "Synced", conflict: "Conflict", failed: "Failed", local: "In popsync only",
    queued: "Queued", running: "Running", done: "Done",
  };
  const badge = (value) => el("span", { class: "badge " + (value || ""), text: WORDS[value] || value || "—" });

  const when = (iso) => {
    if (!iso) return "";
    const moment = new Date(iso);
    return Number.isNaN(moment.getTime()) ? iso : moment.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  };

  const clearErrors = (root) => {
    for (const slot of root.querySelectorAll(".field-error, .form-error")) slot.textContent = "";
    for (const input of root.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  };

  // A 422's errors next to the fields they name (by data-error-for, or the id e-<field>); the rest, with
  // their field's name, in the form's summary line. Focus goes to the first invalid field.
  const showErrors = (root, errors, summary) => {
    const left = [];
    let first = null;
    for (const [field, message] of Object.entries(errors || {})) {
      const slot = root.querySelector(`[data-error-for="${CSS.escape(field)}"]`) || document.getElementById("e-" + field);
      if (!slot) {
        left.push(`${field.replace(/_/g, " ")}: ${message}`);
        continue;
      }
      slot.textContent = message;
      const input = slot.id ? root.querySelector(`[aria-describedby~="${CSS.escape(slot.id)}"]`) : null;
      if (input) {
        input.setAttribute("aria-invalid", "true");
        first = first || input;
      }
    }
    if (summary) summary.textContent = left.join(" · ");
    if (first) first.focus();
    else if (summary && left.length) summary.focus && summary.setAttribute("tabindex", "-1");
  };

  // A file from the API: fetched (so an embedded page's session token goes along), then saved.
  const download = async (path, filename) => {
    const result = await api(path, { headers: { Accept: "text/csv" } });
    if (!result.ok) {
      banner("The download failed (" + result.status + "). Try again.", "critical");
      return false;
    }
    const blob = await result.response.blob();
    const url = URL.createObjectURL(blob);
    const anchor = el("a", { href: url, download: filename });
    document.body.append(anchor);
    anchor.click();
    anchor.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    return true;
  };

  const debounce = (fn, ms) => {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  };

  // Segments for a picker; a failure leaves the picker with its "All contacts" choice.
  const fillSegments = async (select, chosen) => {
    const result = await api("/api/v1/segments");
    const list = (result.ok && result.data && result.data.segments) || [];
    for (const segment of list) {
      select.append(el("option", { value: segment.id, text: segment.name }));
    }
    if (chosen) select.value = String(chosen);
    return list;
  };

  window.popsync = { api, link, el, banner, badge, when, clearErrors, showErrors, download, debounce, fillSegments, embedded, WORDS };
})();
