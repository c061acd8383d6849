"""The development store's SHOPLINE side: the Open API customer subset popsync uses, and the token calls.

Routes (``<version>`` is any ``vYYYYMMDD``):

- ``POST /admin/oauth/token/create`` and ``POST /admin/oauth/token/refresh``: signed with the app secret
  (``appkey``/``timestamp``/``sign`` headers over body + timestamp); they mint 10-hour tokens for the shop
  named by ``X-Forwarded-Host``. In development any non-empty ``code`` is accepted. A refresh replaces the
  shop's token at once (SHOPLINE keeps the old one valid for five more minutes).
- ``POST customers/query_user_by_email.json``, ``GET customers/v2/search.json`` (fuzzy ``query_param`` over
  email, names and phone digits), ``GET v2/customers.json`` (``updated_at_min``/``updated_at_max``),
  ``GET customers/v2/<id>.json``,
  ``POST customers.json``, ``PUT customers/<id>.json``, under ``/admin/openapi/<version>/``.
- Webhook subscriptions per shop (reference/shopline.md §2.1), under the same prefix: ``GET webhooks.json``,
  ``GET webhooks/count.json``, ``POST webhooks.json`` (``{"webhook": {"topic", "address", "api_version"}}``),
  ``PUT <id>/webhooks.json`` (only the address changes) and ``DELETE <id>/webhooks.json``. They are kept, not
  yet used for delivery: the store sends its webhooks to the app URL it was given.

It keeps SHOPLINE's rules as reference/shopline.md describes them: one customer per email and per phone
(422 ``{"errors": "Email has already been taken"}``), field formats and limits (422), a leaky bucket per
shop (``store.shopline_bucket_size`` requests restored at ``store.shopline_rate`` per second; over it,
429 ``{"errors": "Too many request"}``), ``link: <…page_info…>; rel="next"`` pagination, and a signed
``customers/create`` or ``customers/update`` webhook after every write, whose ``updated_at`` strictly
increases per customer (to the millisecond).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta
from typing import Any

import phonenumbers
import sqlalchemy as sa
from email_validator import EmailNotValidError
from email_validator import validate_email
from flask import Blueprint
from flask import Response
from flask import current_app
from flask import jsonify
from flask import request
from flask.blueprints import BlueprintSetupState

from app.platforms.devstore.state import METADATA
from app.platforms.devstore.state import DevStore
from app.platforms.devstore.state import now_utc
from app.platforms.devstore.state import shops
from app.platforms.shopline_signing import verify_post

bp = Blueprint("devstore_shopline", __name__)

API = "/admin/openapi/<version>"
# Public ids look like SHOPLINE's long numeric strings; the row's key is added to this.
ID_BASE = 4_200_000_000_000
TOKEN_LIFETIME = timedelta(hours=10)
SCOPES = "read_customers,write_customers"
DEFAULT_LIMIT = 50
MAX_LIMIT = 250
MAX_QUERY_LENGTH = 50
EMAIL_MAX = 50
PHONE_MAX = 20
NAME_MAX = 128
MAX_TAGS = 100
TAG_MAX = 128
TAGS_MAX = 1000
MAX_ADDRESSES = 50
ADDRESS_KEYS = (
    "first_name",
    "last_name",
    "company",
    "phone",
    "address1",
    "address2",
    "city",
    "province",
    "province_code",
    "country",
    "country_code",
    "zip",
    "default",
)
GENDERS = {0: "others", 1: "male", 2: "female", 3: "secret"}
NOT_SUBSCRIBED = 2
WEBHOOK_ADDRESS_MAX = 255
# The oldest api_version a subscription may name (older events are configured in the Partner Portal).
WEBHOOK_MIN_VERSION = "v20240601"
# The topics of reference/shopline.md §2.5 (the official SDK's GetSupportedTopic, the ones that concern us).
WEBHOOK_TOPICS = frozenset(
    {
        "customers/create",
        "customers/update",
        "customers/delete",
        "customers/enable",
        "customers/disable",
        "customers_marketing_consent/update",
        "customer_groups/create",
        "customer_groups/update",
        "customer_groups/delete",
        "customers/action",
        "apps/installed_uninstalled",
        "customers/redact",
        "merchants/redact",
    }
)
_VERSION = re.compile(r"^v\d{8}$")
_SHOP_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,59}\.myshopline\.com$")
_CONSENT_WORDS = {0: "unsubscribed", 1: "subscribed", 2: "not_subscribed", 3: "pending"}

customers = sa.Table(
    "devstore_shopline_customers",
    METADATA,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("shop_id", sa.Integer, sa.ForeignKey(shops.c.id), nullable=False),
    sa.Column("email", sa.String(EMAIL_MAX)),
    sa.Column("phone", sa.String(PHONE_MAX)),  # E.164
    sa.Column("first_name", sa.String(NAME_MAX)),
    sa.Column("last_name", sa.String(NAME_MAX)),
    sa.Column("birthday", sa.String(8)),  # yyyyMMdd
    sa.Column("gender", sa.Integer, nullable=False, default=0),
    sa.Column("tags", sa.Text, nullable=False, default=""),
    sa.Column("email_state", sa.Integer, nullable=False, default=NOT_SUBSCRIBED),
    sa.Column("email_opt_in_level", sa.Integer),
    sa.Column("email_collected_from", sa.String(255)),
    sa.Column("email_consent_updated_at", sa.String(40)),
    sa.Column("sms_state", sa.Integer, nullable=False, default=NOT_SUBSCRIBED),
    sa.Column("sms_opt_in_level", sa.Integer),
    sa.Column("sms_collected_from", sa.String(255)),
    sa.Column("sms_consent_updated_at", sa.String(40)),
    sa.Column("addresses", sa.JSON, nullable=False, default=list),
    sa.Column("created_at", sa.DateTime, nullable=False),  # naive UTC
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("shop_id", "email"),
    sa.UniqueConstraint("shop_id", "phone"),
)

# The shops' webhook subscriptions (§2.1); ids are small integers, as SHOPLINE's are.
webhooks = sa.Table(
    "devstore_shopline_webhooks",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("shop_id", sa.Integer, sa.ForeignKey(shops.c.id), nullable=False),
    sa.Column("topic", sa.String(64), nullable=False),
    sa.Column("address", sa.String(WEBHOOK_ADDRESS_MAX), nullable=False),
    sa.Column("api_version", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),  # naive UTC
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("shop_id", "topic", "address"),
)

# Expiry of the tokens this store minted; tokens registered directly (``popsync shops add``) never expire.
tokens = sa.Table(
    "devstore_shopline_tokens",
    METADATA,
    sa.Column("access_token", sa.String(255), primary_key=True),
    sa.Column("expires_at", sa.DateTime, nullable=False),  # naive UTC
)


class Refused(Exception):
    """An answer other than success: the status and SHOPLINE's ``errors`` text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ShopContext:
    id: int
    domain: str
    version: str


