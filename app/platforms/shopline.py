"""SHOPLINE's Admin Open API (REST) for one shop's customers, and the signed token create/refresh calls.

A thin ``requests`` client (no usable Python SDK exists for myshopline.com; see reference/shopline.md §6)
that maps popsync's words to SHOPLINE's formats (§3.3):

- consent: ``{"state", "opt_in_level", "consent_collected_from", "consent_updated_at"}`` per channel, with
  ``state`` 0 unsubscribed, 1 subscribed, 2 not subscribed, 3 awaiting confirmation, always sent as an
  explicit int (state 0 is an unsubscribe and must never be dropped as "empty");
- birthday ``yyyyMMdd``; tags one comma-separated string;
- gender: requests take an int (0 unknown, 1 male, 2 female, 3 secret), answers and webhooks a string
  (``others``/``male``/``female``/``secret``). popsync writes ``male`` → 1, ``female`` → 2, ``other`` → 0
  (SHOPLINE's "others"), ``unspecified`` → 3 ("secret": the shopper chose not to say). Reading back,
  ``secret`` is ``unspecified`` and ``others``/0 is None: SHOPLINE uses the same value for "unknown", so
  it cannot claim a gender;
- phone: sent in E.164 (``+14155552671``). SHOPLINE's examples use ``00`` + country code and its
  storefront shows ``+``; which it stores is unconfirmed (§3.3, §8.6), so reading accepts ``+…``,
  ``00…`` and bare international digits, and a phone that cannot be read is kept as SHOPLINE wrote it (a
  non-empty, different phone: rule 9 then treats the customer as someone else rather than as a match);
- country: a default address ``{"country_code": …}``, only on create or for a customer with no address.

There is no exact phone lookup (§3.2): ``find_customer(phone=)`` searches the fuzzy ``query_param`` with the
number's national digits (contained in every form SHOPLINE may store) and keeps only the customers whose
normalised phone equals the one asked for.

The client never sleeps and never retries: before each request it takes one request from the shop's
shared budget (4 per second, a bucket of 40, shared by every worker process) and raises ``RetryLater``
when the bucket is empty, without sending anything. Exception messages name the operation and the status,
never the token or a customer's email, phone or name.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta
from typing import TYPE_CHECKING
from typing import Any
from urllib.parse import quote

import phonenumbers
import requests

from app.platforms.base import AuthFailed
from app.platforms.base import CustomerGone
from app.platforms.base import CustomerPage
from app.platforms.base import CustomerWrite
from app.platforms.base import FailedForGood
from app.platforms.base import IdentifierTaken
from app.platforms.base import PlatformCustomer
from app.platforms.base import RetryLater
from app.platforms.http import DEFAULT_TIMEOUT
from app.platforms.http import admin_url
from app.platforms.http import new_session
from app.platforms.http import rewrite_link
from app.platforms.shopline_signing import sign_post

if TYPE_CHECKING:
    from app.platforms.budget import RateBudget

log = logging.getLogger("popsync.platforms.shopline")

# REST Admin flow control (§3.6): a leaky bucket of 40 requests restored at 4 per second, per app and store.
BUCKET_CAPACITY = 40.0
RESTORE_RATE = 4.0
# Waits used when SHOPLINE gives none (it documents no Retry-After); the worker backs off from there.
THROTTLE_WAIT = 1.0
ERROR_WAIT = 1.0
STORE_FROZEN_WAIT = 300.0
SECURITY_BLOCK_WAIT = 60.0
TOKEN_TOO_SOON_WAIT = 60.0
# A phone search follows at most this many pages of the fuzzy match before giving up (the platform allows
# one customer per phone, so giving up can at worst make a create fail with IdentifierTaken).
MAX_SEARCH_PAGES = 5
SEARCH_PAGE_SIZE = 250
# ``v2/customers.json`` answers at most 250 a page (§3.2).
LIST_PAGE_SIZE = 250
# §1.7: tokens live 10 hours; used when an answer's expireTime cannot be read.
TOKEN_LIFETIME = timedelta(hours=10)
# §3.3 limits on tags.
MAX_TAGS = 100
MAX_TAG_LENGTH = 128
MAX_TAGS_LENGTH = 1000

CONSENT_STATES = {"unsubscribed": 0, "subscribed": 1, "not_subscribed": 2, "pending": 3}
_CONSENT_WORDS = {state: word for word, state in CONSENT_STATES.items()}
GENDER_CODES = {"other": 0, "male": 1, "female": 2, "unspecified": 3}
_GENDER_WORDS: dict[str | int, str | None] = {
    "others": None,
    "other": None,
    "unknown": None,
    "male": "male",
    "female": "female",
    "secret": "unspecified",
    0: None,
    1: "male",
    2: "female",
    3: "unspecified",
}
OPT_IN_SINGLE = 1
DEFAULT_CONSENT_SOURCE = "popsync"

_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?(next|previous|prev)"?')
_EMAIL_LIKE = re.compile(r"\S+@\S+")
_NUMBER_LIKE = re.compile(r"\+?\d[\d\s().-]{4,}\d")
_TAKEN = re.compile(r"taken|already|exist|duplicat|registered|occupied|in use|been used", re.IGNORECASE)
_NOT_TAKEN = re.compile(r"not exist|n't exist|no such", re.IGNORECASE)
_I18N_CODE = re.compile(r"^[A-Za-z0-9_.]{1,64}$")


def _redact(text: str, limit: int = 200) -> str:
    """SHOPLINE's error text without anything that looks like an email or a phone number."""
    text = _EMAIL_LIKE.sub("<email>", text)
    text = _NUMBER_LIKE.sub("<number>", text)
    text = " ".join(text.split())
    return text[:limit]


