"""Normalisers: identifiers canonical before any lookup, every error naming its field."""

from __future__ import annotations

import contextlib
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.contacts.normalize import FieldError
from app.contacts.normalize import ValidationError
from app.contacts.normalize import collect_submission
from app.contacts.normalize import normalize_country
from app.contacts.normalize import normalize_email
from app.contacts.normalize import normalize_gender
from app.contacts.normalize import normalize_phone
from app.contacts.normalize import parse_birthday
from app.contacts.rules import ConsentIntent

pytestmark = pytest.mark.nodb


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("a@example.com", "a@example.com"),
        ("  Ann.Lee@Example.COM \t", "ann.lee@example.com"),
        ("ANN+promo@EXAMPLE.com", "ann+promo@example.com"),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_email_is_stripped_and_lower_cased(raw: str | None, stored: str | None) -> None:
    assert normalize_email(raw) == stored


@pytest.mark.parametrize(
    "raw", ["ann", "ann@", "@example.com", "ann@example", "a b@example.com", "ann@@example.com"]
)
def test_invalid_email_is_a_field_error(raw: str) -> None:
    with pytest.raises(FieldError) as error:
        normalize_email(raw)
    assert error.value.field == "email"


@pytest.mark.parametrize(
    ("raw", "region", "stored"),
    [
        ("+14155552671", None, "+14155552671"),
        ("+1 (415) 555-2671", "GB", "+14155552671"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("0044 20 7946 0958", "US", "+442079460958"),
        ("00 1 415 555 2671", "DE", "+14155552671"),
        ("  ", "US", None),
    ],
)
def test_phone_is_e164_read_in_the_shop_region(raw: str, region: str | None, stored: str | None) -> None:
    assert normalize_phone(raw, region) == stored


@pytest.mark.parametrize(
    ("raw", "region", "message"),
    [
        ("415 555 2671", None, "country code"),
        ("12345", "US", "not a valid phone number"),
        ("+1 555 0100", None, "not a valid phone number"),
        ("call me", "US", "not a phone number"),
        ("+99 123", None, "phone number"),
    ],
)
def test_invalid_phone_is_a_field_error(raw: str, region: str | None, message: str) -> None:
    with pytest.raises(FieldError) as error:
        normalize_phone(raw, region)
    assert error.value.field == "phone"
    assert message in error.value.message


def test_birthday_must_be_a_real_plausible_date() -> None:
    today = date(2026, 11, 29)
    assert parse_birthday("1990-04-01", today) == date(1990, 4, 1)
    assert parse_birthday("1990/04/01", today) == date(1990, 4, 1)
    for bad in ("1990-02-30", "01-04-1990", "1899-12-31", "2027-01-01", "yesterday"):
        with pytest.raises(FieldError):
            parse_birthday(bad, today)


def test_gender_and_country_are_validated() -> None:
    assert normalize_gender(" Female ") == "female"
    assert normalize_country("us") == "US"
    assert normalize_country("XK") == "XK"
    with pytest.raises(FieldError):
        normalize_gender("robot")
    with pytest.raises(FieldError):
        normalize_country("ZZ")
    with pytest.raises(FieldError):
        normalize_country("USA")


def test_a_submission_reports_every_bad_field_at_once() -> None:
    with pytest.raises(ValidationError) as error:
        collect_submission(
            {"email": "nope", "phone": "12", "birthday": "1990-13-01", "gender": 3, "email_consent": "yes"},
            "US",
        )
    assert set(error.value.errors) == {"email", "phone", "birthday", "gender", "email_consent"}
    assert error.value.errors["gender"] == "must be a string"


def test_a_submission_is_collected_normalised_with_whitespace_as_empty() -> None:
    collected = collect_submission(
        {
            "shop": "demo.myshopify.com",
            "email": " Ann@Example.com ",
            "phone": "(415) 555-2671",
            "first_name": "  ",
            "last_name": " Lee ",
            "email_consent": True,
            "sms_consent": False,
            "unknown": "ignored",
        },
        "US",
    )
    assert collected.email == "ann@example.com"
    assert collected.phone == "+14155552671"
    assert collected.first_name is None
    assert collected.last_name == "Lee"
    assert collected.email_consent is ConsentIntent.SUBSCRIBE
    assert collected.sms_consent is None


@given(st.text(max_size=80))
def test_normalisers_never_raise_anything_but_a_field_error(text: str) -> None:
    for normalise in (normalize_email, lambda v: normalize_phone(v, "US"), parse_birthday, normalize_country):
        with contextlib.suppress(FieldError):
            normalise(text)
