"""validate_form: the values a merchant may give a popup form, every bad one named by its field."""

from __future__ import annotations

from typing import Any

import pytest

from app.contacts.normalize import ValidationError
from app.storefront.forms import DEFAULT_FIELDS
from app.storefront.forms import countries
from app.storefront.forms import validate_form

pytestmark = pytest.mark.nodb


def good(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Welcome",
        "template": "email_sms",
        "fields": [{"name": "email", "required": True}, {"name": "phone"}],
        "texts": {"en": {"title": "Hi", "submit": "Go"}, "fr": {"title": "Salut"}},
        "default_locale": "en",
        "trigger": {"type": "scroll", "scroll_percent": 40},
        "targeting": {"match": "contains", "paths": ["/collections/sale"]},
        "discount_code": "WELCOME10",
        "tag": "popsync-welcome",
    }
    body.update(overrides)
    return body


def errors_of(body: dict[str, Any], current: dict[str, Any] | None = None) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        validate_form(body, current)
    return caught.value.errors


def test_a_good_form_is_stored_with_defaults_filled_in() -> None:
    values = validate_form(good())
    assert values["trigger"] == {
        "type": "scroll",
        "delay_seconds": 5,
        "scroll_percent": 40,
        "frequency_days": 7,
    }
    assert values["fields"] == [{"name": "email", "required": True}, {"name": "phone", "required": False}]
    assert values["targeting"] == {"match": "contains", "paths": ["/collections/sale"]}
    assert values["active"] is True
    assert values["tag"] == "popsync-welcome"


def test_only_a_name_is_needed() -> None:
    values = validate_form({"name": "Simple"})
    assert values["template"] == "newsletter"
    assert values["fields"] == DEFAULT_FIELDS["newsletter"]
    assert "en" in values["texts"]
    assert values["targeting"] == {"match": "all", "paths": []}
    assert values["discount_code"] is None


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"name": ""}, "name", "required"),
        ({"name": "x" * 256}, "name", "255"),
        ({"template": "quiz"}, "template", "newsletter"),
        ({"fields": "email"}, "fields", "list"),
        ({"fields": []}, "fields", "list"),
        ({"fields": [{"name": "email", "required": True}]}, "fields", "phone"),
        (
            {"fields": [{"name": "email"}, {"name": "phone"}, {"name": "gender"}]},
            "fields.2.name",
            "email_sms",
        ),
        ({"fields": [{"name": "email"}, {"name": "email"}]}, "fields.1.name", "twice"),
        ({"fields": [{"name": "email", "required": "yes"}, {"name": "phone"}]}, "fields.0.required", "true"),
        ({"fields": [{"name": "email", "required": False}, {"name": "phone"}]}, "fields", "required"),
        ({"fields": [{"name": "email", "format": "date"}, {"name": "phone"}]}, "fields.0.format", "birthday"),
        ({"fields": ["email", {"name": "phone"}]}, "fields.0", "object"),
        ({"texts": {"fr": {"title": "Salut"}}}, "texts", "default locale"),
        ({"texts": {"en": {"title": "x" * 1001}}}, "texts.en.title", "1,000"),
        ({"texts": {"en": {"title": 5}}}, "texts.en.title", "string"),
        ({"texts": {"en": {"colour": "red"}}}, "texts.en.colour", "not a text"),
        ({"texts": {"English": {"title": "Hi"}, "en": {}}}, "texts.English", "locale"),
        ({"texts": ["en"]}, "texts", "object"),
        ({"default_locale": "en_US!"}, "default_locale", "locale"),
        ({"trigger": {"type": "delay", "delay_seconds": 601}}, "trigger.delay_seconds", "between 0 and 600"),
        ({"trigger": {"type": "delay", "delay_seconds": -1}}, "trigger.delay_seconds", "between 0 and 600"),
        ({"trigger": {"type": "delay", "delay_seconds": "5"}}, "trigger.delay_seconds", "between"),
        ({"trigger": {"type": "delay", "delay_seconds": True}}, "trigger.delay_seconds", "between"),
        (
            {"trigger": {"type": "scroll", "scroll_percent": 101}},
            "trigger.scroll_percent",
            "between 0 and 100",
        ),
        ({"trigger": {"frequency_days": 366}}, "trigger.frequency_days", "between 0 and 365"),
        ({"trigger": {"type": "hover"}}, "trigger.type", "exit_intent"),
        ({"trigger": "delay"}, "trigger", "object"),
        ({"targeting": {"match": "regex", "paths": ["/"]}}, "targeting.match", "contains"),
        ({"targeting": {"match": "equals", "paths": []}}, "targeting.paths", "at least one"),
        ({"targeting": {"match": "equals", "paths": [f"/p{i}" for i in range(51)]}}, "targeting.paths", "50"),
        ({"targeting": {"match": "equals", "paths": ["sale"]}}, "targeting.paths.0", "/"),
        ({"targeting": {"match": "equals", "paths": "/sale"}}, "targeting.paths", "list"),
        ({"tag": "a,b"}, "tag", "commas"),
        ({"tag": "t" * 256}, "tag", "255"),
        ({"tag": 7}, "tag", "string"),
        ({"discount_code": "D" * 65}, "discount_code", "64"),
        ({"discount_code": "A\nB"}, "discount_code", "control"),
        ({"active": "yes"}, "active", "true or false"),
    ],
)
def test_a_bad_value_is_named_by_its_field(overrides: dict[str, Any], field: str, words: str) -> None:
    errors = errors_of(good(**overrides))
    assert field in errors, errors
    assert words in errors[field]


