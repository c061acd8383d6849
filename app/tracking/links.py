"""Making tracking links: validate a recipient, seal it, and build the URLs a sending tool merges in.

Shared by ``POST /api/v1/tracking-links`` (one or up to 1,000), its CSV form, and ``popsync tracking
link``. The open pixel and the unsubscribe link share one token (no URL sealed); the click link's token
also carries the target URL, checked to be http(s) here and again before every redirect.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from app.contacts.normalize import FieldError
from app.contacts.normalize import ValidationError
from app.contacts.normalize import clean_text
from app.contacts.normalize import normalize_email
from app.contacts.normalize import normalize_phone
from app.crypto import Keyring
from app.tracking.tokens import CHANNELS
from app.tracking.tokens import MESSAGE_ID_MAX_LENGTH
from app.tracking.tokens import TrackingLink
from app.tracking.tokens import seal
from app.tracking.tokens import validate_target_url

MAX_RECIPIENTS = 1000


def parse_recipient(
    body: Mapping[str, Any], *, shop_id: int, region: str | None, now: datetime, prefix: str = ""
) -> TrackingLink:
    """One recipient object as the API takes it; ValidationError naming every bad field (with ``prefix``,
    e.g. ``recipients[3].``)."""
    errors: dict[str, str] = {}

    def field(name: str, parse: Any) -> Any:
        try:
            return parse(body.get(name), prefix + name)
        except FieldError as error:
            errors[error.field] = error.message
            return None

    channel = body.get("channel")
    if channel not in CHANNELS:
        errors[prefix + "channel"] = "must be email or sms"
    email = field("email", normalize_email)
    phone = field("phone", lambda value, name: normalize_phone(value, region, name))
    first_name = field("first_name", clean_text)
    last_name = field("last_name", clean_text)
    message_id = field("message_id", lambda value, name: clean_text(value, name, MESSAGE_ID_MAX_LENGTH))
    url = field("url", lambda value, name: None if value in (None, "") else validate_target_url(value, name))
    if channel == "email" and not email and prefix + "email" not in errors:
        errors[prefix + "email"] = "is required for the email channel"
    if channel == "sms" and not phone and prefix + "phone" not in errors:
        errors[prefix + "phone"] = "is required for the sms channel"
    if not message_id and prefix + "message_id" not in errors:
        errors[prefix + "message_id"] = "is required"
    if errors:
        raise ValidationError(errors)
    return TrackingLink(
        shop_id=shop_id,
        channel=str(channel),
        message_id=message_id,
        issued_at=now,
        email=email,
        phone=phone,
        first_name=first_name,
        last_name=last_name,
        url=url,
    )


def link_urls(keyring: Keyring, app_url: str, link: TrackingLink) -> dict[str, str]:
    """``{"open_url", "click_url"?, "unsubscribe_url"}`` for one recipient."""
    token = seal(keyring, link.without_url())
    urls = {"open_url": f"{app_url}/t/o/{token}.gif"}
    if link.url:
        urls["click_url"] = f"{app_url}/t/c/{seal(keyring, link)}"
    urls["unsubscribe_url"] = f"{app_url}/u/{token}"
    return urls
