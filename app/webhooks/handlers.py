"""One handler per webhook topic, run by the worker (``on_<topic>``). Handlers are idempotent: a delivery
is handled once, and handling the same change twice changes nothing the second time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.contacts.csvio import COLUMNS
from app.contacts.normalize import FieldError
from app.contacts.normalize import normalize_country
from app.contacts.normalize import normalize_email
from app.contacts.normalize import normalize_phone
from app.contacts.service import MirroredCustomer
from app.contacts.service import MirrorService
from app.contacts.service import person_contacts
from app.enums import Source
from app.models import ContactEvent
from app.models import DataRequest
from app.models import Shop

# A person's data export (customers/data_request): the CSV columns and what popsync adds about the record.
_EXPORTED_FIELDS = ("id", *COLUMNS, "source", "platform_customer_id", "created_at", "updated_at")


@dataclass(frozen=True)
class WebhookContext:
    mirror: MirrorService
    shop: Shop
    platform: str
    delivery_id: int


Handler = Callable[[WebhookContext, dict[str, Any]], str]


def _email(value: Any) -> str | None:
    try:
        return normalize_email(value) if isinstance(value, str) else None
    except FieldError:
        return None


def _phone(value: Any, region: str | None) -> str | None:
    try:
        return normalize_phone(value, region) if isinstance(value, str) else None
    except FieldError:
        return None


def _text(value: Any) -> str | None:
    return value.strip()[:255] or None if isinstance(value, str) else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def shopify_customer_id(payload: dict[str, Any], key: str = "id") -> str | None:
    gid = payload.get("admin_graphql_api_id")
    if isinstance(gid, str) and gid.startswith("gid://shopify/Customer/"):
        return gid
    raw = payload.get(key)
    return f"gid://shopify/Customer/{raw}" if isinstance(raw, int | str) and str(raw).isdigit() else None


def _customer(ctx: WebhookContext, payload: dict[str, Any]) -> MirroredCustomer | None:
    region = ctx.shop.region
    if ctx.platform == "shopify":
        customer_id = shopify_customer_id(payload)
    else:
        raw = payload.get("id")
        customer_id = str(raw) if raw not in (None, "") else None
    if customer_id is None:
        return None
    address = payload.get("default_address") if isinstance(payload.get("default_address"), dict) else {}
    try:
        country = normalize_country(address.get("country_code")) if address else None
    except FieldError:
        country = None
    return MirroredCustomer(
        id=customer_id,
        updated_at=_time(payload.get("updated_at")),
        email=_email(payload.get("email")),
        phone=_phone(payload.get("phone"), region),
        first_name=_text(payload.get("first_name")),
        last_name=_text(payload.get("last_name")),
        country=country,
    )


def on_customers_upsert(ctx: WebhookContext, payload: dict[str, Any]) -> str:
    """customers/create and customers/update: mirror the non-empty values (the contract's rules)."""
    customer = _customer(ctx, payload)
    if customer is None:
        return "ignored: no customer id"
    outcome = ctx.mirror.mirror(ctx.shop.id, customer, event={"delivery_id": ctx.delivery_id})
    # SHOPLINE's customer payloads still carry consent: an unsubscribe there is applied like the topic's.
    for channel, key, identifier in (
        ("email", "email_marketing_consent", customer.email),
        ("sms", "sms_marketing_consent", customer.phone),
    ):
        consent = payload.get(key)
        if identifier and isinstance(consent, dict) and _unsubscribed(consent.get("state")):
            _unsubscribe(ctx, channel, identifier)
    return outcome


def _unsubscribe(ctx: WebhookContext, channel: str, value: str) -> str:
    changed = ctx.mirror.unsubscribe_identifier(ctx.shop.id, channel, value, source=Source.PLATFORM)
    return f"unsubscribed {changed}"


def _unsubscribed(state: Any) -> bool:
    return state == 0 or (isinstance(state, str) and state.lower() == "unsubscribed")


def on_customers_delete(ctx: WebhookContext, payload: dict[str, Any]) -> str:
    """customers/delete: the contact stays in the list, unlinked."""
    customer_id = shopify_customer_id(payload) if ctx.platform == "shopify" else str(payload.get("id") or "")
    if not customer_id:
        return "ignored: no customer id"
    return f"unlinked {ctx.mirror.unlink(ctx.shop.id, customer_id)}"


def on_customers_email_marketing_consent_update(ctx: WebhookContext, payload: dict[str, Any]) -> str:
    """Shopify's email consent topic: an unsubscribe reaches every contact holding that email (rule 8)."""
    consent = payload.get("email_marketing_consent") or {}
    email = _email(payload.get("email_address"))
    if not email or not _unsubscribed(consent.get("state")):
        return "ignored: not an unsubscribe"
    return _unsubscribe(ctx, "email", email)


def on_customers_marketing_consent_update(ctx: WebhookContext, payload: dict[str, Any]) -> str:
    """Shopify: SMS consent. SHOPLINE: both channels (``subscribeActionType`` 3 email unsub, 4 SMS unsub)."""
    region = ctx.shop.region
    if ctx.platform == "shopline":
        action = payload.get("subscribeActionType")
        customer = payload.get("customer") if isinstance(payload.get("customer"), dict) else payload
        if action == 3 and (email := _email(customer.get("email"))):
            return _unsubscribe(ctx, "email", email)
        if action == 4 and (phone := _phone(customer.get("phone"), region)):
            return _unsubscribe(ctx, "sms", phone)
        return "ignored: not an unsubscribe"
    consent = payload.get("sms_marketing_consent") or {}
    phone = _phone(payload.get("phone"), region)
    if not phone or not _unsubscribed(consent.get("state")):
        return "ignored: not an unsubscribe"
    return (
        f"unsubscribed {ctx.mirror.unsubscribe_identifier(ctx.shop.id, 'sms', phone, source=Source.PLATFORM)}"
    )


def _subject(ctx: WebhookContext, payload: dict[str, Any]) -> tuple[str | None, list[str], list[str]]:
    customer = payload.get("customer") if isinstance(payload.get("customer"), dict) else {}
    if ctx.platform == "shopify":
        customer_id = shopify_customer_id(customer)
    else:
        customer_id = str(customer.get("id")) if customer.get("id") not in (None, "") else None
    email = _email(customer.get("email"))
    phone = _phone(customer.get("phone"), ctx.shop.region)
    return customer_id, [email] if email else [], [phone] if phone else []


def on_customers_redact(ctx: WebhookContext, payload: dict[str, Any]) -> str:
    """Erase the person's contacts and events; suppress their identifiers (rule 11)."""
    customer_id, emails, phones = _subject(ctx, payload)
    erased = ctx.mirror.erase_person(ctx.shop.id, customer_id=customer_id, emails=emails, phones=phones)
    return f"erased {erased}"


def on_customers_data_request(ctx: WebhookContext, payload: dict[str, Any]) -> str:
    """Gather what popsync holds of the person into a JSON export the merchant downloads from the admin."""
    customer_id, emails, phones = _subject(ctx, payload)
    db = ctx.mirror.contacts.db
    with db.write_transaction() as session:
        found = person_contacts(session, ctx.shop.id, customer_id=customer_id, emails=emails, phones=phones)
        export = []
        for contact in found:
            events = session.scalars(
                sa.select(ContactEvent).where(ContactEvent.contact_id == contact.id).order_by(ContactEvent.id)
            ).all()
            export.append(
                {
                    **{
                        name: (value.isoformat() if hasattr(value, "isoformat") else value)
                        for name in _EXPORTED_FIELDS
                        if (value := getattr(contact, name)) is not None
                    },
                    "events": [
                        {"kind": e.kind, "occurred_at": e.occurred_at.isoformat(), **e.data} for e in events
                    ],
                }
            )
        session.add(
            DataRequest(
                shop_id=ctx.shop.id,
                subject={
                    "customer_id": customer_id,
                    "emails": emails,
                    "phones": phones,
                    "request": payload.get("data_request"),
                },
                export={"contacts": export},
            )
        )
    return f"exported {len(export)}"


def on_shop_redact(ctx: WebhookContext, payload: dict[str, Any]) -> str:
    """shop/redact (Shopify) and merchants/redact (SHOPLINE): erase everything of the shop."""
    db = ctx.mirror.contacts.db
    with db.write_transaction() as session:
        session.execute(sa.delete(Shop).where(Shop.id == ctx.shop.id))
    return "erased the shop"


def on_app_uninstalled(ctx: WebhookContext, payload: dict[str, Any]) -> str:
    """The tokens were deleted in the request; contacts are kept until the shop's redact."""
    return "tokens deleted"


def is_uninstall(platform: str, topic: str, payload: dict[str, Any]) -> bool:
    if platform == "shopify":
        return topic == "app/uninstalled"
    return topic == "apps/installed_uninstalled" and str(payload.get("operate", "")).lower() == "uninstall"


HANDLERS: dict[str, dict[str, Handler]] = {
    "shopify": {
        "customers/create": on_customers_upsert,
        "customers/update": on_customers_upsert,
        "customers/delete": on_customers_delete,
        "customers_email_marketing_consent/update": on_customers_email_marketing_consent_update,
        "customers_marketing_consent/update": on_customers_marketing_consent_update,
        "customers/data_request": on_customers_data_request,
        "customers/redact": on_customers_redact,
        "shop/redact": on_shop_redact,
        "app/uninstalled": on_app_uninstalled,
    },
    "shopline": {
        "customers/create": on_customers_upsert,
        "customers/update": on_customers_upsert,
        "customers/delete": on_customers_delete,
        "customers_marketing_consent/update": on_customers_marketing_consent_update,
        "customers/redact": on_customers_redact,
        "merchants/redact": on_shop_redact,
        "apps/installed_uninstalled": on_app_uninstalled,
    },
}
