/*! popsync (MIT) storefront_js/popup.js */
// The storefront popup: one dependency-free script, loaded with `defer` by the theme app embed.
// The protocol with the server is docs/storefront.md. Rules this file keeps, and why:
// - Nothing here may break the host page: every entry point (start, timers, listeners) runs through
//   guard(), which swallows errors, and every promise chain ends in a catch.
// - Nothing is inserted into the page before a trigger fires (no layout shift, tiny load-time work):
//   the only work at load is reading the root's attributes and one idle-time fetch of the forms.
// - Merchant and shopper text only ever reaches the DOM through textContent or attributes.
// - The popup lives in a shadow root with one <style>, so theme CSS and ours cannot touch each other.
// - Shopify's theme-check caps an app embed's script at 10,000 bytes: the build minifies this file
//   (scripts/build_storefront.py), so write for the reader and let terser shorten the names.
(() => {
  "use strict";

  const win = window;
  const doc = document;
  const noop = () => {};

  const guard =
    (fn) =>
    (...args) => {
      try {
        return fn(...args);
      } catch (error) {
        // Deliberately silent: a console error from a third-party popup is a bug report for the merchant.
      }
    };

  const listen = (target, type, handler, options) => {
    const safe = guard(handler);
    target.addEventListener(type, safe, options);
    return () => target.removeEventListener(type, safe, options);
  };

  const later = (handler, ms) => setTimeout(guard(handler), ms);

  // el("input", {type: "email", id: "x"}, [children]): attributes only; "text" sets textContent.
  const el = (tag, attributes, children) => {
    const node = doc.createElement(tag);
    for (const name in attributes) {
      const value = attributes[name];
      if (value == null || value === false) continue;
      if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children || []) if (child) node.append(child);
    return node;
  };

  // --- What the visitor has seen, per form: localStorage, or a cookie where storage throws (Safari
  // private mode, storage disabled, sandboxed frames).
  const readMemory = (key) => {
    let raw;
    try {
      raw = localStorage.getItem(key);
    } catch (error) {
      const match = doc.cookie.match("(?:^|; )" + encodeURIComponent(key) + "=([^;]*)");
      raw = match && decodeURIComponent(match[1]);
    }
    try {
      return JSON.parse(raw) || {};
    } catch (error) {
      return {};
    }
  };

  const writeMemory = (key, value) => {
    const raw = JSON.stringify(value);
    try {
      localStorage.setItem(key, raw);
    } catch (error) {
      doc.cookie = encodeURIComponent(key) + "=" + encodeURIComponent(raw) + ";path=/;max-age=31536000;SameSite=Lax";
    }
  };

  // Texts: data-locale exactly, then its language ("fr-CA" -> "fr"), then the form's default locale.
  // A key missing from the chosen locale falls back to the default locale's, then to an English word
  // for the few keys the forms API does not promise.
  const BUILT_IN = {
    close: "Close",
    error: "Something went wrong. Try again.",
    copy: "Copy",
    copied: "Copied",
    month: "Month",
    day: "Day",
    gender_female: "Female",
    gender_male: "Male",
    gender_other: "Other",
    gender_unspecified: "Prefer not to say",
  };

  const chooseTexts = (form, wanted) => {
    const texts = form.texts || {};
    const fallback = texts[form.default_locale] || {};
    const locale =
      [wanted, wanted.split("-")[0], form.default_locale].find((name) => name && texts[name]) ||
      Object.keys(texts)[0] ||
      "";
    const chosen = texts[locale] || {};
    const t = (key) => [chosen[key], fallback[key], BUILT_IN[key], ""].find((text) => typeof text === "string");
    return [locale, t];
  };

  // --- Which forms may show on this page view.
  const normalizePath = (path) => String(path).toLowerCase().replace(/\/+$/, "") || "/";

  const targets = (form) => {
    const targeting = form.targeting || {};
    const here = normalizePath(location.pathname);
    const paths = (targeting.paths || []).filter(Boolean).map(normalizePath);
    if (targeting.match === "equals") return paths.includes(here);
    if (targeting.match === "contains") return paths.some((path) => here.includes(path));
    return true;
  };

  const allowedByMemory = (memory, trigger) =>
    !memory.done && // never again after a submission
    !(Date.now() - (memory.shown || 0) < (Number(trigger.frequency_days) || 0) * 864e5);

  // Shopify's (or SHOPLINE's) Customer Privacy API: when present and it says no, send no view beacon.
  // The form may still be shown and submitted: a submission is the shopper's own act.
  const trackingAllowed = () => {
    try {
      const privacy =
        (win.Shopify && win.Shopify.customerPrivacy) || (win.Shopline && win.Shopline.customerPrivacy);
      if (!privacy) return true;
      if (privacy.analyticsProcessingAllowed) return !!privacy.analyticsProcessingAllowed();
      return !privacy.userCanBeTracked || !!privacy.userCanBeTracked();
    } catch (error) {
      return false; // unsure: do not track
    }
  };

  // --- Triggers. Each returns a function that disarms it.
  const armTrigger = (trigger, fire) => {
    if (trigger.type === "scroll") {
      return listen(
        win,
        "scroll",
        () => {
          const seen = (win.scrollY + win.innerHeight) / doc.documentElement.scrollHeight;
          if (seen * 100 >= (Number(trigger.scroll_percent) || 50)) fire();
        },
        { passive: true },
      );
    }
    if (trigger.type === "exit_intent") {
      // Desktop only: the mouse leaving the window through its top edge. Touch screens have no such gesture.
      if (!win.matchMedia("(pointer:fine)").matches) return noop;
      return listen(doc, "mouseout", (event) => {
        if (!event.relatedTarget && event.clientY <= 0) fire();
      });
    }
    const timer = later(fire, (Number(trigger.delay_seconds) || 0) * 1000);
    return () => clearTimeout(timer);
  };

  // --- The popup.
  // Terser folds these into one string; one rule per line keeps them readable.
  const STYLE =
    ":host{all:initial}" +
    ".o{position:fixed;inset:0;display:flex;align-items:center;justify-content:center;padding:12px;background:#0009;font:16px/1.4 system-ui,sans-serif;color:#111;animation:f .2s}" +
    "*{box-sizing:border-box}" +
    ".d{position:relative;width:100%;max-width:420px;max-height:100%;overflow:auto;background:#fff;border-radius:10px;padding:24px 20px 20px}" +
    "h2{margin:0 36px 8px 0;font-size:22px}" +
    "p{margin:0 0 12px}" +
    ".q{margin:0 0 12px;padding:0;border:0;min-width:0}" +
    "label,legend{display:block;padding:0;margin:0 0 4px;font-weight:600;font-size:14px}" +
    "input,select,button{font:inherit;color:inherit;margin:0}" +
    ".i,.b{width:100%;min-height:44px;border-radius:6px}" +
    ".i{padding:8px;border:1px solid #767676;background:#fff}" +
    "[aria-invalid]{border:2px solid #b3261e}" +
    ".r,.k,.c{display:flex;gap:8px}" +
    ".c{font-weight:400;font-size:13px;margin:0 0 12px}" +
    ".c input{flex:none;width:20px;height:20px}" +
    ".n{font-size:12px}" +
    ".e{margin:4px 0 0;color:#b3261e;font-size:14px}" +
    ".e:empty{display:none}" +
    ".b{padding:10px;border:0;background:#111;color:#fff;font-weight:700}" +
    ".x{position:absolute;top:4px;right:4px;width:44px;height:44px;border:0;background:none;font-size:28px}" +
    "button{cursor:pointer}" +
    ".h{position:absolute;left:-9999px}" +
    "code{flex:1;padding:8px;border:2px dashed;border-radius:6px;font:700 18px monospace;text-align:center}" +
    ".k .b{width:auto}" +
    ":focus-visible{outline:3px solid #005fcc;outline-offset:2px}" +
    "h2:focus{outline:0}" +
    "@keyframes f{from{opacity:0}}" +
    "@media (prefers-reduced-motion:reduce){.o{animation:none}}";

  const EMAIL_SHAPE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
  const AUTOCOMPLETE = { email: "email", phone: "tel", first_name: "given-name", last_name: "family-name" };
  const GENDERS = ["female", "male", "other", "unspecified"];
  const errorId = (name) => "ps-" + name + "-e";
  const memoryKey = (config, form) => "popsync:" + config.shop + ":" + form.id;

  const openPopup = (config, form, countries) => {
    const [locale, t] = chooseTexts(form, config.locale);
    const shownAt = Date.now();
    const previousFocus = doc.activeElement;
    const controls = {}; // field name -> its inputs (two for month + day)
    const consents = {}; // "email_consent" | "sms_consent" -> [text shown, its checkbox or none if implied]

    const host = el("div", { "data-popsync": "" });
    host.style.cssText = "position:fixed;z-index:2147483647";
    const shadow = host.attachShadow({ mode: "open" });
    const content = el("div");
    const closeButton = el("button", { type: "button", class: "x", "aria-label": t("close"), text: "\u00d7" });
    const dialog = el("div", { class: "d", role: "dialog", "aria-modal": "true", "aria-labelledby": "ps-t" }, [
      content,
      closeButton,
    ]);
    const overlay = el("div", { class: "o" }, [dialog]);
    shadow.append(el("style", { text: STYLE }), overlay);

    const select = (attributes, choices) =>
      el(
        "select",
        { class: "i", ...attributes },
        choices.map(([value, text]) => el("option", { value, text })),
      );

    // A labelled field (or a fieldset for month + day) with its error slot, tied by aria-describedby.
    const field = (spec, inputs, monthDay) => {
      const name = spec.name;
      for (const input of inputs) {
        input.setAttribute("aria-describedby", errorId(name));
        input.required = !!spec.required; // announced as required; `novalidate` keeps the browser's bubbles away
      }
      controls[name] = inputs;
      const label = t(name + "_label");
      return el(monthDay ? "fieldset" : "div", { class: "q" }, [
        monthDay ? el("legend", { text: label }) : el("label", { for: "ps-" + name, text: label }),
        monthDay ? el("div", { class: "r" }, inputs) : inputs[0],
        el("p", { class: "e", id: errorId(name), "aria-live": "polite" }),
      ]);
    };

    const monthDayInputs = (id) => {
      // Month and day only: sent as 1904-MM-DD (a leap year, so 29 February exists); see docs/storefront.md.
      const monthName = (number) => {
        try {
          return new Date(2000, number - 1, 15).toLocaleString(locale || "en", { month: "long" });
        } catch (error) {
          return number; // a locale tag the browser rejects
        }
      };
      const months = [["", t("month")]];
      const days = [["", t("day")]];
      for (let number = 1; number <= 31; number++) {
        const value = String(number).padStart(2, "0");
        if (number <= 12) months.push([value, monthName(number)]);
        days.push([value, number]);
      }
      return [
        select({ id, "aria-label": t("month") }, months),
        select({ id: id + "-d", "aria-label": t("day") }, days),
      ];
    };

    const renderField = (spec) => {
      const name = spec.name;
      const id = "ps-" + name;
      if (name === "birthday") {
        return spec.format === "month_day"
          ? field(spec, monthDayInputs(id), true)
          : field(spec, [el("input", { type: "date", id, class: "i", autocomplete: "bday" })]);
      }
      if (name === "gender") {
        const choices = GENDERS.map((value) => [value, t("gender_" + value)]);
        return field(spec, [select({ id }, [["", ""]].concat(choices))]);
      }
      if (name === "country") {
        const choices = (countries || []).map((country) => [country.code, country.name]);
        return field(spec, [select({ id, autocomplete: "country" }, [["", ""]].concat(choices))]);
      }
      const type = { email: "email", phone: "tel" }[name] || "text";
      const parts = [field(spec, [el("input", { type, id, class: "i", autocomplete: AUTOCOMPLETE[name] || "off" })])];
      // Consent sits right under its channel's field, in the form's own words (kept as evidence).
      // A newsletter's single email field is itself the opt-in, so its consent text is the fine print;
      // every other template asks with a separate, unticked box per channel.
      const consent = { email: "email_consent", phone: "sms_consent" }[name];
      const text = consent && t(consent);
      if (text && form.template === "newsletter" && name === "email") {
        consents[consent] = [text];
        parts.push(el("p", { class: "n", text }));
      } else if (text) {
        const box = el("input", { type: "checkbox", id: "ps-" + consent });
        consents[consent] = [text, box];
        parts.push(el("label", { class: "c" }, [box, el("span", { text })]));
      }
      return parts;
    };

    const paragraph = (key) => t(key) && el("p", { text: t(key) });
    const status = el("p", { class: "e", role: "status" });
    const submitButton = el("button", { type: "submit", class: "b", text: t("submit") });
    // The honeypot: bots fill every input; people never see or reach this one.
    const honeypot = el("input", { name: "website", tabindex: "-1", autocomplete: "off" });
    const formNode = el("form", { novalidate: true }, [
      el("h2", { id: "ps-t", text: t("title") }),
      paragraph("body"),
      el("div", { class: "h", "aria-hidden": "true" }, [honeypot]),
    ]);
    for (const spec of form.fields || []) if (spec && spec.name) formNode.append(...[].concat(renderField(spec)));
    formNode.append(status, submitButton);
    content.append(formNode);

    // SHOPLINE exposes the logged-in shopper unsigned: it may prefill the form, never identify anyone.
    const shopper = config.platform === "shopline" && win.Shopline && win.Shopline.customer;
    if (shopper) {
      for (const [name, key] of [["email"], ["first_name", "firstName"], ["last_name", "lastName"]]) {
        const value = shopper[name] || shopper[key];
        if (controls[name] && typeof value === "string") controls[name][0].value = value;
      }
    }

    const valueOf = (inputs) => {
      const [first, second] = inputs.map((input) => input.value.trim());
      if (inputs[1]) return first && second ? "1904-" + first + "-" + second : "";
      return first;
    };

    const showError = (name, message) => {
      const slot = controls[name] && shadow.getElementById(errorId(name));
      if (!slot) return (status.textContent = message);
      slot.textContent = message;
      for (const input of controls[name]) input.setAttribute("aria-invalid", "true");
    };

    const focusFirstError = () => {
      const invalid = dialog.querySelector("[aria-invalid]");
      if (invalid) invalid.focus();
    };

    // Client checks stop at presence and email shape; phones and dates are the server's to judge (422).
    const validate = () => {
      status.textContent = "";
      for (const slot of shadow.querySelectorAll(".q .e")) slot.textContent = "";
      for (const input of shadow.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
      for (const name in controls) {
        const value = valueOf(controls[name]);
        if (controls[name][0].required && !value) showError(name, t("required"));
        else if (name === "email" && value && !EMAIL_SHAPE.test(value)) showError(name, t("invalid_email"));
      }
      return !status.textContent && !dialog.querySelector("[aria-invalid]");
    };

    const submissionBody = () => {
      const payload = {
        shop: config.shop,
        form_id: String(form.id),
        locale,
        page_url: location.href,
        website: honeypot.value,
        elapsed_ms: Date.now() - shownAt,
      };
      for (const name in controls) if (valueOf(controls[name])) payload[name] = valueOf(controls[name]);
      for (const name in consents) {
        // A consent box: its state, and the words next to it when ticked (evidence).
        const [text, box] = consents[name];
        payload[name] = !box || box.checked;
        if (payload[name]) payload[name + "_text"] = text;
      }
      return payload;
    };

    // Through the Shopify app proxy on the shop's own domain: Shopify signs the request and names the
    // logged-in customer, so the shop's own session cookie must go along (same origin). Anywhere else
    // (the app's demo page, SHOPLINE) straight to the app, without cookies.
    const submitTarget = () =>
      config.proxyPath && location.origin !== new URL(config.appUrl).origin
        ? [config.proxyPath + "/submissions", "same-origin"]
        : [config.appUrl + "/storefront/submissions", "omit"];

    const showSuccess = () => {
      writeMemory(memoryKey(config, form), { shown: Date.now(), done: 1 });
      const title = el("h2", { id: "ps-t", tabindex: "-1", text: t("success_title") });
      const parts = [title, paragraph("success_body")];
      const code = form.discount_code;
      if (code) {
        const copyButton = el("button", { type: "button", class: "b", text: t("copy") });
        listen(copyButton, "click", () => {
          navigator.clipboard
            .writeText(String(code))
            .then(() => (copyButton.textContent = t("copied")))
            .catch(noop);
        });
        parts.push(
          paragraph("discount_label"),
          el("div", { class: "k" }, [el("code", { text: code }), copyButton]),
        );
      }
      content.replaceChildren(...parts.filter(Boolean));
      title.focus();
    };

    // Listeners on the popup's own nodes go with it; only the document's keydown needs removing.
    let sending = false;
    listen(formNode, "submit", (event) => {
      event.preventDefault();
      if (sending) return;
      if (!validate()) return focusFirstError();
      const [url, credentials] = submitTarget();
      const body = JSON.stringify(submissionBody());
      sending = submitButton.disabled = true;
      fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body, credentials })
        .then((response) =>
          response
            .json()
            .catch(noop)
            .then((answer) => {
              if (response.status === 200) return showSuccess();
              const errors = response.status === 422 && answer && answer.errors;
              if (!errors || typeof errors !== "object") throw errors;
              for (const name in errors) showError(name, String(errors[name]));
              focusFirstError();
            }),
        )
        .catch(() => (status.textContent = t("error")))
        .then(() => (sending = submitButton.disabled = false));
    });

    const focusables = () =>
      [...dialog.querySelectorAll("button,input,select")].filter(
        (node) => !node.disabled && node.tabIndex >= 0,
      );

    const close = () => {
      stopKeys();
      host.remove();
      if (previousFocus && previousFocus.focus) previousFocus.focus();
    };

    listen(closeButton, "click", close);
    listen(overlay, "click", (event) => event.target === overlay && close());
    // Esc closes; Tab and Shift+Tab cycle inside the dialog (aria-modal promises the rest is inert).
    const stopKeys = listen(doc, "keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        close();
      } else if (event.key === "Tab") {
        // Only the edges are handled: inside, the browser's own order stands (a date input's parts).
        const items = focusables();
        const [first, last] = [items[0], items[items.length - 1]];
        const [edge, wrapTo] = event.shiftKey ? [first, last] : [last, first];
        const active = shadow.activeElement;
        if (active === edge || !items.includes(active)) {
          event.preventDefault();
          wrapTo.focus();
        }
      }
    });

    doc.body.append(host);
    (focusables()[0] || closeButton).focus();
  };

  const sendView = (config, form) => {
    if (!trackingAllowed()) return;
    const url = config.appUrl + "/storefront/forms/" + encodeURIComponent(form.id) + "/views";
    // A plain-text body keeps the beacon a "simple" cross-origin request (no preflight); it holds JSON.
    const payload = JSON.stringify({ shop: config.shop });
    if (!(navigator.sendBeacon && navigator.sendBeacon(url, payload))) {
      fetch(url, { method: "POST", body: payload, credentials: "omit", keepalive: true }).catch(noop);
    }
  };

  const start = () => {
    const root = doc.getElementById("popsync-root");
    if (!root || win.__popsync) return; // the embed rendered twice: one popup is enough
    win.__popsync = 1;
    // Configuration: the embed's data attributes only (docs/storefront.md, "The embed").
    const data = (name) => (root.getAttribute("data-" + name) || "").trim().replace(/\/+$/, "");
    const config = {
      appUrl: data("app-url"),
      shop: data("shop"),
      platform: data("platform"),
      proxyPath: data("proxy-path"),
      locale: data("locale") || doc.documentElement.lang || "",
    };
    if (!config.appUrl || !config.shop) return;

    fetch(config.appUrl + "/storefront/forms?shop=" + encodeURIComponent(config.shop), { credentials: "omit" })
      .then((response) => response.ok && response.json())
      .then((answer) => {
        let opened = false;
        const disarms = [];
        for (const form of (answer && answer.forms) || []) {
          if (!form || form.id == null || !targets(form)) continue;
          const key = memoryKey(config, form);
          const trigger = form.trigger || {};
          if (!allowedByMemory(readMemory(key), trigger)) continue;
          disarms.push(
            armTrigger(trigger, () => {
              // One popup per page view: the first trigger to fire wins and disarms the others.
              if (opened) return;
              opened = true;
              disarms.forEach((disarm) => disarm());
              writeMemory(key, { ...readMemory(key), shown: Date.now() });
              openPopup(config, form, answer.countries);
              sendView(config, form);
            }),
          );
        }
      })
      .catch(noop);
  };

  // The forms are fetched when the browser is idle, so the page's own first work goes first.
  const whenIdle = () =>
    win.requestIdleCallback ? win.requestIdleCallback(guard(start), { timeout: 2000 }) : later(start, 1);

  guard(() => (doc.readyState === "loading" ? listen(doc, "DOMContentLoaded", whenIdle) : whenIdle()))();
})();