def _flatten_errors(errors: Any) -> str:
    # SHOPLINE documents a string; its SDK also tolerates a list or an object.
    if errors is None:
        return ""
    if isinstance(errors, str):
        return errors
    if isinstance(errors, list):
        return "; ".join(_flatten_errors(item) for item in errors)
    if isinstance(errors, dict):
        return "; ".join(f"{key} {_flatten_errors(value)}" for key, value in errors.items())
    return str(errors)


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    return _flatten_errors(body.get("errors", body.get("message")))


def taken_fields(error_text: str) -> tuple[str, ...]:
    """Which identifiers an error says another customer holds: ("email",), ("phone",), both, or ()."""
    fields: list[str] = []
    for clause in re.split(r"[;\n]", error_text):
        if not _TAKEN.search(clause) or _NOT_TAKEN.search(clause):
            continue
        lowered = clause.lower()
        if "mail" in lowered and "email" not in fields:
            fields.append("email")
        if ("phone" in lowered or "mobile" in lowered) and "phone" not in fields:
            fields.append("phone")
    return tuple(fields)


def _retry_after(response: requests.Response, default: float) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return default
    return seconds if seconds >= 0 else default


def read_phone(raw: str | None, region: str | None = None) -> str | None:
    """E.164 of a phone as SHOPLINE writes it (``+…``, ``00…``, or international digits without ``+``);
    with ``region``, a national number is read in that region instead. None when it is not a valid number."""
    if not raw:
        return None
    text = re.sub(r"[^\d+]", "", raw)
    if text.startswith("00"):
        text = "+" + text[2:]
    elif not text.startswith("+") and region is None:
        text = "+" + text
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _same_phone(stored: str | None, target: str) -> bool:
    if not stored:
        return False
    if read_phone(stored) == target:
        return True
    bare = stored.strip()
    if bare.startswith(("+", "00")):
        return False
    region = phonenumbers.region_code_for_number(phonenumbers.parse(target))
    return read_phone(bare, region) == target


def parse_datetime(value: Any) -> datetime | None:
    """An aware datetime from SHOPLINE's ISO-8601 strings (``Z``, offsets, or none: UTC) or epoch ms."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _parse_birthday(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    digits = value.replace("-", "").strip()
    if len(digits) != 8 or not digits.isdigit():
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def _consent_word(consent: Any, flag: Any) -> str | None:
    state = consent.get("state") if isinstance(consent, dict) else None
    if state is None:
        state = flag
    if isinstance(state, str) and state.isdigit():
        state = int(state)
    if isinstance(state, str):
        word = state.lower()
        return word if word in CONSENT_STATES else None
    return _CONSENT_WORDS.get(state) if isinstance(state, int) else None


def _gender_word(value: Any) -> str | None:
    if isinstance(value, str):
        value = int(value) if value.isdigit() else value.lower()
    return _GENDER_WORDS.get(value) if isinstance(value, str | int) else None


def split_tags(value: Any) -> tuple[str, ...]:
    """SHOPLINE's comma-separated tags as a tuple (a list is accepted too)."""
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else []
    return tuple(tag.strip() for tag in items if isinstance(tag, str) and tag.strip())


