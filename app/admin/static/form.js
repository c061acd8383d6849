// The form editor. The preview frame runs the real popup script; it asks this page for the form being
// edited (window.popsyncPreviewForm) each time it loads, and this page reloads it a moment after an edit.
"use strict";
(() => {
  const { api, banner, link, clearErrors, showErrors, debounce } = window.popsync;
  const editor = document.getElementById("form-editor");
  const id = editor.dataset.id;
  const preview = document.getElementById("preview");
  const localeSelect = document.getElementById("locale");
  const defaultSelect = document.getElementById("default_locale");
  const textInputs = [...editor.querySelectorAll("[data-text]")];
  const $ = (name) => document.getElementById(name);
  let model = {
    name: "",
    template: "newsletter",
    texts: { en: JSON.parse(editor.dataset.defaults || "{}") },
    default_locale: "en",
    trigger: { type: "delay", delay_seconds: 5, scroll_percent: 50, frequency_days: 7 },
    targeting: { match: "all", paths: [] },
    discount_code: null,
    tag: null,
    active: false,
  };
  let editing = "en";
  const defaultFields = JSON.parse(editor.dataset.defaultFields || "{}");

  const fillLocales = () => {
    const locales = Object.keys(model.texts);
    for (const select of [localeSelect, defaultSelect]) {
      select.replaceChildren(...locales.map((locale) => new Option(locale, locale)));
    }
    localeSelect.value = editing;
    defaultSelect.value = model.default_locale;
  };

  const showTexts = () => {
    const texts = model.texts[editing] || {};
    for (const input of textInputs) input.value = texts[input.dataset.text] || "";
  };

  const show = () => {
    $("name").value = model.name || "";
    $("template").value = model.template;
    $("discount_code").value = model.discount_code || "";
    $("tag").value = model.tag || "";
    $("active").checked = !!model.active;
    const trigger = model.trigger || {};
    $("trigger-type").value = trigger.type || "delay";
    $("delay_seconds").value = trigger.delay_seconds ?? 5;
    $("scroll_percent").value = trigger.scroll_percent ?? 50;
    $("frequency_days").value = trigger.frequency_days ?? 7;
    $("targeting-match").value = (model.targeting || {}).match || "all";
    $("targeting-paths").value = ((model.targeting || {}).paths || []).join("\n");
    editing = model.texts[editing] ? editing : model.default_locale;
    fillLocales();
    showTexts();
  };

  // The editor's fields into the model (texts of the language being edited only; others are kept).
  const read = () => {
    const texts = {};
    for (const input of textInputs) if (input.value.trim()) texts[input.dataset.text] = input.value;
    model.texts[editing] = texts;
    const number = (name) => ($(name).value === "" ? undefined : Number($(name).value));
    Object.assign(model, {
      name: $("name").value.trim(),
      template: $("template").value,
      default_locale: defaultSelect.value || editing,
      discount_code: $("discount_code").value.trim() || null,
      tag: $("tag").value.trim() || null,
      active: $("active").checked,
      trigger: {
        type: $("trigger-type").value,
        delay_seconds: number("delay_seconds"),
        scroll_percent: number("scroll_percent"),
        frequency_days: number("frequency_days"),
      },
      targeting: {
        match: $("targeting-match").value,
        paths: $("targeting-paths").value.split("\n").map((path) => path.trim()).filter(Boolean),
      },
    });
    return model;
  };

  // What the preview shows: this form, opening at once, whatever its trigger and pages say.
  window.popsyncPreviewForm = () => ({
    locale: editing,
    form: {
      ...model,
      id: id || "new",
      // A template changed but not saved yet shows that template's default fields, as saving would.
      fields: model.template === model.savedTemplate && model.fields ? model.fields : defaultFields[model.template],
      trigger: { type: "delay", delay_seconds: 0, frequency_days: 0 },
      targeting: { match: "all", paths: [] },
    },
  });
  const refreshPreview = debounce(() => {
    preview.dataset.ready = "0";
    preview.contentWindow.location.reload();
  }, 350);

  editor.addEventListener("input", () => {
    read();
    refreshPreview();
  });
  editor.addEventListener("change", () => {
    read();
    refreshPreview();
  });
  localeSelect.addEventListener("change", () => {
    read();
    editing = localeSelect.value;
    showTexts();
    refreshPreview();
  });
  $("add-locale").addEventListener("click", () => {
    const locale = $("new-locale").value.trim();
    if (!/^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$/.test(locale)) return banner("A language looks like de, fr or fr-CA.", "critical");
    read();
    if (!model.texts[locale]) model.texts[locale] = { ...model.texts[model.default_locale] };
    editing = locale;
    $("new-locale").value = "";
    fillLocales();
    showTexts();
    refreshPreview();
  });

  // A 422's names: "name", "trigger.delay_seconds", "texts.fr.title", "targeting.paths.2" …
  const placeErrors = (errors) => {
    const placed = {};
    for (const [key, message] of Object.entries(errors || {})) {
      const text = /^texts\.([^.]+)\.(.+)$/.exec(key);
      if (text && text[1] === editing) {
        const slot = editor.querySelector(`[data-text-error="${CSS.escape(text[2])}"]`);
        if (slot) {
          slot.textContent = message;
          $("t-" + text[2]).setAttribute("aria-invalid", "true");
          continue;
        }
      }
      const known = ["targeting.paths", "trigger.type", "trigger.delay_seconds", "trigger.scroll_percent", "trigger.frequency_days"];
      placed[known.find((name) => key.startsWith(name + ".")) || key] = message;
    }
    showErrors(editor, placed, $("form-error"));
  };

  editor.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(editor);
    const body = read();
    const payload = {
      name: body.name, template: body.template, texts: body.texts, default_locale: body.default_locale,
      trigger: body.trigger, targeting: body.targeting, discount_code: body.discount_code, tag: body.tag, active: body.active,
    };
    const result = await api(id ? "/api/v1/forms/" + id : "/api/v1/forms", { method: id ? "PATCH" : "POST", json: payload });
    if (result.status === 422) {
      placeErrors(result.data.errors);
      return banner("Some fields need a look.", "critical");
    }
    if (!result.ok) return banner((result.data && result.data.error) || "The form could not be saved.", "critical");
    if (!id) {
      location.href = link("/admin/forms/" + result.data.id);
      return;
    }
    model = { ...result.data, savedTemplate: result.data.template };
    show();
    editor.dataset.saved = String(Date.now());
    banner("Saved. The storefront shows the new version on its next page view.", "success");
  });

  $("delete").addEventListener("click", async () => {
    if (!window.confirm("Delete this form? It stops showing on the storefront at once.")) return;
    const result = await api("/api/v1/forms/" + id, { method: "DELETE" });
    if (result.ok) location.href = link("/admin/forms");
    else banner("The form could not be deleted.", "critical");
  });

  (async () => {
    if (id) {
      const result = await api("/api/v1/forms/" + id);
      if (!result.ok) return banner("The form could not be loaded.", "critical");
      model = { ...result.data, savedTemplate: result.data.template };
      $("delete").hidden = false;
    }
    editing = model.default_locale;
    show();
    editor.dataset.loaded = "1";
    refreshPreview();
  })();
})();
