// The contact list: search, channel tabs, segment, keyset pages, selection, bulk consent and removal.
"use strict";
(() => {
  const { api, el, badge, banner, link, download, fillSegments } = window.popsync;
  const root = document.getElementById("contacts");
  const rows = document.getElementById("rows");
  const search = document.getElementById("q");
  const segmentPicker = document.getElementById("segment");
  const selectAll = document.getElementById("select-all");
  const bulk = document.getElementById("bulk");
  const selectedCount = document.getElementById("selected-count");
  const previous = document.getElementById("previous");
  const next = document.getElementById("next");
  const exportLink = document.getElementById("export-link");
  const dialog = document.getElementById("confirm-remove");

  const state = { q: root.dataset.q, channel: root.dataset.channel, segment: root.dataset.segment, cursors: [null], page: 0, next: null };
  const selected = new Set();

  const filters = () => {
    const params = new URLSearchParams();
    if (state.q) params.set("q", state.q);
    if (state.channel) params.set("channel", state.channel);
    if (state.segment) params.set("segment", state.segment);
    return params;
  };

  const syncTabs = () => {
    for (const tab of root.querySelectorAll(".tab")) {
      const on = tab.dataset.channel === state.channel;
      tab.setAttribute("aria-selected", on ? "true" : "false");
      tab.tabIndex = on ? 0 : -1;
    }
  };

  const updateSelection = () => {
    const boxes = rows.querySelectorAll("input[type=checkbox]");
    selectAll.checked = boxes.length > 0 && [...boxes].every((box) => box.checked);
    bulk.hidden = selected.size === 0;
    selectedCount.textContent = selected.size === 1 ? "1 selected" : `${selected.size} selected`;
  };

  const row = (contact) => {
    const box = el("input", { type: "checkbox", "aria-label": "Select " + (contact.name || contact.email || contact.phone || "contact " + contact.id) });
    box.checked = selected.has(contact.id);
    box.addEventListener("change", () => {
      if (box.checked) selected.add(contact.id);
      else selected.delete(contact.id);
      updateSelection();
    });
    const name = el("a", { href: link("/admin/contacts/" + contact.id), text: contact.name || "(no name)" });
    return el("tr", { "data-id": contact.id }, [
      el("td", { class: "check" }, box),
      el("td", {}, name),
      el("td", { text: contact.email || "" }),
      el("td", { text: contact.phone || "" }),
      el("td", {}, badge(contact.email_consent)),
      el("td", {}, badge(contact.sms_consent)),
      el("td", {}, badge(contact.sync_status)),
    ]);
  };

  const load = async () => {
    const params = filters();
    params.set("limit", "50");
    const cursor = state.cursors[state.page];
    if (cursor) params.set("cursor", cursor);
    const query = filters().toString();
    exportLink.href = "/api/v1/contacts/export.csv" + (query ? "?" + query : "");
    history.replaceState(null, "", link("/admin/contacts" + (query ? "?" + query : "")));
    root.setAttribute("aria-busy", "true");
    const result = await api("/api/v1/contacts?" + params.toString());
    root.removeAttribute("aria-busy");
    if (!result.ok) {
      if (result.status !== 401) banner((result.data && result.data.error) || "The contacts could not be loaded.", "critical");
      return;
    }
    rows.replaceChildren(...result.data.contacts.map(row));
    document.getElementById("empty").hidden = result.data.contacts.length > 0;
    state.next = result.data.next_cursor;
    next.disabled = !state.next;
    previous.disabled = state.page === 0;
    updateSelection();
    root.dataset.loaded = String(Date.now());
  };

  const restart = () => {
    state.cursors = [null];
    state.page = 0;
    selected.clear();
    load();
  };

  document.getElementById("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    state.q = search.value.trim();
    restart();
  });
  segmentPicker.addEventListener("change", () => {
    state.segment = segmentPicker.value;
    restart();
  });
  const tabs = [...root.querySelectorAll(".tab")];
  tabs.forEach((tab, index) => {
    tab.addEventListener("click", () => {
      state.channel = tab.dataset.channel;
      syncTabs();
      restart();
    });
    // Arrow keys move between tabs, as in any tab list.
    tab.addEventListener("keydown", (event) => {
      const step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
      if (!step) return;
      const target = tabs[(index + step + tabs.length) % tabs.length];
      target.focus();
      target.click();
    });
  });
  selectAll.addEventListener("change", () => {
    for (const box of rows.querySelectorAll("input[type=checkbox]")) {
      box.checked = selectAll.checked;
      const id = Number(box.closest("tr").dataset.id);
      if (selectAll.checked) selected.add(id);
      else selected.delete(id);
    }
    updateSelection();
  });
  next.addEventListener("click", () => {
    if (!state.next) return;
    state.cursors[state.page + 1] = state.next;
    state.page += 1;
    load();
  });
  previous.addEventListener("click", () => {
    if (state.page === 0) return;
    state.page -= 1;
    load();
  });
  exportLink.addEventListener("click", (event) => {
    event.preventDefault();
    download(exportLink.getAttribute("href"), "contacts.csv");
  });

  document.getElementById("bulk-consent").addEventListener("click", async () => {
    const channel = document.getElementById("bulk-channel").value;
    const chosen = document.getElementById("bulk-state").value;
    const result = await api("/api/v1/contacts/consent", { method: "POST", json: { ids: [...selected], channel, state: chosen } });
    if (!result.ok) return banner((result.data && (result.data.error || JSON.stringify(result.data.errors))) || "The change failed.", "critical");
    banner(`${result.data.updated} contact${result.data.updated === 1 ? "" : "s"} changed.`, "success");
    selected.clear();
    load();
  });

  document.getElementById("bulk-remove").addEventListener("click", () => {
    document.getElementById("confirm-text").textContent =
      selected.size === 1 ? "Remove 1 contact from popsync?" : `Remove ${selected.size} contacts from popsync?`;
    dialog.showModal();
  });
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "remove") return;
    const result = await api("/api/v1/contacts/delete", { method: "POST", json: { ids: [...selected] } });
    if (!result.ok) return banner("The contacts could not be removed.", "critical");
    banner(`${result.data.deleted} contact${result.data.deleted === 1 ? "" : "s"} removed.`, "success");
    selected.clear();
    load();
  });

  syncTabs();
  fillSegments(segmentPicker, state.segment);
  load();
})();
