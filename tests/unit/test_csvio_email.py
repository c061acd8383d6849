"""The import's cached email check gives exactly ``normalize_email``'s answer (value or error)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from app.contacts.csvio import _email
from app.contacts.normalize import FieldError
from app.contacts.normalize import normalize_email

CASES = [
    "Ann.Lee@Example.com",
    "mary.smith.12@gmail.com",
    "a+tag@sub.example.co.uk",
    "o'brien@example.ie",
    "{weird}|~@example.org",
    "a..b@example.com",
    ".a@example.com",
    "a.@example.com",
    "a@example",
    "a@-example.com",
    "a@example-.com",
    "a@exa_mple.com",
    "a@example..com",
    "a@localhost",
    "a@example.invalid",
    "a@xn--bcher-kva.example",
    "a@bücher.example",
    "ünï@example.com",
    '"quoted"@example.com',
    "Ann <ann@example.com>",
    "a@[192.0.2.1]",
    "a@b@example.com",
    "@example.com",
    "a@",
    "no-at-sign",
    "x" * 64 + "@example.com",
    "x" * 65 + "@example.com",
    "x" * 240 + "@example.com",
    "x@" + "a" * 63 + ".com",
    "x@" + "a" * 64 + ".com",
    "a@123.com",
    "a@example.c",
]


def _answer(function: object, value: str) -> tuple[str, str | None]:
    try:
        return "ok", function(value)  # type: ignore[operator]
    except FieldError as error:
        return "error", error.message


@pytest.mark.parametrize("value", CASES)
def test_the_cached_check_answers_as_normalize_email(value: str) -> None:
    assert _answer(_email, value) == _answer(normalize_email, value)


@settings(max_examples=300, deadline=None)
@given(
    st.from_regex(r"\A[a-zA-Z0-9._%+'\-]{1,20}@[a-zA-Z0-9.\-_]{1,20}\Z"),
)
def test_the_cached_check_answers_as_normalize_email_for_generated_addresses(value: str) -> None:
    assert _answer(_email, value) == _answer(normalize_email, value)