class Buckets:
    """SHOPLINE's leaky bucket per shop: each request adds one, ``rate`` leak out per second."""

    def __init__(self) -> None:
        self._levels: dict[int, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def admit(self, shop_id: int, size: float, rate: float, now: float) -> bool:
        with self._lock:
            level, then = self._levels.get(shop_id, (0.0, now))
            level = max(0.0, level - max(0.0, now - then) * rate)
            admitted = level + 1 <= size
            self._levels[shop_id] = (level + 1 if admitted else level, now)
            return admitted


@bp.record_once
def _install(state: BlueprintSetupState) -> None:
    state.app.extensions["devstore.shopline_buckets"] = Buckets()


@bp.after_request
def _trace(response: Response) -> Response:
    response.headers["traceId"] = uuid.uuid4().hex
    return response


def _store() -> DevStore:
    return current_app.extensions["devstore"]


def _error(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"errors": message}), status


def _public_id(pk: int) -> str:
    return str(ID_BASE + pk)


def _pk(customer_id: str) -> int | None:
    if not customer_id.isascii() or not customer_id.isdigit():
        return None
    pk = int(customer_id) - ID_BASE
    return pk if pk > 0 else None


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC).isoformat(timespec="milliseconds")


def _utc_naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def _subscribe_flag(state: int) -> int:
    # The legacy flags know only unsubscribed, subscribed and not subscribed.
    return state if state in (0, 1) else NOT_SUBSCRIBED


def _consent_json(row: Any, channel: str) -> dict[str, Any]:
    return {
        "state": getattr(row, f"{channel}_state"),
        "opt_in_level": getattr(row, f"{channel}_opt_in_level"),
        "consent_collected_from": getattr(row, f"{channel}_collected_from"),
        "consent_updated_at": getattr(row, f"{channel}_consent_updated_at"),
    }


