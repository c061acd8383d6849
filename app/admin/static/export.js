// Export: the contact list's filters, then the CSV.
"use strict";
(() => {
  const { download, fillSegments } = window.popsync;
  const form = document.getElementById("export-form");
  fillSegments(document.getElementById("segment"), new URLSearchParams(location.search).get("segment"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const name of ["q", "channel", "segment"]) {
      const value = form.elements[name].value.trim();
      if (value) params.set(name, value);
    }
    const query = params.toString();
    download("/api/v1/contacts/export.csv" + (query ? "?" + query : ""), "contacts.csv");
  });
})();