def _default_address(payload: Mapping[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    addresses = [a for a in payload.get("addresses") or [] if isinstance(a, dict)]
    default = payload.get("default_address")
    if not isinstance(default, dict) or not default:
        default = next((a for a in addresses if a.get("default")), addresses[0] if addresses else None)
    return default, bool(default) or bool(addresses)


def parse_customer(payload: Mapping[str, Any]) -> PlatformCustomer:
    """A SHOPLINE customer (an answer's ``customer`` or a ``customers/*`` webhook body) in popsync's words."""
    if not payload.get("id"):
        raise ValueError("a SHOPLINE customer without an id")
    address, has_address = _default_address(payload)
    country = address.get("country_code") if address else None
    email = payload.get("email")
    email = email.strip().lower() if isinstance(email, str) else None
    raw_phone = payload.get("phone")
    raw_phone = raw_phone.strip() if isinstance(raw_phone, str) else None
    return PlatformCustomer(
        id=str(payload["id"]),
        email=email or None,
        phone=read_phone(raw_phone) or raw_phone or None,
        first_name=payload.get("first_name") or None,
        last_name=payload.get("last_name") or None,
        birthday=_parse_birthday(payload.get("birthday")),
        gender=_gender_word(payload.get("gender")),
        country=country.upper() if isinstance(country, str) and country else None,
        has_address=has_address,
        email_consent=_consent_word(
            payload.get("email_marketing_consent"), payload.get("email_subscribe_flag")
        ),
        sms_consent=_consent_word(payload.get("sms_marketing_consent"), payload.get("mobile_subscribe_flag")),
        tags=split_tags(payload.get("tags")),
        updated_at=parse_datetime(payload.get("updated_at")),
    )


def _birthday_text(value: date | str) -> str:
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    return date.fromisoformat(value).strftime("%Y%m%d")


def _iso(moment: datetime) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.isoformat(timespec="milliseconds")


def _iso_seconds(moment: datetime) -> str:
    """``moment`` in UTC to the second, floored (flooring a lower bound can only add customers)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="seconds")


def merge_tags(current: Sequence[str], added: Sequence[str]) -> list[str]:
    """``current`` then the tags of ``added`` it lacks (compared case-insensitively, as merchants do)."""
    merged = list(current)
    seen = {tag.lower() for tag in merged}
    for tag in added:
        tag = tag.strip()
        if tag and tag.lower() not in seen:
            merged.append(tag)
            seen.add(tag.lower())
    return merged


def _tags_text(tags: Sequence[str]) -> str:
    for tag in tags:
        if "," in tag:
            raise FailedForGood("a SHOPLINE tag cannot contain a comma")
        if len(tag) > MAX_TAG_LENGTH:
            raise FailedForGood(f"a SHOPLINE tag is at most {MAX_TAG_LENGTH} characters")
    text = ",".join(tags)
    if len(tags) > MAX_TAGS or len(text) > MAX_TAGS_LENGTH:
        raise FailedForGood(
            f"a SHOPLINE customer holds at most {MAX_TAGS} tags and {MAX_TAGS_LENGTH} characters"
        )
    return text


class ShoplineClient:
    """One SHOPLINE shop's customers through the Admin Open API; implements ``PlatformClient``."""

    # What the calls are about, in the errors' words ("SHOPLINE throttled the customer update").
    subject = "customer"

    def __init__(
        self,
        *,
        domain: str,
        access_token: str,
        api_version: str,
        admin_origin: str | None,
        shop_id: int,
        budget: RateBudget | None,
        session: requests.Session | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        bucket_capacity: float = BUCKET_CAPACITY,
        restore_rate: float = RESTORE_RATE,
    ) -> None:
        """``bucket_capacity`` and ``restore_rate`` are SHOPLINE's published limit unless a store has another
        (Enterprise plans are unlimited) or a development store is configured otherwise."""
        self.domain = domain
        self.api_version = api_version
        self.admin_origin = admin_origin
        self.shop_id = shop_id
        self.budget = budget
        self._owns_session = session is None
        self.session = session or new_session()
        self.timeout = timeout
        self.bucket_capacity = bucket_capacity
        self.restore_rate = restore_rate
        self._token = access_token
        self._base, self._forwarded = admin_url(domain, f"/admin/openapi/{api_version}/", admin_origin)

    def __repr__(self) -> str:
        return f"ShoplineClient(domain={self.domain!r}, api_version={self.api_version!r})"

    def close(self) -> None:
        """Close the HTTP session if this client made it (a session passed in belongs to the caller)."""
        if self._owns_session:
            self.session.close()

    # -- the PlatformClient protocol -------------------------------------------------------------------

    def find_customer(self, *, email: str | None = None, phone: str | None = None) -> PlatformCustomer | None:
        """The customer holding exactly this email, or else this phone (exact match, never fuzzy)."""
        if email:
            found = self._find_by_email(email)
            if found is not None:
                return found
        if phone:
            return self._find_by_phone(phone)
        return None

    def fetch_customer(self, customer_id: str) -> PlatformCustomer | None:
        """The customer with this id, or None when it no longer exists."""
        response = self._call(
            "GET", self._endpoint(f"customers/v2/{quote(customer_id, safe='')}.json"), "fetch"
        )
        if response.status_code == 404:
            return None
        self._check(response, "fetch")
        customer = self._json(response, "fetch").get("customer")
        return parse_customer(customer) if isinstance(customer, dict) and customer.get("id") else None

    def create_customer(self, write: CustomerWrite, tags: Sequence[str]) -> PlatformCustomer:
        """Create a customer with these values and tags; IdentifierTaken names what another holds."""
        fields = self._fields(write, with_country=True)
        tag_list = merge_tags([], tags)
        if tag_list:
            fields["tags"] = _tags_text(tag_list)
        response = self._call("POST", self._endpoint("customers.json"), "create", body={"customer": fields})
        self._check(response, "create", write=True)
        customer = self._json(response, "create").get("customer")
        if not isinstance(customer, dict) or not customer.get("id"):
            # The customer may exist now; the worker looks before it creates again.
            raise RetryLater("SHOPLINE answered the customer create without the customer", ERROR_WAIT)
        return parse_customer(customer)

    def update_customer(self, existing: PlatformCustomer, write: CustomerWrite) -> PlatformCustomer:
        """Write only the given values (a country only to a customer without an address); CustomerGone if it
        was deleted."""
        fields = self._fields(write, with_country=not existing.has_address)
        if not fields:
            return existing
        return self._put(existing.id, fields, "update")

    def add_tags(self, customer: PlatformCustomer, tags: Sequence[str]) -> PlatformCustomer:
        """Add tags, never removing any: SHOPLINE's ``tags`` replaces the list, so read, union, write."""
        current = self.fetch_customer(customer.id)
        if current is None:
            raise CustomerGone("the SHOPLINE customer no longer exists")
        merged = merge_tags(current.tags, tags)
        if len(merged) == len(current.tags):
            return current
        return self._put(current.id, {"tags": _tags_text(merged)}, "tags update")

    # -- CustomerReader --------------------------------------------------------------------------------

    def list_customers(
        self, *, updated_since: datetime | None = None, cursor: str | None = None
    ) -> CustomerPage:
        """One page (up to 250) of the shop's customers from ``GET v2/customers.json``, updated at or after
        ``updated_since`` when given (``updated_at_min``), in SHOPLINE's order (it offers no sort here).

        The cursor is SHOPLINE's ``rel="next"`` link as SHOPLINE wrote it: its ``page_info`` carries the
        first call's filters (SHOPLINE ignores filters on later pages), so ``updated_since`` is ignored with
        a cursor. A cursor is checked to lead to this shop's Admin API before the token goes with it;
        anything else (tampered with, or from another API version) is refused without a request.
        """
        params: dict[str, Any] | None
        if cursor is not None:
            url, params = self._follow(cursor, "the customer listing cursor"), None
        else:
            url, params = self._endpoint("v2/customers.json"), {"limit": LIST_PAGE_SIZE}
            if updated_since is not None:
                params["updated_at_min"] = _iso_seconds(updated_since)
        response = self._call("GET", url, "listing", params=params)
        self._check(response, "listing")
        listed = self._json(response, "listing").get("customers")
        if not isinstance(listed, list):
            raise RetryLater(f"SHOPLINE answered the {self.subject} listing without customers", ERROR_WAIT)
        customers = tuple(parse_customer(c) for c in listed if isinstance(c, dict) and c.get("id"))
        return CustomerPage(customers=customers, next_cursor=self._next_cursor(response))

    # -- operations ------------------------------------------------------------------------------------

    def _find_by_email(self, email: str) -> PlatformCustomer | None:
        wanted = email.strip().lower()
        url = self._endpoint("customers/query_user_by_email.json")
        response = self._call("POST", url, "email lookup", body={"email": wanted})
        if response.status_code == 404:
            return None
        self._check(response, "email lookup")
        customer = self._json(response, "email lookup").get("customer")
        if not isinstance(customer, dict) or not customer.get("id"):
            return None
        found = parse_customer(customer)
        return found if found.email == wanted else None

    def _find_by_phone(self, phone: str) -> PlatformCustomer | None:
        target = read_phone(phone)
        if target is None:
            return None
        digits = phonenumbers.national_significant_number(phonenumbers.parse(target))
        url = self._endpoint("customers/v2/search.json")
        params: dict[str, Any] | None = {"query_param": digits, "limit": SEARCH_PAGE_SIZE}
        for _ in range(MAX_SEARCH_PAGES):
            response = self._call("GET", url, "phone search", params=params)
            if response.status_code == 404:
                return None
            self._check(response, "phone search")
            for customer in self._json(response, "phone search").get("customers") or []:
                if (
                    isinstance(customer, dict)
                    and customer.get("id")
                    and _same_phone(customer.get("phone"), target)
                ):
                    return parse_customer(customer)
            next_link = self._next_link(response)
            if next_link is None:
                return None
            # The link carries page_info and limit; SHOPLINE ignores other filters on later pages.
            url, params = next_link, None
        return None

    def _put(self, customer_id: str, fields: dict[str, Any], what: str) -> PlatformCustomer:
        url = self._endpoint(f"customers/{quote(customer_id, safe='')}.json")
        response = self._call("PUT", url, what, body={"customer": fields})
        if response.status_code == 404:
            raise CustomerGone("the SHOPLINE customer no longer exists")
        self._check(response, what, write=True)
        customer = self._json(response, what).get("customer")
        if isinstance(customer, dict) and customer.get("id"):
            return parse_customer(customer)
        fetched = self.fetch_customer(customer_id)
        if fetched is None:
            raise CustomerGone("the SHOPLINE customer no longer exists")
        return fetched

    def _fields(self, write: CustomerWrite, *, with_country: bool) -> dict[str, Any]:
        values = write.values
        fields: dict[str, Any] = {}
        for name in ("email", "phone", "first_name", "last_name"):
            if values.get(name):
                fields[name] = values[name]
        if values.get("birthday"):
            fields["birthday"] = _birthday_text(values["birthday"])
        gender = values.get("gender")
        if gender:
            if gender not in GENDER_CODES:
                raise FailedForGood("unknown gender value for SHOPLINE")
            fields["gender"] = GENDER_CODES[gender]
        if with_country and values.get("country"):
            fields["addresses"] = [{"country_code": values["country"], "default": True}]
        for name, key in (
            ("email_consent", "email_marketing_consent"),
            ("sms_consent", "sms_marketing_consent"),
        ):
            if values.get(name):
                fields[key] = self._consent(values[name], write)
        return fields

    @staticmethod
    def _consent(word: str, write: CustomerWrite) -> dict[str, Any]:
        if word not in CONSENT_STATES:
            raise FailedForGood("unknown consent value for SHOPLINE")
        return {
            "state": CONSENT_STATES[word],
            "opt_in_level": OPT_IN_SINGLE,
            "consent_collected_from": write.consent_source or DEFAULT_CONSENT_SOURCE,
            "consent_updated_at": _iso(write.consent_updated_at or datetime.now(UTC)),
        }

    # -- HTTP ------------------------------------------------------------------------------------------

    def _endpoint(self, path: str) -> str:
        return self._base + path

    def _call(
        self,
        method: str,
        url: str,
        what: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> requests.Response:
        if self.budget is not None:
            wait = self.budget.take(
                self.shop_id, 1, capacity=self.bucket_capacity, restore_rate=self.restore_rate
            )
            if wait > 0:
                raise RetryLater("SHOPLINE request budget is used up for now", wait, throttled=True)
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/json; charset=utf-8",
            "Accept": "application/json",
            **self._forwarded,
        }
        data = None if body is None else json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            response = self.session.request(
                method, url, params=params, data=data, headers=headers, timeout=self.timeout
            )
        except requests.Timeout:
            # ``from None``: the exception's text holds the URL, and a search URL holds phone digits.
            raise RetryLater(
                f"SHOPLINE did not answer the {self.subject} {what} in time", ERROR_WAIT
            ) from None
        except requests.RequestException as error:
            reason = f"could not reach SHOPLINE for the {self.subject} {what} ({type(error).__name__})"
            raise RetryLater(reason, ERROR_WAIT) from None
        log.debug(
            "SHOPLINE customer %s answered %s (trace %s)",
            what,
            response.status_code,
            response.headers.get("traceId", "-"),
        )
        return response

    def _check(self, response: requests.Response, what: str, *, write: bool = False) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        trace = response.headers.get("traceId")
        suffix = f" (trace {trace})" if trace and _I18N_CODE.match(trace) else ""
        if status == 429:
            wait = _retry_after(response, THROTTLE_WAIT)
            raise RetryLater(f"SHOPLINE throttled the {self.subject} {what}", wait, throttled=True)
        if status == 401:
            raise AuthFailed(f"SHOPLINE refused the access token (401) on the {self.subject} {what}")
        if status in (402, 423):
            raise RetryLater(f"the SHOPLINE store is frozen or locked ({status}){suffix}", STORE_FROZEN_WAIT)
        if 433 <= status <= 436:
            reason = f"SHOPLINE's security policy blocked the {self.subject} {what} ({status}){suffix}"
            raise RetryLater(reason, SECURITY_BLOCK_WAIT, throttled=True)
        if status >= 500 and status != 501:
            reason = f"SHOPLINE answered {status} to the {self.subject} {what}{suffix}"
            raise RetryLater(reason, _retry_after(response, ERROR_WAIT))
        text = _error_text(response)
        if write and status in (400, 409, 422):
            fields = taken_fields(text)
            if fields:
                raise IdentifierTaken(
                    fields, f"{' and '.join(fields)} already held by another SHOPLINE customer"
                )
        detail = _redact(text)
        reason = f"SHOPLINE refused the {self.subject} {what} ({status})"
        raise FailedForGood(f"{reason}: {detail}{suffix}" if detail else f"{reason}{suffix}")

    def _json(self, response: requests.Response, what: str) -> dict[str, Any]:
        try:
            data = response.json() if response.content else {}
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise RetryLater(f"SHOPLINE sent an unreadable answer to the {self.subject} {what}", ERROR_WAIT)
        return data

    def _next_link(self, response: requests.Response) -> str | None:
        link = self._next_cursor(response)
        return None if link is None else self._follow(link, "SHOPLINE's next-page link")

    def _next_cursor(self, response: requests.Response) -> str | None:
        """The ``rel="next"`` link as SHOPLINE wrote it (not rewritten to a development origin, so a stored
        cursor does not depend on it), checked to lead to this shop's Admin API; None on the last page."""
        header = response.headers.get("link") or ""
        links = {rel: url for url, rel in _LINK.findall(header)}
        link = links.get("next")
        if not link:
            return None
        self._follow(link, "SHOPLINE's next-page link")
        return link

    def _follow(self, link: str, what: str) -> str:
        """Where to send a request for a link SHOPLINE gave (the development origin when one is set).

        The token goes with the request: only links to this shop's Admin API, in this client's version, are
        followed; anything else is FailedForGood, before anything is sent."""
        url = rewrite_link(link, self.domain, self.admin_origin)
        if not url.startswith(self._base):
            raise FailedForGood(f"{what} leads away from this shop's SHOPLINE Admin API: not followed")
        return url


# -- install and refresh ------------------------------------------------------------------------------


def _parse_expiry(value: Any) -> datetime:
    expires_at = parse_datetime(value)
    return expires_at if expires_at is not None else datetime.now(UTC) + TOKEN_LIFETIME


def _token_request(
    domain: str,
    path: str,
    action: str,
    app_key: str,
    app_secret: str,
    body: str,
    *,
    admin_origin: str | None,
    session: requests.Session | None,
    timeout: float,
) -> tuple[str, datetime]:
    url, forwarded = admin_url(domain, path, admin_origin)
    timestamp = str(int(time.time() * 1000))
    headers = {
        "Content-Type": "application/json",
        "appkey": app_key,
        "timestamp": timestamp,
        "sign": sign_post(body, timestamp, app_secret),
        **forwarded,
    }
    http = session or new_session()
    try:
        response = http.post(url, data=body.encode() if body else None, headers=headers, timeout=timeout)
    except requests.Timeout:
        raise RetryLater(f"SHOPLINE did not answer the token {action} in time", ERROR_WAIT) from None
    except requests.RequestException as error:
        raise RetryLater(
            f"could not reach SHOPLINE for the token {action} ({type(error).__name__})", ERROR_WAIT
        ) from None
    finally:
        if session is None:
            http.close()
    status = response.status_code
    if status == 429:
        raise RetryLater(
            f"SHOPLINE throttled the token {action}", _retry_after(response, THROTTLE_WAIT), throttled=True
        )
    if status >= 500 and status != 501:
        raise RetryLater(
            f"SHOPLINE answered {status} to the token {action}", _retry_after(response, ERROR_WAIT)
        )
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        if 200 <= status < 300:
            raise RetryLater(f"SHOPLINE sent an unreadable answer to the token {action}", ERROR_WAIT)
        raise AuthFailed(f"SHOPLINE refused the token {action} ({status})")
    data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
    token = data.get("accessToken")
    if 200 <= status < 300 and payload.get("code") in (200, "200") and isinstance(token, str) and token:
        return token, _parse_expiry(data.get("expireTime"))
    code = payload.get("i18nCode")
    code = code if isinstance(code, str) and _I18N_CODE.match(code) else str(payload.get("code", status))[:16]
    if code == "REQUEST_FREQUENTLY":
        raise RetryLater(
            f"SHOPLINE refused the token {action} as too frequent", TOKEN_TOO_SOON_WAIT, throttled=True
        )
    raise AuthFailed(f"SHOPLINE refused the token {action} ({status}, {code})")


def create_access_token(
    domain: str,
    app_key: str,
    app_secret: str,
    code: str,
    *,
    admin_origin: str | None = None,
    session: requests.Session | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[str, datetime]:
    """Exchange an authorisation ``code`` for an access token: ``(token, expires_at)``.

    ``POST /admin/oauth/token/create`` with the body ``{"code": …}`` signed with the body and the
    millisecond timestamp. AuthFailed when SHOPLINE refuses (an expired code, an uninstalled app …);
    RetryLater when it is throttled, failing or unreachable.
    """
    body = json.dumps({"code": code}, separators=(",", ":"))
    return _token_request(
        domain,
        "/admin/oauth/token/create",
        "create",
        app_key,
        app_secret,
        body,
        admin_origin=admin_origin,
        session=session,
        timeout=timeout,
    )


def refresh_access_token(
    domain: str,
    app_key: str,
    app_secret: str,
    *,
    admin_origin: str | None = None,
    session: requests.Session | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[str, datetime]:
    """A new access token for the shop: ``(token, expires_at)``.

    ``POST /admin/oauth/token/refresh`` with no body, signed over ``"" + timestamp`` as the official SDK
    does. SHOPLINE refuses a refresh right after minting (``REQUEST_FREQUENTLY``): that is a RetryLater.
    """
    return _token_request(
        domain,
        "/admin/oauth/token/refresh",
        "refresh",
        app_key,
        app_secret,
        "",
        admin_origin=admin_origin,
        session=session,
        timeout=timeout,
    )
