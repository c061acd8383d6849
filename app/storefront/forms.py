"""Popup forms: what a merchant may configure, checked by one pure function, and the JSON shapes the admin
API and the storefront (docs/storefront.md, ``GET /storefront/forms``) show of a form.

``validate_form`` never touches the database: it takes the request body (and, for a PATCH, the form's
current values) and returns the values to store, or raises ``ValidationError`` naming every bad field with
a dotted path (``trigger.delay_seconds``, ``texts.fr.title``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import phonenumbers
import pycountry

from app.contacts.normalize import ValidationError
from app.models import Form

TEMPLATES = ("newsletter", "email_sms", "profile")
PROFILE_FIELDS = ("first_name", "last_name", "birthday", "gender", "country")
# Which fields each template may show; email is always among them (it is how a shopper is recognised).
TEMPLATE_FIELDS: dict[str, tuple[str, ...]] = {
    "newsletter": ("email",),
    "email_sms": ("email", "phone"),
    "profile": ("email", *PROFILE_FIELDS),
}
# Fields a template must show.
TEMPLATE_REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "newsletter": ("email",),
    "email_sms": ("email", "phone"),
    "profile": ("email",),
}
DEFAULT_FIELDS: dict[str, list[dict[str, Any]]] = {
    "newsletter": [{"name": "email", "required": True}],
    "email_sms": [{"name": "email", "required": True}, {"name": "phone", "required": False}],
    "profile": [
        {"name": "email", "required": True},
        {"name": "first_name"},
        {"name": "last_name"},
        {"name": "birthday", "format": "date"},
    ],
}
BIRTHDAY_FORMATS = ("date", "month_day")
TEXT_KEYS = (
    "title",
    "body",
    "email_label",
    "phone_label",
    "first_name_label",
    "last_name_label",
    "birthday_label",
    "gender_label",
    "country_label",
    "email_consent",
    "sms_consent",
    "submit",
    "close",
    "invalid_email",
    "required",
    "success_title",
    "success_body",
    "discount_label",
)
TEXT_MAX_LENGTH = 1000
MAX_LOCALES = 40
TRIGGER_TYPES = ("delay", "scroll", "exit_intent")
# (minimum, maximum, default) of the trigger's numbers.
TRIGGER_NUMBERS: dict[str, tuple[int, int, int]] = {
    "delay_seconds": (0, 600, 5),
    "scroll_percent": (0, 100, 50),
    "frequency_days": (0, 365, 7),
}
TARGETING_MATCHES = ("all", "equals", "contains")
MAX_PATHS = 50
PATH_MAX_LENGTH = 255
NAME_MAX_LENGTH = 255
TAG_MAX_LENGTH = 255
DISCOUNT_CODE_MAX_LENGTH = 64
_LOCALE = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The fields a body may set; anything else is ignored, like unknown fields of a submission.
EDITABLE = (
    "name",
    "template",
    "fields",
    "texts",
    "default_locale",
    "trigger",
    "targeting",
    "discount_code",
    "tag",
    "active",
)


def default_texts() -> dict[str, str]:
    """English texts a new form starts with when the merchant gives none for the default locale."""
    return {
        "title": "Join our list",
        "body": "Be the first to hear about new arrivals and offers.",
        "email_label": "Email",
        "phone_label": "Phone",
        "email_consent": "Yes, email me news and offers. I can unsubscribe at any time.",
        "sms_consent": "Yes, text me news and offers. Message rates may apply; reply STOP to opt out.",
        "submit": "Subscribe",
        "close": "Close",
        "invalid_email": "Enter a valid email",
        "required": "This field is required",
        "success_title": "Thanks!",
        "success_body": "You're on the list.",
        "discount_label": "Your code",
    }


def validate_form(body: Mapping[str, Any], current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The values to store for a new form (``current`` None) or a PATCH of one (``current`` its values).

    A PATCH is the current values with the body's fields replaced, checked as a whole: a template change
    without new ``fields`` takes the new template's default fields. Raises ValidationError naming each bad
    field.
    """
    errors: dict[str, str] = {}
    given = {key: body[key] for key in EDITABLE if key in body}
    values: dict[str, Any] = dict(current or {})

    if current is None or "name" in given:
        values["name"] = _name(given.get("name"), errors)
    template = given.get("template", values.get("template", "newsletter"))
    if template not in TEMPLATES:
        errors["template"] = f"must be one of {', '.join(TEMPLATES)}"
        template = "newsletter"
    values["template"] = template

    if "fields" in given:
        values["fields"] = _fields(given["fields"], template, errors)
    elif current is None or current.get("template") != template:
        values["fields"] = [dict(f) for f in DEFAULT_FIELDS[template]]
    else:
        values["fields"] = _fields(values.get("fields"), template, errors)

    default_locale = given.get("default_locale", values.get("default_locale", "en"))
    if not isinstance(default_locale, str) or not _LOCALE.match(default_locale):
        errors["default_locale"] = "must be a locale like en or fr-CA"
        default_locale = "en"
    values["default_locale"] = default_locale
    if "texts" in given or current is None:
        texts = given.get("texts", {default_locale: default_texts()})
        values["texts"] = _texts(texts, default_locale, errors)
    elif default_locale not in (values.get("texts") or {}):
        errors["texts"] = f"must include the default locale {default_locale!r}"

    if "trigger" in given or current is None:
        values["trigger"] = _trigger(given.get("trigger", {}), errors)
    if "targeting" in given or current is None:
        values["targeting"] = _targeting(given.get("targeting", {}), errors)
    if "discount_code" in given or current is None:
        values["discount_code"] = _optional_text(
            given.get("discount_code"), "discount_code", DISCOUNT_CODE_MAX_LENGTH, errors
        )
    if "tag" in given or current is None:
        tag = _optional_text(given.get("tag"), "tag", TAG_MAX_LENGTH, errors)
        if tag is not None and "," in tag:
            errors["tag"] = "must not contain commas (the platforms split tags on them)"
        values["tag"] = tag
    if "active" in given or current is None:
        active = given.get("active", True)
        if not isinstance(active, bool):
            errors["active"] = "must be true or false"
        values["active"] = active is True
    if errors:
        raise ValidationError(errors)
    return values