def customer_json(row: Any) -> dict[str, Any]:
    """A customer as SHOPLINE's API answers and its ``customers/*`` webhooks carry it."""
    addresses = list(row.addresses or [])
    default = next((a for a in addresses if a.get("default")), addresses[0] if addresses else None)
    return {
        "id": _public_id(row.pk),
        "email": row.email,
        "phone": row.phone,
        "first_name": row.first_name,
        "last_name": row.last_name,
        "birthday": row.birthday,
        "gender": GENDERS.get(row.gender, "others"),
        "tags": row.tags,
        "state": 1,
        "email_subscribe_flag": _subscribe_flag(row.email_state),
        "mobile_subscribe_flag": _subscribe_flag(row.sms_state),
        "email_marketing_consent": _consent_json(row, "email"),
        "sms_marketing_consent": _consent_json(row, "sms"),
        "addresses": addresses,
        "default_address": default,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }


# -- authentication, faults and the rate limit ----------------------------------------------------------


def _expired(store: DevStore, token: str) -> bool:
    with store.engine.connect() as connection:
        expires_at = connection.execute(
            sa.select(tokens.c.expires_at).where(tokens.c.access_token == token)
        ).scalar()
    return expires_at is not None and expires_at <= _utc_naive(now_utc())


def api(view: Callable[..., Any]) -> Callable[..., Any]:
    """The shop's bearer token, then injected faults, then the shop's leaky bucket; the view gets the shop."""

    @functools.wraps(view)
    def wrapper(version: str, **kwargs: Any) -> Any:
        if not _VERSION.fullmatch(version):
            return _error(404, "Not Found")
        store = _store()
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        shop = None
        expired = False
        if scheme.lower() == "bearer" and token:
            # In-memory SQLite shares one connection between threads: reads hold the lock too.
            with store.lock:
                shop = store.shop_for_token("shopline", token, request.headers.get("X-Forwarded-Host"))
                expired = shop is not None and _expired(store, token)
        if shop is None:
            return _error(401, "[API] Invalid API key or access token (unrecognized login or wrong password)")
        if expired:
            return _error(401, "[API] The access token has expired")
        fault = store.faults.before_call()
        if fault == "throttle":
            return _error(429, "Too many request")
        if fault is not None:
            return _error(503, "Service Unavailable")
        buckets: Buckets = current_app.extensions["devstore.shopline_buckets"]
        admitted = buckets.admit(shop[0], store.shopline_bucket_size, store.shopline_rate, store.clock())
        store.stats.record("shopline", throttled=not admitted, cost=1)
        if not admitted:
            return _error(429, "Too many request")
        try:
            return view(ShopContext(shop[0], shop[1], version), **kwargs)
        except Refused as refused:
            return _error(refused.status, refused.message)

    return wrapper


def _body() -> dict[str, Any]:
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise Refused(400, "The request body must be a JSON object")
    return body


def _customer_body() -> dict[str, Any]:
    customer = _body().get("customer")
    if not isinstance(customer, dict):
        raise Refused(400, "customer is required")
    return customer


def _answer_write(store: DevStore, payload: dict[str, Any]) -> Any:
    if store.faults.lose_answer():
        return _error(503, "Service Unavailable")
    return jsonify({"customer": payload})


# -- validation -----------------------------------------------------------------------------------------


def _text(fields: dict[str, Any], name: str, limit: int) -> str | None:
    value = fields[name]
    if value is None:
        return None
    if not isinstance(value, str):
        raise Refused(422, f"{name} must be a string")
    value = value.strip()
    if len(value) > limit:
        raise Refused(422, f"{name} is too long (maximum is {limit} characters)")
    return value or None


def _email(fields: dict[str, Any]) -> str | None:
    value = _text(fields, "email", EMAIL_MAX)
    if value is None:
        return None
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        raise Refused(422, "email is invalid") from None
    return value.lower()


def _phone(fields: dict[str, Any]) -> str | None:
    value = _text(fields, "phone", PHONE_MAX)
    if value is None:
        return None
    text = re.sub(r"[\s().-]", "", value)
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        raise Refused(422, "phone is invalid") from None
    if not phonenumbers.is_valid_number(number):
        raise Refused(422, "phone is invalid")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _birthday(fields: dict[str, Any]) -> str | None:
    value = fields["birthday"]
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not re.fullmatch(r"\d{8}", value):
        raise Refused(422, "birthday must be formatted as yyyyMMdd")
    try:
        date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise Refused(422, "birthday is not a valid date") from None
    return value


