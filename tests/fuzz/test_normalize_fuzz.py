"""Hypothesis over the normalisers (app/contacts/normalize.py): whatever a shopper, a link or a CSV cell
says — any unicode but lone surrogates, control characters, huge strings, values that are not strings —
each normaliser gives a value in its stored form or a ``FieldError`` naming its field, never another
exception. A stored value normalises to itself (so a lookup by it finds it again).

tests/unit/test_normalize.py has the tables and a first property over short text; this adds every
normaliser, non-string values, huge and control-laden text, and the shape of what comes out.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Any
from typing import TypeVar

import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from app.contacts.normalize import EARLIEST_BIRTHDAY
from app.contacts.normalize import GENDERS
from app.contacts.normalize import NAME_MAX_LENGTH
from app.contacts.normalize import FieldError
from app.contacts.normalize import ValidationError
from app.contacts.normalize import clean_text
from app.contacts.normalize import collect_submission
from app.contacts.normalize import normalize_country
from app.contacts.normalize import normalize_email
from app.contacts.normalize import normalize_gender
from app.contacts.normalize import normalize_phone
from app.contacts.normalize import normalize_region
from app.contacts.normalize import parse_birthday
from app.contacts.rules import Collected

pytestmark = pytest.mark.nodb
T = TypeVar("T")

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TODAY = date(2026, 11, 30)
E164 = re.compile(r"\+[1-9]\d{1,14}\Z")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

# Any unicode but lone surrogates (they cannot come out of JSON, a URL or a decoded CSV), with the
# control characters and separators a paste or a hostile client brings weighted in.
characters = st.characters(blacklist_categories=("Cs",))
nasty = st.sampled_from(
    ["\x00", "\t", "\n", "\r", "\x0b", "\x1f", "\x7f", "\u200b", "\ufeff", "\u202e", " ", "@", "+"]
)
text = st.text(alphabet=characters | nasty, max_size=60)
# Plausible values with junk around them: the normalisers' happy paths get exercised too.
plausible = st.sampled_from(
    [
        "ann@example.com",
        " Ann.Lee@Example.COM ",
        "+14155552671",
        "(415) 555-2671",
        "0044 20 7946 0958",
        "1990-04-01",
        "1990/04/01",
        "female",
        " Male ",
        "us",
        "XK",
        "Ann",
    ]
)
decorated = st.builds(lambda before, value, after: before + value + after, text, plausible, text) | plausible
# Huge: a short piece repeated up to about a megabyte, so length limits are checked before any parsing.
huge = st.builds(
    lambda piece, times: piece * times,
    st.text(alphabet=characters, min_size=1, max_size=8),
    st.integers(1000, 130_000),
)
not_a_string = st.one_of(
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.binary(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
anything = st.one_of(st.none(), text, decorated, huge, not_a_string)
regions = st.one_of(st.none(), st.sampled_from(["US", "GB", "DE", "NL", "FR", "JP", "BR", "IN", "XK", "AQ"]))


def attempt(call: Callable[[], T]) -> tuple[T | None, FieldError | None]:
    """The normaliser's value, or the FieldError it raised (any other exception fails the test)."""
    try:
        return call(), None
    except FieldError as error:
        return None, error


def refused(error: FieldError, field: str) -> None:
    assert error.field == field
    assert error.message
    assert str(error).startswith(f"{field}: ")


@FUZZ
@given(value=anything)
def test_email_is_the_stored_form_or_a_field_error(value: Any) -> None:
    email, error = attempt(lambda: normalize_email(value))
    if error is not None:
        refused(error, "email")
        return
    if email is None:
        assert value is None or not value.strip()
        return
    assert email == email.strip().lower()
    assert "@" in email
    assert len(email) <= 320
    assert not CONTROL.search(email)
    assert normalize_email(email) == email


@FUZZ
@given(value=anything, region=regions)
def test_phone_is_e164_or_a_field_error(value: Any, region: str | None) -> None:
    phone, error = attempt(lambda: normalize_phone(value, region))
    if error is not None:
        refused(error, "phone")
        return
    if phone is None:
        assert value is None or not value.strip()
        return
    assert E164.match(phone), phone
    assert normalize_phone(phone, None) == phone
    assert normalize_phone(phone, region) == phone


@FUZZ
@given(value=anything, field=st.sampled_from(["first_name", "last_name", "tags"]))
def test_names_are_stripped_readable_text_or_a_field_error(value: Any, field: str) -> None:
    name, error = attempt(lambda: clean_text(value, field))
    if error is not None:
        refused(error, field)
        return
    if name is None:
        assert value is None or not value.strip()
        return
    assert name == name.strip()
    assert name
    assert len(name) <= NAME_MAX_LENGTH
    assert not CONTROL.search(name)


@FUZZ
@given(value=anything)
def test_birthday_is_a_plausible_date_or_a_field_error(value: Any) -> None:
    birthday, error = attempt(lambda: parse_birthday(value, TODAY))
    if error is not None:
        refused(error, "birthday")
        return
    if birthday is None:
        assert value is None or not value.strip()
        return
    assert EARLIEST_BIRTHDAY <= birthday <= TODAY
    assert parse_birthday(birthday.isoformat(), TODAY) == birthday


@FUZZ
@given(value=anything)
def test_gender_is_one_of_four_words_or_a_field_error(value: Any) -> None:
    gender, error = attempt(lambda: normalize_gender(value))
    if error is not None:
        refused(error, "gender")
        return
    assert gender is None or gender in GENDERS


@FUZZ
@given(value=anything, field=st.sampled_from(["country", "region"]))
def test_country_is_an_iso_code_or_a_field_error(value: Any, field: str) -> None:
    country, error = attempt(
        lambda: normalize_country(value) if field == "country" else normalize_region(value)
    )
    if error is not None:
        refused(error, field)
        return
    if country is None:
        assert value is None or not value.strip()
        return
    assert re.fullmatch(r"[A-Z]{2}", country)
    assert normalize_country(country) == country


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text | decorated,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
SUBMISSION_FIELDS = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "birthday",
    "gender",
    "country",
    "email_consent",
    "sms_consent",
)


@FUZZ
@given(
    body=st.dictionaries(
        st.sampled_from([*SUBMISSION_FIELDS, "shop", "form_id", "unknown"]) | st.text(max_size=8),
        json_values | st.booleans(),
        max_size=10,
    ),
    region=regions,
)
def test_a_submission_body_is_collected_or_every_bad_field_is_named(
    body: dict[str, Any], region: str | None
) -> None:
    """Any JSON object a storefront can send: a ``Collected`` or a ``ValidationError`` naming fields."""
    try:
        collected, errors = collect_submission(body, region, TODAY), {}
    except ValidationError as error:
        collected, errors = None, error.errors
    if collected is None:
        assert errors
        assert set(errors) <= set(SUBMISSION_FIELDS)
        assert all(isinstance(message, str) and message for message in errors.values())
        return
    assert isinstance(collected, Collected)
    for name in ("email_consent", "sms_consent"):
        assert (getattr(collected, name) is not None) == (body.get(name) is True)
