// Import a CSV: upload, follow the worker's progress, read and download the report.
"use strict";
(() => {
  const { api, el, banner, clearErrors, showErrors, download } = window.popsync;
  const form = document.getElementById("import-form");
  const bar = document.getElementById("progress-bar");
  const progressText = document.getElementById("progress-text");
  const estimate = document.getElementById("estimate");
  let current = null;

  const duration = (seconds) =>
    seconds < 90 ? `about ${Math.max(1, Math.round(seconds))} seconds` : seconds < 5400 ? `about ${Math.round(seconds / 60)} minutes` : `about ${Math.round(seconds / 3600)} hours`;

  const show = (record) => {
    const total = record.total || 0;
    const percent = record.status === "done" ? 100 : total ? Math.floor((100 * record.processed) / total) : 0;
    bar.style.width = percent + "%";
    bar.setAttribute("aria-valuenow", String(percent));
    const words = { queued: "Waiting for the worker…", running: "Importing…", done: "Done.", failed: "The import failed." }[record.status] || record.status;
    progressText.textContent = `${words} ${record.processed} of ${total || "?"} rows.` + (record.detail ? " " + record.detail : "");
    document.getElementById("progress-card").dataset.status = record.status;
    if (record.estimated_platform_seconds) {
      estimate.textContent = `Writing to the store's customers takes ${duration(record.estimated_platform_seconds)} after the import (the store's API rate limit).`;
    }
    if (record.status !== "done" && record.status !== "failed") return false;
    const report = document.getElementById("report");
    for (const key of ["created", "updated", "skipped"]) document.getElementById("r-" + key).textContent = String(record[key]);
    const errors = record.errors || [];
    document.getElementById("r-errors").textContent = String(record.error_count ?? errors.length);
    document.getElementById("error-rows").replaceChildren(
      ...errors.map((error) => el("tr", {}, [el("td", { text: String(error.row) }), el("td", { text: error.message })])),
    );
    document.getElementById("error-table").hidden = errors.length === 0;
    report.hidden = false;
    return true;
  };

  const poll = async () => {
    const result = await api("/api/v1/imports/" + current);
    if (!result.ok) {
      banner("The import's progress could not be read; retrying…", "critical");
      setTimeout(poll, 2000);
      return;
    }
    banner("");
    if (!show(result.data)) setTimeout(poll, 500);
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const file = document.getElementById("file").files[0];
    if (!file) return showErrors(form, { file: "Choose a CSV file" });
    const data = new FormData();
    data.append("file", file);
    if (document.getElementById("write-platform").checked) data.append("write_platform", "true");
    const start = document.getElementById("start");
    start.disabled = true;
    const result = await api("/api/v1/imports", { method: "POST", body: data });
    start.disabled = false;
    if (result.status === 422) return showErrors(form, result.data.errors, document.getElementById("form-error"));
    if (!result.ok) return banner((result.data && result.data.error) || "The file could not be uploaded.", "critical");
    follow(result.data.id, result.data);
    // The import's id in the address: reloading the page, or coming back to it, follows the same import.
    const address = new URL(location.href);
    address.searchParams.set("import", String(current));
    history.replaceState(null, "", address);
  });

  const follow = (id, record) => {
    current = id;
    document.getElementById("report").hidden = true;
    document.getElementById("progress-card").hidden = false;
    if (record) show(record);
    poll();
  };

  const resumed = new URLSearchParams(location.search).get("import");
  if (resumed && /^[0-9]{1,18}$/.test(resumed)) follow(resumed, null);

  document.getElementById("report-link").addEventListener("click", (event) => {
    event.preventDefault();
    if (current) download(`/api/v1/imports/${current}/report.csv`, `import-${current}-report.csv`);
  });
})();