def _small_int(value: Any, label: str, allowed: range) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        raise Refused(422, f"{label} must be one of {', '.join(map(str, allowed))}")
    return value


def _tags(fields: dict[str, Any]) -> str:
    value = fields["tags"]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Refused(422, "tags must be a comma-separated string")
    tags = [tag.strip() for tag in value.split(",") if tag.strip()]
    if len(tags) > MAX_TAGS or any(len(tag) > TAG_MAX for tag in tags) or len(",".join(tags)) > TAGS_MAX:
        raise Refused(422, f"tags: at most {MAX_TAGS} tags of {TAG_MAX} characters, {TAGS_MAX} in all")
    return ",".join(tags)


def _consent(fields: dict[str, Any], key: str, channel: str, now: datetime) -> dict[str, Any]:
    consent = fields[key]
    if not isinstance(consent, dict):
        raise Refused(422, f"{key} must be an object")
    # State 0 (unsubscribed) is a value like any other: only a missing state is refused.
    if consent.get("state") is None:
        raise Refused(422, f"{key}.state is required")
    state = _small_int(consent["state"], f"{key}.state", range(4))
    level = consent.get("opt_in_level")
    if level is not None:
        _small_int(level, f"{key}.opt_in_level", range(3))
    source = consent.get("consent_collected_from")
    if source is not None and (not isinstance(source, str) or len(source) > 255):
        raise Refused(422, f"{key}.consent_collected_from must be a string")
    updated = consent.get("consent_updated_at")
    if updated is not None:
        try:
            datetime.fromisoformat(str(updated).replace("Z", "+00:00"))
        except ValueError:
            raise Refused(422, f"{key}.consent_updated_at must be an ISO-8601 time") from None
    return {
        f"{channel}_state": state,
        f"{channel}_opt_in_level": level,
        f"{channel}_collected_from": source,
        f"{channel}_consent_updated_at": updated or _iso(now),
    }


def _addresses(fields: dict[str, Any]) -> list[dict[str, Any]]:
    value = fields["addresses"]
    if value is None:
        return []
    if (
        not isinstance(value, list)
        or len(value) > MAX_ADDRESSES
        or not all(isinstance(a, dict) for a in value)
    ):
        raise Refused(422, f"addresses must be a list of at most {MAX_ADDRESSES} addresses")
    addresses = []
    for item in value:
        address = {key: item[key] for key in ADDRESS_KEYS if key in item}
        code = address.get("country_code")
        if code is not None:
            if not isinstance(code, str) or not re.fullmatch(r"[A-Za-z]{2}", code):
                raise Refused(422, "addresses.country_code must be an ISO 3166-1 alpha-2 code")
            address["country_code"] = code.upper()
        address["default"] = bool(address.get("default"))
        addresses.append(address)
    if addresses and not any(a["default"] for a in addresses):
        addresses[0]["default"] = True
    return addresses