def _name(value: Any, errors: dict[str, str]) -> str:
    if not isinstance(value, str) or not value.strip():
        errors["name"] = "is required"
        return ""
    value = value.strip()
    if len(value) > NAME_MAX_LENGTH:
        errors["name"] = f"must be at most {NAME_MAX_LENGTH} characters"
    elif _CONTROL.search(value):
        errors["name"] = "must not contain control characters"
    return value


def _fields(value: Any, template: str, errors: dict[str, str]) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        errors["fields"] = "must be a non-empty list of fields"
        return []
    allowed = TEMPLATE_FIELDS[template]
    fields: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        where = f"fields.{index}"
        if not isinstance(item, dict):
            errors[where] = "must be an object with a name"
            continue
        name = item.get("name")
        if name not in allowed:
            errors[f"{where}.name"] = f"must be one of {', '.join(allowed)} for the {template} template"
            continue
        if name in seen:
            errors[f"{where}.name"] = f"{name} is listed twice"
            continue
        seen.add(name)
        field: dict[str, Any] = {"name": name}
        required = item.get("required", name == "email")
        if not isinstance(required, bool):
            errors[f"{where}.required"] = "must be true or false"
        field["required"] = required is True
        if name == "birthday":
            birthday_format = item.get("format", "date")
            if birthday_format not in BIRTHDAY_FORMATS:
                errors[f"{where}.format"] = f"must be one of {', '.join(BIRTHDAY_FORMATS)}"
            field["format"] = birthday_format
        elif "format" in item:
            errors[f"{where}.format"] = "only the birthday field has a format"
        fields.append(field)
    missing = [name for name in TEMPLATE_REQUIRED_FIELDS[template] if name not in seen]
    if missing and "fields" not in errors and not any(key.startswith("fields.") for key in errors):
        errors["fields"] = f"the {template} template needs {' and '.join(missing)}"
    elif (
        not missing
        and not any(f["required"] for f in fields if f["name"] in ("email", "phone"))
        and "fields" not in errors
    ):
        # Without an email or a phone a submission identifies no one and syncs nothing (rule 1).
        errors["fields"] = "email or phone must be required"
    return fields


