"""Segment validation is pure: every field/op/value combination, and errors that name the bad part."""

from __future__ import annotations

from typing import Any

import pytest

from app.contacts.normalize import ValidationError
from app.contacts.segments import Condition
from app.contacts.segments import SegmentSpec
from app.contacts.segments import validate_segment


def errors_of(body: dict[str, Any], current: SegmentSpec | None = None) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        validate_segment(body, current)
    return caught.value.errors


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"field": "email", "op": "present"}, Condition("email", "present", None)),
        ({"field": "phone", "op": "absent", "value": None}, Condition("phone", "absent", None)),
        (
            {"field": "email_consent", "op": "is", "value": "pending"},
            Condition("email_consent", "is", "pending"),
        ),
        (
            {"field": "sms_consent", "op": "is_not", "value": "subscribed"},
            Condition("sms_consent", "is_not", "subscribed"),
        ),
        (
            {"field": "country", "op": "in", "value": ["us", " CA", "US"]},
            Condition("country", "in", ("US", "CA")),
        ),
        ({"field": "country", "op": "not_in", "value": ["XK"]}, Condition("country", "not_in", ("XK",))),
        ({"field": "gender", "op": "is", "value": "female"}, Condition("gender", "is", "female")),
        ({"field": "birthday_month", "op": "is", "value": 12}, Condition("birthday_month", "is", 12)),
        (
            {"field": "created_at", "op": "within_days", "value": 30},
            Condition("created_at", "within_days", 30),
        ),
        (
            {"field": "updated_at", "op": "not_within_days", "value": 1},
            Condition("updated_at", "not_within_days", 1),
        ),
        ({"field": "source", "op": "is", "value": "import"}, Condition("source", "is", "import")),
        ({"field": "form", "op": "submitted", "value": "7"}, Condition("form", "submitted", 7)),
        ({"field": "form", "op": "not_submitted", "value": 7}, Condition("form", "not_submitted", 7)),
        ({"field": "tag", "op": "has", "value": " vip "}, Condition("tag", "has", "vip")),
        ({"field": "opened", "op": "within_days", "value": 7}, Condition("opened", "within_days", 7)),
        (
            {"field": "clicked", "op": "not_within_days", "value": 90},
            Condition("clicked", "not_within_days", 90),
        ),
        (
            {"field": "sync_status", "op": "is", "value": "conflict"},
            Condition("sync_status", "is", "conflict"),
        ),
    ],
)
def test_valid_conditions(condition: dict[str, Any], expected: Condition) -> None:
    spec = validate_segment({"name": " VIPs ", "match": "any", "conditions": [condition]})
    assert spec == SegmentSpec("VIPs", "any", (expected,))


@pytest.mark.parametrize(
    ("condition", "key", "message_part"),
    [
        ("email", "conditions[1]", "must be an object"),
        ({"field": "shoe_size", "op": "is", "value": 9}, "conditions[1].field", "must be one of email"),
        ({"field": "email", "op": "is", "value": "a@b.c"}, "conditions[1].op", "present or absent for email"),
        ({"field": "email", "op": "present", "value": "x"}, "conditions[1].value", "must be null"),
        ({"field": "email_consent", "op": "is", "value": "yes"}, "conditions[1].value", "subscribed"),
        ({"field": "country", "op": "in", "value": "US"}, "conditions[1].value", "non-empty list"),
        ({"field": "country", "op": "in", "value": []}, "conditions[1].value", "non-empty list"),
        ({"field": "country", "op": "in", "value": ["US", "ZZ"]}, "conditions[1].value[1]", "ISO 3166-1"),
        ({"field": "country", "op": "in", "value": ["US", ""]}, "conditions[1].value", "empty"),
        ({"field": "gender", "op": "is", "value": "robot"}, "conditions[1].value", "female"),
        ({"field": "birthday_month", "op": "is", "value": 13}, "conditions[1].value", "1-12"),
        ({"field": "birthday_month", "op": "is", "value": True}, "conditions[1].value", "1-12"),
        ({"field": "birthday_month", "op": "in", "value": [1]}, "conditions[1].op", "must be is"),
        ({"field": "created_at", "op": "within_days", "value": 0}, "conditions[1].value", "days"),
        ({"field": "opened", "op": "within_days", "value": "7"}, "conditions[1].value", "days"),
        ({"field": "opened", "op": "within_days", "value": 36501}, "conditions[1].value", "days"),
        ({"field": "source", "op": "is", "value": "unsubscribe_link"}, "conditions[1].value", "form"),
        ({"field": "form", "op": "submitted", "value": "seven"}, "conditions[1].value", "form id"),
        ({"field": "form", "op": "submitted", "value": 0}, "conditions[1].value", "form id"),
        ({"field": "tag", "op": "has", "value": "  "}, "conditions[1].value", "non-empty tag"),
        ({"field": "tag", "op": "has", "value": 5}, "conditions[1].value", "non-empty tag"),
        ({"field": "sync_status", "op": "is_not", "value": "done"}, "conditions[1].value", "pending"),
    ],
)
def test_bad_conditions_name_the_part(condition: Any, key: str, message_part: str) -> None:
    ok = {"field": "email", "op": "present"}
    errors = errors_of({"name": "x", "conditions": [ok, condition]})
    assert list(errors) == [key]
    assert message_part in errors[key]


def test_every_bad_part_is_reported_at_once() -> None:
    errors = errors_of(
        {
            "name": "",
            "match": "some",
            "conditions": [
                {"field": "tag", "op": "has"},
                {"field": "x"},
                {"field": "gender", "op": "is", "value": "x"},
            ],
        }
    )
    assert set(errors) == {
        "name",
        "match",
        "conditions[0].value",
        "conditions[1].field",
        "conditions[2].value",
    }
    assert errors["name"] == "is required"
    assert errors["match"] == "must be all or any"


def test_shape_of_the_body() -> None:
    assert errors_of({"conditions": []}) == {"name": "is required"}
    assert errors_of({"name": "x", "conditions": {"field": "email"}}) == {
        "conditions": "must be a list of {field, op, value} objects"
    }
    assert (
        "at most 50"
        in errors_of({"name": "x", "conditions": [{"field": "email", "op": "present"}] * 51})["conditions"]
    )
    assert errors_of({"name": "x" * 256}) == {"name": "must be at most 255 characters"}
    assert errors_of({"name": 5}) == {"name": "must be a string"}


def test_defaults_and_partial_changes() -> None:
    created = validate_segment({"name": "All"})
    assert created == SegmentSpec("All", "all", ())
    current = SegmentSpec("VIPs", "all", (Condition("tag", "has", "vip"),))
    assert validate_segment({"match": "any"}, current) == SegmentSpec("VIPs", "any", current.conditions)
    assert validate_segment({"conditions": []}, current) == SegmentSpec("VIPs", "all", ())
    assert validate_segment({}, current) == current
    assert errors_of({"name": None}, current) == {"name": "is required"}