def _columns(fields: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The table values for a create or update body; Refused (422) for a value SHOPLINE would refuse."""
    columns: dict[str, Any] = {}
    parsers: dict[str, Callable[[], Any]] = {
        "email": lambda: _email(fields),
        "phone": lambda: _phone(fields),
        "first_name": lambda: _text(fields, "first_name", NAME_MAX),
        "last_name": lambda: _text(fields, "last_name", NAME_MAX),
        "birthday": lambda: _birthday(fields),
        "gender": lambda: _small_int(fields["gender"], "gender", range(4)),
        "tags": lambda: _tags(fields),
        "addresses": lambda: _addresses(fields),
    }
    for name, parse in parsers.items():
        if name in fields:
            columns[name] = parse()
    for key, channel in (("email_marketing_consent", "email"), ("sms_marketing_consent", "sms")):
        if key in fields:
            columns.update(_consent(fields, key, channel, now))
    return columns


def _check_unique(connection: sa.Connection, shop_id: int, columns: dict[str, Any], pk: int | None) -> None:
    taken = []
    for name in ("email", "phone"):
        value = columns.get(name)
        if value is None:
            continue
        query = sa.select(customers.c.pk).where(customers.c.shop_id == shop_id, customers.c[name] == value)
        if pk is not None:
            query = query.where(customers.c.pk != pk)
        if connection.execute(query).first() is not None:
            taken.append(f"{name.capitalize()} has already been taken")
    if taken:
        raise Refused(422, "; ".join(taken))


def _next_moment(previous: datetime | None) -> datetime:
    now = _utc_naive(now_utc())
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    if previous is not None and now <= previous:
        # Webhook consumers compare updated_at to skip stale changes: it must move on every write.
        return previous + timedelta(milliseconds=1)
    return now


# -- customers ------------------------------------------------------------------------------------------


def _one(connection: sa.Connection, shop_id: int, pk: int | None) -> Any:
    if pk is None:
        return None
    return connection.execute(
        sa.select(customers).where(customers.c.shop_id == shop_id, customers.c.pk == pk)
    ).first()


@bp.post(f"{API}/customers/query_user_by_email.json")
@api
def query_by_email(shop: ShopContext) -> Any:
    """The customer with exactly this email (case-insensitive), or 404."""
    email = _body().get("email")
    if not isinstance(email, str) or not email.strip():
        raise Refused(422, "email is required")
    store = _store()
    with store.lock, store.engine.connect() as connection:
        row = connection.execute(
            sa.select(customers).where(
                customers.c.shop_id == shop.id, customers.c.email == email.strip().lower()
            )
        ).first()
    if row is None:
        return _error(404, "The customer does not exist.")
    return jsonify({"customer": customer_json(row)})


@bp.get(f"{API}/customers/v2/<customer_id>.json")
@api
def get_customer(shop: ShopContext, customer_id: str) -> Any:
    """One customer by id, or 404."""
    store = _store()
    with store.lock, store.engine.connect() as connection:
        row = _one(connection, shop.id, _pk(customer_id))
    if row is None:
        return _error(404, "The customer does not exist.")
    return jsonify({"customer": customer_json(row)})


def _encode_page(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_page(page_info: str) -> dict[str, Any]:
    try:
        state = json.loads(base64.urlsafe_b64decode(page_info + "=" * (-len(page_info) % 4)))
    except (binascii.Error, ValueError):
        raise Refused(400, "page_info is invalid") from None
    if not isinstance(state, dict) or not isinstance(state.get("after"), int):
        raise Refused(400, "page_info is invalid")
    for bound in ("umin", "umax"):
        if state.get(bound) is not None and not _is_iso(state[bound]):
            raise Refused(400, "page_info is invalid")
    return state


def _is_iso(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _limit(value: Any) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not isinstance(value, int) and not (isinstance(value, str) and value.isdigit()):
        raise Refused(400, "limit must be a number")
    limit = int(value)
    if not 1 <= limit <= MAX_LIMIT:
        raise Refused(400, f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def _updated_bound(name: str) -> str | None:
    """An ``updated_at_min``/``updated_at_max`` argument as naive UTC ISO text (how it travels in
    ``page_info``); a time without an offset is taken as UTC. 400 when it is not an ISO-8601 time."""
    value = request.args.get(name)
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Refused(400, f"{name} must be an ISO-8601 time") from None
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return _utc_naive(aware).isoformat()


def _page(shop: ShopContext, endpoint: str, query: str | None, *, updated: bool = False) -> Any:
    """A page of the shop's customers (optionally fuzzy-matched, or with ``updated``, filtered by
    ``updated_at_min``/``updated_at_max``) with a ``rel="next"`` link when more remain.

    As on SHOPLINE, a ``page_info`` carries the first call's filters; only ``limit`` may change."""
    limit = _limit(request.args.get("limit"))
    after = 0
    page_info = request.args.get("page_info")
    if page_info:
        state = _decode_page(page_info)
        after, query = state["after"], state.get("q")
        updated_min, updated_max = state.get("umin"), state.get("umax")
    else:
        updated_min = _updated_bound("updated_at_min") if updated else None
        updated_max = _updated_bound("updated_at_max") if updated else None
    statement = sa.select(customers).where(customers.c.shop_id == shop.id, customers.c.pk > after)
    if updated_min:
        statement = statement.where(customers.c.updated_at >= datetime.fromisoformat(updated_min))
    if updated_max:
        statement = statement.where(customers.c.updated_at <= datetime.fromisoformat(updated_max))
    if query:
        lowered = query.lower()
        matches = [
            sa.func.lower(customers.c.email).contains(lowered, autoescape=True),
            sa.func.lower(customers.c.first_name).contains(lowered, autoescape=True),
            sa.func.lower(customers.c.last_name).contains(lowered, autoescape=True),
        ]
        digits = re.sub(r"\D", "", query)
        if digits:
            matches.append(customers.c.phone.contains(digits, autoescape=True))
        statement = statement.where(sa.or_(*matches))
    store = _store()
    with store.lock, store.engine.connect() as connection:
        rows = connection.execute(statement.order_by(customers.c.pk).limit(limit + 1)).all()
    response = jsonify({"customers": [customer_json(row) for row in rows[:limit]]})
    if len(rows) > limit:
        token = _encode_page(
            {"after": rows[limit - 1].pk, "q": query, "umin": updated_min, "umax": updated_max}
        )
        link = (
            f"https://{shop.domain}/admin/openapi/{shop.version}/{endpoint}?limit={limit}&page_info={token}"
        )
        response.headers["link"] = f'<{link}>; rel="next"'
    return response


