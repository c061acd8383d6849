// The dashboard's and the embed page's live cards: the app embed's state and the latest customer pull.
"use strict";
(() => {
  const { api, el, badge } = window.popsync;

  const embedCard = async () => {
    const state = document.getElementById("embed-state");
    if (!state) return;
    const linkNode = document.getElementById("embed-link");
    const badgeNode = document.getElementById("embed-badge");
    state.textContent = "Checking the live theme…";
    const result = await api("/api/v1/storefront-embed");
    if (!result.ok) {
      state.textContent = "The embed's state could not be read.";
      return;
    }
    const info = result.data;
    state.textContent = info.detail || "";
    if (badgeNode) {
      const word = info.enabled === true ? "on" : info.enabled === false ? "off" : "";
      badgeNode.className = "badge " + word;
      badgeNode.textContent = info.enabled === true ? "On" : info.enabled === false ? "Off" : "Unknown";
    }
    if (info.activate_url) {
      linkNode.href = info.activate_url;
      linkNode.hidden = info.enabled === true && !badgeNode;
    }
    document.getElementById("embed-card").dataset.enabled = String(info.enabled);
  };

  const pullCard = async () => {
    const state = document.getElementById("pull-state");
    if (!state) return;
    const result = await api("/api/v1/customer-pulls");
    const pull = result.ok && result.data.pulls && result.data.pulls[0];
    if (!pull) {
      state.textContent = result.ok ? "The store's customers have not been read yet." : "The customer pull could not be read.";
      return;
    }
    const kind = pull.kind === "backfill" ? "Reading every store customer" : "Reading changed store customers";
    state.replaceChildren(el("span", { text: kind + " " }), badge(pull.status));
    const progress = document.getElementById("pull-progress");
    const bar = progress.querySelector(".progress-bar");
    const percent = pull.status === "done" ? 100 : pull.total ? Math.floor((100 * pull.processed) / pull.total) : 0;
    bar.style.width = percent + "%";
    bar.setAttribute("aria-valuenow", String(percent));
    progress.hidden = false;
    state.append(
      el("span", { class: "muted", text: ` ${pull.processed}${pull.total ? " of " + pull.total : ""} read, ${pull.created} new, ${pull.updated} updated.` }),
    );
    if (pull.error) state.append(el("span", { class: "field-error", text: " " + pull.error }));
    if (pull.status === "queued" || pull.status === "running") setTimeout(pullCard, 3000);
  };

  const refresh = document.getElementById("embed-refresh");
  if (refresh) refresh.addEventListener("click", embedCard);
  embedCard();
  pullCard();
})();
