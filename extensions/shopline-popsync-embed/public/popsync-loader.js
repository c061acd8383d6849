/*! popsync SHOPLINE embed loader | MIT | extensions/shopline-popsync-embed/public/popsync-loader.js */
// SHOPLINE's embed block renders #popsync-root with the app's address; this loader completes the
// attributes SHOPLINE only exposes to scripts (window.Shopline.handle and .locale, both documented)
// and then loads the popup the app serves at <app-url>/storefront/popup.js, the same file Shopify ships
// as an extension asset. window.Shopline.customer is unsigned: the popup may use it to prefill the
// form, never to identify anyone, so no customer id is put on the root.
(function () {
  function load() {
    try {
      var root = document.getElementById("popsync-root");
      var shopline = window.Shopline || {};
      var appUrl = root && (root.getAttribute("data-app-url") || "").replace(/\/+$/, "");
      if (!appUrl || document.querySelector("script[data-popsync]")) return;
      if (!root.getAttribute("data-shop") && shopline.handle) {
        root.setAttribute("data-shop", shopline.handle + ".myshopline.com");
      }
      if (!root.getAttribute("data-locale") && shopline.locale) {
        root.setAttribute("data-locale", shopline.locale);
      }
      var script = document.createElement("script");
      script.src = appUrl + "/storefront/popup.js";
      script.defer = true;
      script.setAttribute("data-popsync", "");
      document.head.appendChild(script);
    } catch (error) {
      // never break the storefront
    }
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", load);
  else load();
})();