@bp.get(f"{API}/customers/v2/search.json")
@api
def search_customers(shop: ShopContext) -> Any:
    """Customers whose email, names or phone digits contain ``query_param`` (fuzzy, like SHOPLINE's)."""
    query = request.args.get("query_param") or None
    if query is not None and len(query) > MAX_QUERY_LENGTH:
        raise Refused(422, f"query_param is too long (maximum is {MAX_QUERY_LENGTH} characters)")
    return _page(shop, "customers/v2/search.json", query)


@bp.get(f"{API}/v2/customers.json")
@api
def list_customers_api(shop: ShopContext) -> Any:
    """Every customer of the shop (updated within ``updated_at_min``/``updated_at_max`` when given), oldest
    first, page by page."""
    return _page(shop, "v2/customers.json", None, updated=True)


@bp.post(f"{API}/customers.json")
@api
def create_customer(shop: ShopContext) -> Any:
    """Create a customer; 422 for a bad value or an email or phone another customer holds."""
    fields = _customer_body()
    store = _store()
    with store.lock:
        moment = _next_moment(None)
        columns = _columns(fields, moment)
        if not columns.get("email") and not columns.get("phone"):
            raise Refused(422, "email or phone is required")
        with store.engine.begin() as connection:
            _check_unique(connection, shop.id, columns, None)
            pk = connection.execute(
                customers.insert().values(shop_id=shop.id, created_at=moment, updated_at=moment, **columns)
            ).inserted_primary_key[0]
            payload = customer_json(_one(connection, shop.id, pk))
        store.webhooks.send("shopline", "customers/create", shop.domain, payload)
    return _answer_write(store, payload)


@bp.put(f"{API}/customers/<customer_id>.json")
@api
def update_customer(shop: ShopContext, customer_id: str) -> Any:
    """Change the given fields of a customer (``tags`` and ``addresses`` replace the lists); 404 if none."""
    fields = _customer_body()
    store = _store()
    with store.lock:
        with store.engine.begin() as connection:
            row = _one(connection, shop.id, _pk(customer_id))
            if row is None:
                raise Refused(404, "The customer does not exist.")
            moment = _next_moment(row.updated_at)
            columns = _columns(fields, moment)
            _check_unique(connection, shop.id, columns, row.pk)
            connection.execute(
                customers.update().where(customers.c.pk == row.pk).values(updated_at=moment, **columns)
            )
            payload = customer_json(_one(connection, shop.id, row.pk))
        store.webhooks.send("shopline", "customers/update", shop.domain, payload)
    return _answer_write(store, payload)


# -- webhook subscriptions ------------------------------------------------------------------------------


def webhook_json(row: Any) -> dict[str, Any]:
    """A subscription as SHOPLINE's webhook endpoints answer it."""
    return {
        "id": row.id,
        "topic": row.topic,
        "address": row.address,
        "api_version": row.api_version,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }


def _webhook_address(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Refused(422, "address is required")
    value = value.strip()
    if len(value) > WEBHOOK_ADDRESS_MAX:
        raise Refused(422, f"address is too long (maximum is {WEBHOOK_ADDRESS_MAX} characters)")
    # SHOPLINE wants HTTPS; the development store also takes the app's plain-HTTP development address.
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s#]*)?", value):
        raise Refused(422, "address must be an http(s) URL")
    return value


def _webhook_body() -> dict[str, Any]:
    webhook = _body().get("webhook")
    if not isinstance(webhook, dict):
        raise Refused(400, "webhook is required")
    return webhook


def _one_webhook(connection: sa.Connection, shop_id: int, webhook_id: str) -> Any:
    if not webhook_id.isascii() or not webhook_id.isdigit():
        return None
    return connection.execute(
        sa.select(webhooks).where(webhooks.c.shop_id == shop_id, webhooks.c.id == int(webhook_id))
    ).first()


@bp.get(f"{API}/webhooks.json")
@api
def list_webhooks(shop: ShopContext) -> Any:
    """The shop's webhook subscriptions (this app's), oldest first."""
    store = _store()
    with store.lock, store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(webhooks).where(webhooks.c.shop_id == shop.id).order_by(webhooks.c.id)
        ).all()
    return jsonify({"webhooks": [webhook_json(row) for row in rows]})