def _texts(value: Any, default_locale: str, errors: dict[str, str]) -> dict[str, dict[str, str]]:
    if not isinstance(value, dict):
        errors["texts"] = 'must be an object of locales, e.g. {"en": {"title": "…"}}'
        return {}
    if len(value) > MAX_LOCALES:
        errors["texts"] = f"must have at most {MAX_LOCALES} locales"
        return {}
    texts: dict[str, dict[str, str]] = {}
    for locale, entries in value.items():
        if not isinstance(locale, str) or not _LOCALE.match(locale):
            errors[f"texts.{locale}"] = "is not a locale like en or fr-CA"
            continue
        if not isinstance(entries, dict):
            errors[f"texts.{locale}"] = "must be an object of texts"
            continue
        texts[locale] = {}
        for key, text in entries.items():
            where = f"texts.{locale}.{key}"
            if key not in TEXT_KEYS:
                errors[where] = "is not a text the popup shows"
            elif not isinstance(text, str):
                errors[where] = "must be a string"
            elif len(text) > TEXT_MAX_LENGTH:
                errors[where] = f"must be at most {TEXT_MAX_LENGTH:,} characters"
            else:
                texts[locale][key] = text
    if default_locale not in value and "texts" not in errors:
        errors["texts"] = f"must include the default locale {default_locale!r}"
    return texts


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _trigger(value: Any, errors: dict[str, str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        errors["trigger"] = "must be an object"
        return {}
    kind = value.get("type", "delay")
    if kind not in TRIGGER_TYPES:
        errors["trigger.type"] = f"must be one of {', '.join(TRIGGER_TYPES)}"
    trigger: dict[str, Any] = {"type": kind}
    for name, (low, high, default) in TRIGGER_NUMBERS.items():
        number = value.get(name, default)
        if not _integer(number) or not low <= number <= high:
            errors[f"trigger.{name}"] = f"must be between {low} and {high}"
            continue
        trigger[name] = number
    return trigger


def _targeting(value: Any, errors: dict[str, str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        errors["targeting"] = "must be an object"
        return {}
    match = value.get("match", "all")
    if match not in TARGETING_MATCHES:
        errors["targeting.match"] = f"must be one of {', '.join(TARGETING_MATCHES)}"
    paths = value.get("paths", [])
    if not isinstance(paths, list):
        errors["targeting.paths"] = "must be a list of paths"
        return {"match": match, "paths": []}
    if len(paths) > MAX_PATHS:
        errors["targeting.paths"] = f"must have at most {MAX_PATHS} paths"
        return {"match": match, "paths": []}
    for index, path in enumerate(paths):
        if not isinstance(path, str) or not path.startswith("/"):
            errors[f"targeting.paths.{index}"] = "must be a path starting with /"
        elif len(path) > PATH_MAX_LENGTH or _CONTROL.search(path):
            errors[f"targeting.paths.{index}"] = f"must be at most {PATH_MAX_LENGTH} printable characters"
    if match in ("equals", "contains") and not paths and "targeting.paths" not in errors:
        errors["targeting.paths"] = f"needs at least one path when match is {match}"
    return {"match": match, "paths": list(paths) if match != "all" else []}


def _optional_text(value: Any, field: str, max_length: int, errors: dict[str, str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        errors[field] = "must be a string or null"
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > max_length:
        errors[field] = f"must be at most {max_length} characters"
    elif _CONTROL.search(value):
        errors[field] = "must not contain control characters"
    return value


def form_values(form: Form) -> dict[str, Any]:
    """The editable values of a stored form (what ``validate_form`` takes as ``current``)."""
    return {name: getattr(form, name) for name in EDITABLE}


def storefront_form_json(form: Form) -> dict[str, Any]:
    """The form as the popup script reads it (docs/storefront.md)."""
    return {
        "id": str(form.id),
        "name": form.name,
        "template": form.template,
        "fields": list(form.fields or []),
        "trigger": dict(form.trigger or {}),
        "targeting": dict(form.targeting or {}),
        "default_locale": form.default_locale,
        "texts": dict(form.texts or {}),
        "discount_code": form.discount_code,
        "tag": form.tag,
    }


@lru_cache(maxsize=1)
def countries() -> tuple[dict[str, Any], ...]:
    """ISO 3166-1 countries with their English names and dialling codes, by name (the form's pickers)."""
    rows = []
    for country in pycountry.countries:
        code = phonenumbers.country_code_for_region(country.alpha_2)
        name = getattr(country, "common_name", None) or country.name
        rows.append({"code": country.alpha_2, "name": name, "dial": f"+{code}" if code else None})
    rows.append({"code": "XK", "name": "Kosovo", "dial": "+383"})
    return tuple(sorted(rows, key=lambda row: row["name"]))