def test_every_bad_field_is_reported_at_once() -> None:
    errors = errors_of(good(name="", template="quiz", tag="a,b", trigger={"delay_seconds": 9999}))
    assert {"name", "template", "tag", "trigger.delay_seconds"} <= set(errors)


def test_profile_template_takes_profile_fields_with_email() -> None:
    values = validate_form(
        good(
            template="profile",
            fields=[
                {"name": "email", "required": True},
                {"name": "first_name"},
                {"name": "birthday", "format": "month_day"},
                {"name": "gender"},
                {"name": "country"},
            ],
        )
    )
    assert [f["name"] for f in values["fields"]] == ["email", "first_name", "birthday", "gender", "country"]
    assert values["fields"][2]["format"] == "month_day"
    assert "email" in errors_of(good(template="profile", fields=[{"name": "first_name"}]))["fields"]
    birthday = errors_of(
        good(template="profile", fields=[{"name": "email"}, {"name": "birthday", "format": "x"}])
    )
    assert "month_day" in birthday["fields.1.format"]
    assert errors_of(good(template="profile", fields=[{"name": "email"}, {"name": "phone"}]))["fields.1.name"]


def test_newsletter_template_shows_only_email() -> None:
    assert validate_form(good(template="newsletter", fields=[{"name": "email"}]))["fields"] == [
        {"name": "email", "required": True}
    ]
    assert "fields.1.name" in errors_of(
        good(template="newsletter", fields=[{"name": "email"}, {"name": "phone"}])
    )


def test_a_patch_changes_only_what_it_gives_and_is_checked_as_a_whole() -> None:
    current = validate_form(good())
    patched = validate_form({"tag": "new-tag"}, current)
    assert patched["tag"] == "new-tag"
    assert patched["texts"] == current["texts"]
    assert patched["trigger"] == current["trigger"]
    # A template change without fields takes the new template's default fields.
    assert validate_form({"template": "newsletter"}, current)["fields"] == DEFAULT_FIELDS["newsletter"]
    # A default locale the stored texts do not have is refused.
    assert "texts" in errors_of({"default_locale": "de"}, current)
    assert validate_form({"default_locale": "fr"}, current)["default_locale"] == "fr"
    # Fields the body does not know are ignored, never stored.
    assert "shop_id" not in validate_form({"shop_id": 99}, current)


def test_an_empty_tag_or_code_is_none() -> None:
    values = validate_form(good(tag="  ", discount_code=""))
    assert (values["tag"], values["discount_code"]) == (None, None)


def test_countries_have_codes_names_and_dialling_codes() -> None:
    by_code = {c["code"]: c for c in countries()}
    assert by_code["US"] == {"code": "US", "name": "United States", "dial": "+1"}
    assert by_code["FR"]["dial"] == "+33"
    assert by_code["GB"]["name"] == "United Kingdom"
    assert by_code["XK"]["dial"] == "+383"
    assert by_code["AQ"]["dial"] is None
    assert len(by_code) >= 249