@bp.get(f"{API}/webhooks/count.json")
@api
def count_webhooks(shop: ShopContext) -> Any:
    """How many webhook subscriptions the shop has."""
    store = _store()
    with store.lock, store.engine.connect() as connection:
        count = connection.execute(
            sa.select(sa.func.count()).select_from(webhooks).where(webhooks.c.shop_id == shop.id)
        ).scalar_one()
    return jsonify({"count": count})


@bp.post(f"{API}/webhooks.json")
@api
def create_webhook(shop: ShopContext) -> Any:
    """Subscribe the shop to a topic at an address; 422 for an unknown topic, a bad address or version, or
    a subscription that already exists."""
    fields = _webhook_body()
    topic = fields.get("topic")
    if not isinstance(topic, str) or topic not in WEBHOOK_TOPICS:
        raise Refused(422, "topic is not supported")
    address = _webhook_address(fields.get("address"))
    version = fields.get("api_version")
    if not isinstance(version, str) or not _VERSION.fullmatch(version) or version < WEBHOOK_MIN_VERSION:
        raise Refused(422, f"api_version must be {WEBHOOK_MIN_VERSION} or later")
    store = _store()
    moment = _utc_naive(now_utc())
    with store.lock, store.engine.begin() as connection:
        exists = connection.execute(
            sa.select(webhooks.c.id).where(
                webhooks.c.shop_id == shop.id, webhooks.c.topic == topic, webhooks.c.address == address
            )
        ).first()
        if exists is not None:
            raise Refused(422, "topic and address have already been taken")
        webhook_id = connection.execute(
            webhooks.insert().values(
                shop_id=shop.id,
                topic=topic,
                address=address,
                api_version=version,
                created_at=moment,
                updated_at=moment,
            )
        ).inserted_primary_key[0]
        row = _one_webhook(connection, shop.id, str(webhook_id))
    return jsonify({"webhook": webhook_json(row)})


@bp.put(f"{API}/<webhook_id>/webhooks.json")
@api
def update_webhook(shop: ShopContext, webhook_id: str) -> Any:
    """Change a subscription's address (the only thing SHOPLINE lets change); 404 if the shop has none."""
    address = _webhook_address(_webhook_body().get("address"))
    store = _store()
    with store.lock, store.engine.begin() as connection:
        row = _one_webhook(connection, shop.id, webhook_id)
        if row is None:
            raise Refused(404, "The webhook does not exist.")
        clash = connection.execute(
            sa.select(webhooks.c.id).where(
                webhooks.c.shop_id == shop.id,
                webhooks.c.topic == row.topic,
                webhooks.c.address == address,
                webhooks.c.id != row.id,
            )
        ).first()
        if clash is not None:
            raise Refused(422, "topic and address have already been taken")
        connection.execute(
            webhooks.update()
            .where(webhooks.c.id == row.id)
            .values(address=address, updated_at=_utc_naive(now_utc()))
        )
        row = _one_webhook(connection, shop.id, webhook_id)
    return jsonify({"webhook": webhook_json(row)})


@bp.delete(f"{API}/<webhook_id>/webhooks.json")
@api
def delete_webhook(shop: ShopContext, webhook_id: str) -> Any:
    """Unsubscribe; 404 if the shop has no such subscription."""
    store = _store()
    with store.lock, store.engine.begin() as connection:
        row = _one_webhook(connection, shop.id, webhook_id)
        if row is None:
            raise Refused(404, "The webhook does not exist.")
        connection.execute(webhooks.delete().where(webhooks.c.id == row.id))
    return jsonify({})


def list_subscriptions(store: DevStore, domain: str) -> list[dict[str, Any]]:
    """A shop's webhook subscriptions, for tests and the development tools (no token needed)."""
    with store.lock, store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(webhooks)
            .join(shops, shops.c.id == webhooks.c.shop_id)
            .where(shops.c.platform == "shopline", shops.c.domain == domain)
            .order_by(webhooks.c.id)
        ).all()
    return [webhook_json(row) for row in rows]


