"""Pure normalisers: turn what a shopper, a link or a CSV row says into the values popsync stores.

Identifiers are canonical before any lookup (CONTRACT.md, the sync rules' preamble):
- email: ``strip().lower()`` of an address ``email-validator`` accepts, without a DNS check;
- phone: E.164 of a number ``phonenumbers`` calls valid, read in the shop's region when it has no country
  code, with a leading ``00`` read as the international prefix.
A value of only whitespace is empty. Every error names its field, in words a shopper can read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC
from datetime import date
from datetime import datetime
from typing import Any

import phonenumbers
import pycountry
from email_validator import EmailNotValidError
from email_validator import validate_email

from app.contacts.rules import Collected
from app.contacts.rules import ConsentIntent

GENDERS = ("female", "male", "other", "unspecified")
NAME_MAX_LENGTH = 255
EARLIEST_BIRTHDAY = date(1900, 1, 1)
# Kosovo: user-assigned in ISO 3166 but used by Shopify, SHOPLINE and most carriers.
_EXTRA_COUNTRIES = frozenset({"XK"})
_COUNTRIES = frozenset(c.alpha_2 for c in pycountry.countries) | _EXTRA_COUNTRIES
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_BIRTHDAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


class FieldError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ValidationError(ValueError):
    """One or more fields are invalid: ``errors`` maps each field to its message."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = dict(errors)


def clean_text(value: Any, field: str, max_length: int = NAME_MAX_LENGTH) -> str | None:
    """A stripped string, or None when empty; FieldError for a non-string or an unreadable one."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise FieldError(field, "must be a string")
    value = value.strip()
    if not value:
        return None
    if _CONTROL.search(value):
        raise FieldError(field, "must not contain control characters")
    if len(value) > max_length:
        raise FieldError(field, f"must be at most {max_length} characters")
    return value


def normalize_email(value: Any, field: str = "email") -> str | None:
    text = clean_text(value, field, max_length=320)
    if text is None:
        return None
    try:
        validate_email(text, check_deliverability=False)
    except EmailNotValidError as error:
        raise FieldError(field, f"is not a valid email address ({error})") from None
    return text.lower()


def normalize_phone(value: Any, region: str | None, field: str = "phone") -> str | None:
    text = clean_text(value, field, max_length=40)
    if text is None:
        return None
    if text.startswith("00"):
        text = "+" + text[2:]
    if not text.startswith("+") and not region:
        raise FieldError(field, "needs a country code, e.g. +44 20 7946 0958")
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else region)
    except phonenumbers.NumberParseException:
        raise FieldError(field, "is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise FieldError(field, "is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def parse_birthday(value: Any, today: date | None = None, field: str = "birthday") -> date | None:
    text = clean_text(value, field, max_length=10)
    if text is None:
        return None
    match = _BIRTHDAY.match(text.replace("/", "-"))
    if not match:
        raise FieldError(field, "must be a date like 1990-04-01")
    try:
        birthday = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        raise FieldError(field, "is not a real date") from None
    today = today or datetime.now(UTC).date()
    if not EARLIEST_BIRTHDAY <= birthday <= today:
        raise FieldError(field, f"must be between {EARLIEST_BIRTHDAY.isoformat()} and today")
    return birthday


def normalize_gender(value: Any, field: str = "gender") -> str | None:
    text = clean_text(value, field, max_length=16)
    if text is None:
        return None
    text = text.lower()
    if text not in GENDERS:
        raise FieldError(field, f"must be one of {', '.join(GENDERS)}")
    return text


def normalize_country(value: Any, field: str = "country") -> str | None:
    text = clean_text(value, field, max_length=2)
    if text is None:
        return None
    text = text.upper()
    if text not in _COUNTRIES:
        raise FieldError(field, "must be an ISO 3166-1 alpha-2 country code, e.g. US")
    return text


def normalize_region(value: Any, field: str = "region") -> str | None:
    return normalize_country(value, field)


def parse_consent_box(value: Any, field: str) -> ConsentIntent | None:
    """A form's consent checkbox: ticked subscribes; unticked or missing changes nothing (rule 8)."""
    if value is None or value is False:
        return None
    if value is True:
        return ConsentIntent.SUBSCRIBE
    raise FieldError(field, "must be true or false")


def collect_submission(body: Mapping[str, Any], region: str | None, today: date | None = None) -> Collected:
    """Validate a storefront submission body; raise ValidationError with every bad field at once."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    parsers = {
        "email": lambda v: normalize_email(v),
        "phone": lambda v: normalize_phone(v, region),
        "first_name": lambda v: clean_text(v, "first_name"),
        "last_name": lambda v: clean_text(v, "last_name"),
        "birthday": lambda v: parse_birthday(v, today),
        "gender": lambda v: normalize_gender(v),
        "country": lambda v: normalize_country(v),
        "email_consent": lambda v: parse_consent_box(v, "email_consent"),
        "sms_consent": lambda v: parse_consent_box(v, "sms_consent"),
    }
    for name, parse in parsers.items():
        try:
            values[name] = parse(body.get(name))
        except FieldError as error:
            errors[error.field] = error.message
    if errors:
        raise ValidationError(errors)
    return Collected(**values)
