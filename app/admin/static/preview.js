// The popup preview (GET /admin/forms/preview, framed by the form editor). The real popup.js runs here
// unchanged: this script, which runs first, answers its forms request with the form being edited (asked
// from the editor page, same origin), answers a submission with success without sending it, and says
// "no tracking" through the privacy API the script honours, so previews are never counted as views.
"use strict";
(() => {
  let wanted = null;
  try {
    wanted = window.parent !== window && window.parent.popsyncPreviewForm ? window.parent.popsyncPreviewForm() : null;
  } catch (error) {
    wanted = null; // not framed by popsync: an empty preview
  }
  if (wanted && wanted.locale) document.documentElement.lang = wanted.locale;
  const countriesNode = document.getElementById("preview-countries");
  const countries = countriesNode ? JSON.parse(countriesNode.textContent) : [];
  // "Already seen" memory of earlier previews must not hide this one.
  try {
    for (const key of Object.keys(localStorage)) if (key.startsWith("popsync:preview.popsync.invalid")) localStorage.removeItem(key);
  } catch (error) {
    /* storage blocked: the popup falls back to a cookie that this page never keeps */
  }
  // The popup focuses its first field when it opens; in the preview that would take the caret away from
  // the editor field the merchant is typing in, so focus moves only once the preview itself has focus.
  const focus = HTMLElement.prototype.focus;
  HTMLElement.prototype.focus = function (options) {
    if (document.hasFocus()) focus.call(this, options);
  };
  window.Shopify = { customerPrivacy: { analyticsProcessingAllowed: () => false } };
  const json = (body) => Promise.resolve(new Response(JSON.stringify(body), { status: 200, headers: { "Content-Type": "application/json" } }));
  const realFetch = window.fetch.bind(window);
  window.fetch = (input, init) => {
    const url = String(input && input.url ? input.url : input);
    if (url.includes("/storefront/forms?")) return json({ forms: wanted ? [wanted.form] : [], countries });
    if (url.includes("/submissions")) return json({ ok: true });
    return realFetch(input, init);
  };
})();