def drop_subscription(store: DevStore, domain: str, topic: str) -> int:
    """Delete a shop's subscriptions to ``topic``, as SHOPLINE does after 19 failed deliveries (§2.4);
    returns how many were deleted."""
    with store.lock, store.engine.begin() as connection:
        shop_ids = sa.select(shops.c.id).where(shops.c.platform == "shopline", shops.c.domain == domain)
        result = connection.execute(
            webhooks.delete().where(webhooks.c.shop_id.in_(shop_ids), webhooks.c.topic == topic)
        )
    return result.rowcount


# -- tokens ---------------------------------------------------------------------------------------------


def _token_answer(code: int, i18n_code: str, message: str, data: dict[str, Any] | None = None) -> Any:
    # SHOPLINE answers token calls with HTTP 200 and a business code inside.
    return jsonify({"code": code, "i18nCode": i18n_code, "message": message, "data": data})


def _signed_shop(store: DevStore) -> str | Any:
    """The shop domain of a correctly signed token call, or the answer refusing it."""
    secret = store.webhooks.secrets.get("shopline", "")
    body = request.get_data(as_text=True)
    timestamp = request.headers.get("timestamp", "")
    if not request.headers.get("appkey"):
        return _token_answer(400, "APPKEY_MISSING", "appkey header is required")
    if not verify_post(body, timestamp, request.headers.get("sign", ""), secret, int(time.time() * 1000)):
        return _token_answer(401, "SIGN_INVALID", "sign verification failed")
    domain = (request.headers.get("X-Forwarded-Host") or request.host.split(":", 1)[0]).lower()
    if not _SHOP_DOMAIN.fullmatch(domain):
        return _token_answer(404, "STORE_NOT_EXIST", "unknown store")
    return domain


def _mint(store: DevStore, domain: str) -> Any:
    token = f"sl-dev-{secrets.token_urlsafe(32)}"
    expires_at = now_utc() + TOKEN_LIFETIME
    with store.lock:
        with store.engine.begin() as connection:
            previous = connection.execute(
                sa.select(shops.c.access_token).where(
                    shops.c.platform == "shopline", shops.c.domain == domain
                )
            ).scalar()
            if previous is not None:
                connection.execute(tokens.delete().where(tokens.c.access_token == previous))
            connection.execute(tokens.insert().values(access_token=token, expires_at=_utc_naive(expires_at)))
        store.add_shop("shopline", domain, token)
    expire_time = expires_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return _token_answer(
        200, "SUCCESS", "ok", {"accessToken": token, "expireTime": expire_time, "scope": SCOPES}
    )


@bp.post("/admin/oauth/token/create")
def token_create() -> Any:
    """Exchange an authorisation code (any non-empty string in development) for a 10-hour token."""
    store = _store()
    domain = _signed_shop(store)
    if not isinstance(domain, str):
        return domain
    body = request.get_json(force=True, silent=True)
    code = body.get("code") if isinstance(body, dict) else None
    if not isinstance(code, str) or not code.strip():
        return _token_answer(400, "OAUTH_CODE_INVALID", "code is invalid")
    return _mint(store, domain)


@bp.post("/admin/oauth/token/refresh")
def token_refresh() -> Any:
    """A new 10-hour token for a shop that has one; the previous token stops working at once."""
    store = _store()
    domain = _signed_shop(store)
    if not isinstance(domain, str):
        return domain
    if domain not in {d for _, d in store.shop_domains("shopline")}:
        return _token_answer(400, "STORE_NOT_INSTALL_APP", "the store has not installed the app")
    return _mint(store, domain)


# -- the store's Customers page -------------------------------------------------------------------------


def list_customers(store: DevStore, shop_id: int) -> list[dict[str, Any]]:
    """The shop's customers as the ``/devstore/customers`` page shows them, in popsync's words."""
    with store.lock, store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(customers).where(customers.c.shop_id == shop_id).order_by(customers.c.pk)
        ).all()
    return [
        {
            "id": _public_id(row.pk),
            "name": " ".join(part for part in (row.first_name, row.last_name) if part) or None,
            "email": row.email,
            "phone": row.phone,
            "email_consent": _CONSENT_WORDS.get(row.email_state),
            "sms_consent": _CONSENT_WORDS.get(row.sms_state),
            "tags": [tag for tag in row.tags.split(",") if tag],
            "updated_at": _iso(row.updated_at),
        }
        for row in rows
    ]
