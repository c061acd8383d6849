"""One shop's Shopify customers through the Admin GraphQL API: popsync's own thin client on ``requests``.

Why not ``shopifyapp.admin_graphql_request``: it drops ``data`` and ``extensions`` on any top-level error
(THROTTLED included), sleeps inside the call and fails on a fractional ``Retry-After``. This client reads
``extensions.cost.throttleStatus`` from every answer, shares the shop's budget with every worker process,
never sleeps and never retries: it raises ``RetryLater`` with the wait and the worker decides.

Values cross in popsync's words (see ``app.platforms.base``) and are mapped here: phones E.164 both ways,
consent ``subscribed``/… ↔ ``SUBSCRIBED``/…, the birthday ↔ the standard ``facts.birth_date`` metafield,
the gender ↔ the app-owned ``$app`` ``gender`` metafield, the country ↔ the default address.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import UTC
from datetime import date
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING
from typing import Any

import phonenumbers
import requests
from graphql import parse
from graphql.language import FieldNode
from graphql.language import FragmentDefinitionNode
from graphql.language import FragmentSpreadNode
from graphql.language import InlineFragmentNode
from graphql.language import OperationDefinitionNode
from graphql.language import OperationType
from graphql.language import SelectionSetNode

from app.platforms import shopify_documents as documents
from app.platforms.base import AuthFailed
from app.platforms.base import BulkExport
from app.platforms.base import BulkExportStatus
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

if TYPE_CHECKING:
    from app.platforms.budget import RateBudget

log = logging.getLogger("popsync.shopify")

CUSTOMER_GID_PREFIX = "gid://shopify/Customer/"
# The bucket assumed before Shopify's first answer names the real one (standard plan: 100 points a
# second); the shared budget only uses these when it first sees the shop.
DEFAULT_CAPACITY = 1000.0
DEFAULT_RESTORE_RATE = 100.0
# The worker adds its own back-off on top of this for 5xx, timeouts and connection errors.
DEFAULT_RETRY_SECONDS = 1.0
BIRTH_DATE_STATE_KEY = "birth_date_definition"
BIRTH_DATE_METAFIELD = ("facts", "birth_date", "date")
GENDER_METAFIELD = ("$app", "gender", "single_line_text_field")
GENDERS = ("female", "male", "other", "unspecified")
OPT_IN_LEVEL = "SINGLE_OPT_IN"
# How long to wait before asking again when Shopify says a bulk export is already running (they take
# minutes); the worker may wait longer.
BULK_BUSY_RETRY_SECONDS = 60.0
# Bytes read from a bulk export per chunk: lines are short, but a large file streams faster in big reads.
BULK_CHUNK_SIZE = 64 * 1024
# BulkOperationUserErrorCode values that mean "too many bulk queries running": wait, do not give up.
_BULK_BUSY_CODES = frozenset({"OPERATION_IN_PROGRESS", "LIMIT_REACHED"})
_BULK_RUNNING = frozenset({"CREATED", "RUNNING", "CANCELING"})
_BULK_FAILED = frozenset({"FAILED", "CANCELED", "EXPIRED"})

# Only these three are accepted as input by Shopify; ``not_subscribed`` is never sent.
_CONSENT_TO_SHOPIFY = {"subscribed": "SUBSCRIBED", "unsubscribed": "UNSUBSCRIBED", "pending": "PENDING"}
_CONSENT_FROM_SHOPIFY = {
    "SUBSCRIBED": "subscribed",
    "UNSUBSCRIBED": "unsubscribed",
    "PENDING": "pending",
    "NOT_SUBSCRIBED": "not_subscribed",
    "NEVER_SUBSCRIBED": "not_subscribed",
    # Read-only states Shopify sets itself: for popsync the address is simply not subscribed.
    "INVALID": "not_subscribed",
    "REDACTED": "not_subscribed",
}
_EMAIL_LIKE = re.compile(r"[^\s@'\"]+@[^\s@'\"]+")
_NUMBER_LIKE = re.compile(r"\+?\d[\d\s().-]{4,}\d")


def parse_customer(node: Mapping[str, Any]) -> PlatformCustomer:
    """A PlatformCustomer from a GraphQL ``Customer`` node selected with ``PopsyncCustomer``'s fields."""
    email_node = node.get("defaultEmailAddress") or {}
    phone_node = node.get("defaultPhoneNumber") or {}
    email = (email_node.get("emailAddress") or "").strip().lower() or None
    phone = to_e164(phone_node.get("phoneNumber"))
    sms_consent = phone_node.get("smsMarketingConsent") or {}
    # ``marketingState`` is the deprecated spelling; a bulk export of an older document may still carry it.
    sms_state = sms_consent.get("state") or phone_node.get("marketingState")
    address = node.get("defaultAddress")
    return PlatformCustomer(
        id=str(node["id"]),
        email=email,
        phone=phone,
        first_name=(node.get("firstName") or "").strip() or None,
        last_name=(node.get("lastName") or "").strip() or None,
        birthday=_parse_birthday(_metafield_value(node.get("birthDate"))),
        gender=_parse_gender(_metafield_value(node.get("gender"))),
        country=(address or {}).get("countryCodeV2") or None,
        has_address=address is not None,
        email_consent=_CONSENT_FROM_SHOPIFY.get(email_node.get("marketingState") or "") if email else None,
        sms_consent=_CONSENT_FROM_SHOPIFY.get(sms_state or "") if phone_node else None,
        tags=tuple(node.get("tags") or ()),
        updated_at=parse_datetime(node.get("updatedAt")),
    )


def embed_switched_on(settings_data: str, block_handle: str) -> bool | None:
    """Read a theme's ``config/settings_data.json``: an app embed is on when a block of type
    ``shopify://apps/<app>/blocks/<block_handle>/<uuid>`` is present and not ``disabled``. Shopify writes
    a ``/* … */`` notice above the JSON; None when what remains is not a JSON object."""
    text = settings_data.lstrip()
    if text.startswith("/*"):
        end = text.find("*/")
        text = text[end + 2 :] if end >= 0 else ""
    try:
        settings = json.loads(text)
    except ValueError:
        return None
    if not isinstance(settings, dict):
        return None
    current = settings.get("current")
    if isinstance(current, str):  # a preset's name: its settings live under "presets"
        current = (settings.get("presets") or {}).get(current)
    blocks = current.get("blocks") if isinstance(current, dict) else None
    if not isinstance(blocks, dict):
        return False
    marker = f"/blocks/{block_handle}/"
    return any(
        isinstance(block, dict)
        and str(block.get("type", "")).startswith("shopify://apps/")
        and marker in str(block.get("type", ""))
        and not block.get("disabled", False)
        for block in blocks.values()
    )


def parse_datetime(value: str | None) -> datetime | None:
    """An aware datetime from Shopify's ISO 8601 ``DateTime`` (``Z`` or an offset); None when absent."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def to_e164(value: str | None) -> str | None:
    """The E.164 form of a phone Shopify returned, or None when it is not a valid international number."""
    if not value:
        return None
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def consent_to_shopify(value: str | None) -> str | None:
    """Shopify's marketing state for a popsync consent value, or None when it must not be sent."""
    return _CONSENT_TO_SHOPIFY.get(value or "")


def consent_from_shopify(value: str | None) -> str | None:
    """popsync's consent value for a Shopify marketing state."""
    return _CONSENT_FROM_SHOPIFY.get(value or "")


@lru_cache(maxsize=64)
def estimate_cost(document: str) -> int:
    """The cost Shopify will ask for ``document``'s first operation: 10 per mutation field, 1 per object,
    ``first``/``last`` times the node cost for a connection, 0 for scalars."""
    ast = parse(document)
    fragments = {d.name.value: d for d in ast.definitions if isinstance(d, FragmentDefinitionNode)}
    operation = next(d for d in ast.definitions if isinstance(d, OperationDefinitionNode))
    root_cost = 10 if operation.operation == OperationType.MUTATION else 1

    def selection_cost(selection_set: SelectionSetNode | None, root: bool) -> int:
        total = 0
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                if selection.selection_set is None:
                    continue
                children = selection_cost(selection.selection_set, False)
                size = next(
                    (
                        int(getattr(argument.value, "value", 1))
                        for argument in selection.arguments
                        if argument.name.value in ("first", "last")
                    ),
                    None,
                )
                own = root_cost if root else 1
                total += own + children if size is None else 2 + size * children
            elif isinstance(selection, InlineFragmentNode):
                total += selection_cost(selection.selection_set, root)
            elif isinstance(selection, FragmentSpreadNode):
                total += selection_cost(fragments[selection.name.value].selection_set, root)
        return total

    return selection_cost(operation.selection_set, True)


class ShopifyClient:
    """``PlatformClient`` for one Shopify shop. Never sleeps: every wait comes back as ``RetryLater``."""

    def __init__(
        self,
        *,
        domain: str,
        access_token: str,
        api_version: str,
        admin_origin: str | None,
        shop_id: int,
        budget: RateBudget | None,
        state: dict[str, Any],
        session: requests.Session | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.domain = domain
        self._access_token = access_token
        self.api_version = api_version
        self.admin_origin = admin_origin
        self.shop_id = shop_id
        self.budget = budget
        # The shop's platform_state: the caller persists what this client records in it.
        self.state = state
        self.session = session or new_session()
        self.timeout = timeout
        self.capacity = DEFAULT_CAPACITY
        self.restore_rate = DEFAULT_RESTORE_RATE

    def __repr__(self) -> str:
        return f"ShopifyClient(domain={self.domain!r}, api_version={self.api_version!r})"

    # -- PlatformClient ------------------------------------------------------------------------------

    def find_customer(self, *, email: str | None = None, phone: str | None = None) -> PlatformCustomer | None:
        """The customer holding exactly this email, or else this phone (``customerByIdentifier``)."""
        if email:
            data = self.execute(documents.CUSTOMER_BY_EMAIL, {"email": email}, "customer lookup by email")
            if data.get("customer"):
                return parse_customer(data["customer"])
        if phone:
            data = self.execute(documents.CUSTOMER_BY_PHONE, {"phone": phone}, "customer lookup by phone")
            if data.get("customer"):
                return parse_customer(data["customer"])
        return None

    def fetch_customer(self, customer_id: str) -> PlatformCustomer | None:
        """The customer with this GID, or None when Shopify no longer has it."""
        data = self.execute(documents.CUSTOMER_BY_ID, {"id": customer_id}, "customer fetch")
        return parse_customer(data["customer"]) if data.get("customer") else None

    def create_customer(self, write: CustomerWrite, tags: Sequence[str]) -> PlatformCustomer:
        """``customerCreate`` with the values, consent (each with its identifier) and the whole tag list."""
        values = write.values
        customer_input = self._profile_input(values, None)
        if tags:
            customer_input["tags"] = list(tags)
        email_state = consent_to_shopify(values.get("email_consent"))
        # Shopify needs the identifier in the same input as its consent.
        if email_state and customer_input.get("email"):
            customer_input["emailMarketingConsent"] = _consent_input(email_state, write.consent_updated_at)
        sms_state = consent_to_shopify(values.get("sms_consent"))
        if sms_state and customer_input.get("phone"):
            customer_input["smsMarketingConsent"] = _consent_input(sms_state, write.consent_updated_at)
        return self._mutate_customer(
            documents.CUSTOMER_CREATE, "customerCreate", {"input": customer_input}, "customer create"
        )

    def update_customer(self, existing: PlatformCustomer, write: CustomerWrite) -> PlatformCustomer:
        """``customerUpdate`` for the profile (never tags; a country only to a customer without an address),
        then the consent mutations for consent that changed. Returns the customer as the last write left
        it."""
        values = write.values
        customer = existing
        customer_input = self._profile_input(values, existing)
        if customer_input:
            customer_input["id"] = existing.id
            customer = self._mutate_customer(
                documents.CUSTOMER_UPDATE, "customerUpdate", {"input": customer_input}, "customer update"
            )
        email_state = consent_to_shopify(values.get("email_consent"))
        # A channel's consent needs its identifier on the customer; without one there is nothing to consent.
        if email_state and customer.email and customer.email_consent != consent_from_shopify(email_state):
            customer = self._mutate_customer(
                documents.EMAIL_CONSENT_UPDATE,
                "customerEmailMarketingConsentUpdate",
                {
                    "input": {
                        "customerId": existing.id,
                        "emailMarketingConsent": _consent_input(email_state, write.consent_updated_at),
                    }
                },
                "email consent update",
            )
        sms_state = consent_to_shopify(values.get("sms_consent"))
        if sms_state and customer.phone and customer.sms_consent != consent_from_shopify(sms_state):
            customer = self._mutate_customer(
                documents.SMS_CONSENT_UPDATE,
                "customerSmsMarketingConsentUpdate",
                {
                    "input": {
                        "customerId": existing.id,
                        "smsMarketingConsent": _consent_input(sms_state, write.consent_updated_at),
                    }
                },
                "SMS consent update",
            )
        return customer

    def add_tags(self, customer: PlatformCustomer, tags: Sequence[str]) -> PlatformCustomer:
        """``tagsAdd``: adds the tags the customer does not have yet, never removing any."""
        held = {tag.casefold() for tag in customer.tags}
        missing = [tag for tag in dict.fromkeys(tags) if tag.strip() and tag.casefold() not in held]
        if not missing:
            return customer
        return self._mutate_customer(
            documents.TAGS_ADD, "tagsAdd", {"id": customer.id, "tags": missing}, "tags add"
        )

    # -- CustomerReader ------------------------------------------------------------------------------

    def list_customers(
        self, *, updated_since: datetime | None = None, cursor: str | None = None
    ) -> CustomerPage:
        """One page of the shop's customers, least recently updated first (``sortKey: UPDATED_AT``), updated
        at or after ``updated_since`` when given (Shopify's search syntax ``updated_at:>='…'``).

        A page holds at most ``CUSTOMERS_PAGE_SIZE`` (100) customers: Shopify refuses a query costing more
        than 1,000 points, and 250 customers with popsync's fields would cost about 1,750. The cursor
        carries Shopify's ``endCursor`` together with the search (Shopify needs both again on the next
        page), so ``updated_since`` is ignored when a cursor is given.
        """
        if cursor is not None:
            after, search = _read_cursor(cursor)
        else:
            after = None
            search = f"updated_at:>='{_search_time(updated_since)}'" if updated_since is not None else None
        data = self.execute(documents.CUSTOMERS_PAGE, {"after": after, "query": search}, "customer listing")
        connection = data.get("customers")
        if not isinstance(connection, dict):
            raise FailedForGood("Shopify returned no customers for the customer listing")
        nodes = [node for node in connection.get("nodes") or [] if isinstance(node, dict) and node.get("id")]
        page_info = connection.get("pageInfo") or {}
        end_cursor = page_info.get("endCursor")
        next_cursor = None
        if page_info.get("hasNextPage") and isinstance(end_cursor, str) and end_cursor:
            next_cursor = json.dumps({"after": end_cursor, "query": search}, separators=(",", ":"))
        return CustomerPage(customers=tuple(parse_customer(node) for node in nodes), next_cursor=next_cursor)

    def app_embed_enabled(self, block_handle: str) -> bool | None:
        """Whether the live theme has this app's embed block ``block_handle`` switched on; None when the
        store has no live theme or its settings cannot be read as JSON. FailedForGood (ACCESS_DENIED)
        without the ``read_themes`` scope."""
        data = self.execute(documents.LIVE_THEME_SETTINGS, {}, "live theme lookup")
        themes = (data.get("themes") or {}).get("nodes") or []
        if not themes:
            return None
        files = ((themes[0] or {}).get("files") or {}).get("nodes") or []
        content = ((files[0] or {}).get("body") or {}).get("content") if files else None
        if not isinstance(content, str):
            return None
        return embed_switched_on(content, block_handle)

    def start_bulk_export(self) -> BulkExport:
        """``bulkOperationRunQuery`` over every customer (``BULK_CUSTOMERS_QUERY``, one JSONL line each).

        RetryLater when Shopify says too many bulk queries are running for the shop (five from 2026-01 on,
        one before); FailedForGood for any other refusal."""
        data = self.execute(
            documents.BULK_CUSTOMERS_RUN, {"query": documents.BULK_CUSTOMERS_QUERY}, "bulk export start"
        )
        payload = data.get("bulkOperationRunQuery") or {}
        user_errors = [e for e in payload.get("userErrors") or [] if isinstance(e, dict)]
        if user_errors:
            codes = {str(e.get("code") or "") for e in user_errors}
            busy = any("in progress" in str(e.get("message") or "").lower() for e in user_errors)
            if busy or codes & _BULK_BUSY_CODES:
                raise RetryLater(
                    "Shopify is already running a bulk export for this shop", BULK_BUSY_RETRY_SECONDS
                )
            described = "; ".join(_redact(str(e.get("message") or "")) for e in user_errors)
            raise FailedForGood(f"Shopify refused the bulk export: {described}")
        operation = payload.get("bulkOperation")
        if not isinstance(operation, dict):
            raise FailedForGood("Shopify returned no bulk operation for the bulk export start")
        return _bulk_export(operation)

    def bulk_export(self, operation_id: str) -> BulkExport:
        """Where the bulk export stands (``bulkOperation(id:)``); FailedForGood when Shopify has no such
        operation for this shop."""
        data = self.execute(documents.BULK_OPERATION, {"id": operation_id}, "bulk export poll")
        operation = data.get("bulkOperation")
        if not isinstance(operation, dict):
            raise FailedForGood("Shopify has no such bulk export for this shop")
        return _bulk_export(operation)

    def read_bulk_export(self, url: str, *, skip: int = 0) -> Iterator[PlatformCustomer]:
        """The customers of a completed bulk export, streamed line by line from its ``url``.

        The URL is a signed download on Shopify's storage (another host), so it is fetched as given and
        never with the access token; with ``SHOPIFY_ADMIN_ORIGIN`` set it is the development store's own.
        The first ``skip`` non-empty lines are passed over unparsed (a read resumed after a failure), and
        child lines (``__parentId``) are ignored. Network errors and 5xx are RetryLater (resume with
        ``skip``); 403, 404 and 410 mean the link expired (after seven days): FailedForGood, export again.
        The download starts when this is called, so its refusal is raised here, not on the first ``next``.
        """
        if skip < 0:
            raise ValueError("skip must not be negative")
        # Shopify's links are HTTPS; plain HTTP only for the development store (where an origin is set).
        if not url.startswith("https://") and not (self.admin_origin and url.startswith("http://")):
            raise FailedForGood("the bulk export link is not an HTTPS address")
        try:
            response = self.session.get(
                url,
                # None removes the header should anything have put it on the session: the token must never
                # leave for the storage host.
                headers={"X-Shopify-Access-Token": None, "Accept": "application/jsonl, */*"},
                stream=True,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as error:
            # ``from None``: the exception's text holds the signed URL.
            raise RetryLater(
                f"could not download the bulk export ({type(error).__name__})", DEFAULT_RETRY_SECONDS
            ) from None
        status = response.status_code
        if status != 200:
            response.close()
            if status in (403, 404, 410):
                raise FailedForGood(f"the bulk export link has expired or is gone (HTTP {status})")
            if status == 429 or status >= 500:
                raise RetryLater(
                    f"the bulk export download answered HTTP {status}",
                    _retry_after(response.headers.get("Retry-After")),
                )
            raise FailedForGood(f"the bulk export download answered HTTP {status}")
        return self._bulk_lines(response, skip)

    @staticmethod
    def _bulk_lines(response: requests.Response, skip: int) -> Iterator[PlatformCustomer]:
        with response:
            seen = 0
            try:
                for line in response.iter_lines(chunk_size=BULK_CHUNK_SIZE):
                    if not line.strip():
                        continue
                    seen += 1
                    if seen <= skip:
                        continue
                    try:
                        node = json.loads(line)
                    except ValueError:
                        raise FailedForGood(f"line {seen} of the bulk export is not JSON") from None
                    if not isinstance(node, dict):
                        raise FailedForGood(f"line {seen} of the bulk export is not an object")
                    if "__parentId" in node:
                        continue
                    if not node.get("id"):
                        raise FailedForGood(f"line {seen} of the bulk export is not a customer")
                    yield parse_customer(node)
            except requests.RequestException as error:
                raise RetryLater(
                    f"the bulk export download broke off after line {seen} ({type(error).__name__})",
                    DEFAULT_RETRY_SECONDS,
                ) from None

    # -- GraphQL over HTTP ---------------------------------------------------------------------------

    def execute(self, document: str, variables: Mapping[str, Any], operation: str) -> dict[str, Any]:
        """Send one document; its ``data``, or the PlatformError that says what to do about it.

        ``operation`` names the call in error messages, which never carry the token or customer data.
        """
        cost = estimate_cost(document)
        if self.budget is not None:
            wait = self.budget.take(
                self.shop_id, cost, capacity=self.capacity, restore_rate=self.restore_rate
            )
            if wait > 0:
                raise RetryLater(f"Shopify rate budget spent ({operation})", wait, throttled=True)
        url, headers = admin_url(
            self.domain, f"/admin/api/{self.api_version}/graphql.json", self.admin_origin
        )
        headers.update(
            {
                "X-Shopify-Access-Token": self._access_token,
                "Content-Type": "application/json",
                "Accept": "application/json",
            }
        )
        try:
            response = self.session.post(
                url,
                json={"query": document, "variables": dict(variables)},
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.Timeout:
            raise RetryLater(
                f"Shopify did not answer the {operation} in time", DEFAULT_RETRY_SECONDS
            ) from None
        except requests.ConnectionError:
            raise RetryLater(f"could not reach Shopify for the {operation}", DEFAULT_RETRY_SECONDS) from None
        except requests.RequestException as error:
            raise RetryLater(
                f"the {operation} failed on the way ({type(error).__name__})", DEFAULT_RETRY_SECONDS
            ) from None
        return self._read_response(response, cost, operation)

    def _read_response(self, response: requests.Response, cost: int, operation: str) -> dict[str, Any]:
        status = response.status_code
        if status in (401, 403):
            raise AuthFailed(
                f"Shopify refused the access token (HTTP {status}); the shop must authorise again"
            )
        if status == 429:
            wait = _retry_after(response.headers.get("Retry-After"))
            raise RetryLater(f"Shopify rate-limited the {operation} (HTTP 429)", wait, throttled=True)
        if status >= 500:
            raise RetryLater(f"Shopify answered HTTP {status} to the {operation}", DEFAULT_RETRY_SECONDS)
        if status != 200:
            raise FailedForGood(f"Shopify answered HTTP {status} to the {operation}")
        try:
            body = response.json()
        except ValueError:
            raise RetryLater(
                f"Shopify's answer to the {operation} was not JSON", DEFAULT_RETRY_SECONDS
            ) from None
        if not isinstance(body, dict):
            raise RetryLater(f"Shopify's answer to the {operation} was not an object", DEFAULT_RETRY_SECONDS)
        cost_info = (body.get("extensions") or {}).get("cost") or {}
        self._observe(cost_info.get("throttleStatus"))
        errors = body.get("errors")
        if errors:
            self._raise_errors(errors, cost_info, cost, operation)
        data = body.get("data")
        if not isinstance(data, dict):
            raise FailedForGood(f"Shopify returned no data for the {operation}")
        return data

    def _observe(self, throttle: Mapping[str, Any] | None) -> None:
        if not throttle:
            return
        try:
            available = float(throttle["currentlyAvailable"])
            capacity = float(throttle["maximumAvailable"])
            restore_rate = float(throttle["restoreRate"])
        except (KeyError, TypeError, ValueError):
            return
        self.capacity, self.restore_rate = capacity, restore_rate
        if self.budget is not None:
            self.budget.observe(
                self.shop_id, available=available, capacity=capacity, restore_rate=restore_rate
            )

    def _raise_errors(self, errors: Any, cost_info: Mapping[str, Any], cost: int, operation: str) -> None:
        if not isinstance(errors, list):
            raise FailedForGood(f"Shopify refused the {operation}")
        codes = [((e.get("extensions") or {}).get("code") or "") for e in errors if isinstance(e, dict)]
        if "THROTTLED" in codes:
            throttle = cost_info.get("throttleStatus") or {}
            requested = float(cost_info.get("requestedQueryCost") or cost)
            available = float(throttle.get("currentlyAvailable") or 0.0)
            restore_rate = float(throttle.get("restoreRate") or 0.0)
            wait = (requested - available) / restore_rate if restore_rate > 0 else DEFAULT_RETRY_SECONDS
            wait = max(DEFAULT_RETRY_SECONDS, wait)
            log.info("Shopify throttled shop %s; next call in %.2f s", self.shop_id, wait)
            raise RetryLater(f"Shopify throttled the {operation}", wait, throttled=True)
        # Error messages may quote the variables (customer data): only the codes go into the message.
        named = sorted({code for code in codes if code})
        raise FailedForGood(
            f"Shopify refused the {operation} ({', '.join(named) if named else 'GraphQL error'})"
        )

    # -- writes --------------------------------------------------------------------------------------

    def _mutate_customer(
        self, document: str, root: str, variables: Mapping[str, Any], operation: str
    ) -> PlatformCustomer:
        data = self.execute(document, variables, operation)
        payload = data.get(root) or {}
        user_errors = payload.get("userErrors") or []
        if user_errors:
            self._raise_user_errors(user_errors, operation)
        node = payload.get("customer") or payload.get("node")
        if not node:
            raise FailedForGood(f"Shopify returned no customer for the {operation}")
        return parse_customer(node)

    def _raise_user_errors(self, user_errors: Sequence[Mapping[str, Any]], operation: str) -> None:
        taken: list[str] = []
        gone = False
        described = []
        for error in user_errors:
            path = [str(part) for part in error.get("field") or []]
            message = str(error.get("message") or "")
            last = path[-1] if path else ""
            lowered = message.lower()
            if last in ("email", "phone") and "has already been taken" in lowered and last not in taken:
                taken.append(last)
            if last in ("id", "customerId") and ("not exist" in lowered or "not found" in lowered):
                gone = True
            if path and path[0] == "metafields":
                # The standard birthday definition may have been removed by the merchant: enable it again
                # on the next attempt.
                self.state[BIRTH_DATE_STATE_KEY] = False
            described.append(f"{'.'.join(path) or 'input'}: {_redact(message)}")
        if taken:
            raise IdentifierTaken(sorted(taken, key=("email", "phone").index))
        if gone:
            raise CustomerGone("the customer no longer exists on Shopify")
        raise FailedForGood(f"Shopify refused the {operation}: {'; '.join(described)}")

    def _profile_input(self, values: Mapping[str, Any], existing: PlatformCustomer | None) -> dict[str, Any]:
        """The CustomerInput fields for the profile values that differ from ``existing`` (None: a create)."""
        customer_input: dict[str, Any] = {}
        for name, key in (
            ("email", "email"),
            ("phone", "phone"),
            ("first_name", "firstName"),
            ("last_name", "lastName"),
        ):
            value = values.get(name)
            if value and (existing is None or getattr(existing, name) != value):
                customer_input[key] = value
        metafields = []
        birthday = values.get("birthday")
        if birthday:
            text = birthday.isoformat() if isinstance(birthday, date) else str(birthday)
            if existing is None or existing.birthday is None or existing.birthday.isoformat() != text:
                self._ensure_birth_date_definition()
                metafields.append(_metafield(BIRTH_DATE_METAFIELD, text))
        gender = values.get("gender")
        if gender and (existing is None or existing.gender != gender):
            metafields.append(_metafield(GENDER_METAFIELD, str(gender)))
        if metafields:
            customer_input["metafields"] = metafields
        country = values.get("country")
        # ``addresses`` replaces the customer's whole list: only a customer without one gets it.
        if country and (existing is None or not existing.has_address):
            customer_input["addresses"] = [{"countryCode": str(country).upper()}]
        return customer_input

    def _ensure_birth_date_definition(self) -> None:
        """Enable the standard ``facts.birth_date`` definition once per shop (remembered in the state)."""
        if self.state.get(BIRTH_DATE_STATE_KEY):
            return
        data = self.execute(documents.BIRTH_DATE_DEFINITION_ENABLE, {}, "birthday definition enable")
        payload = data.get("standardMetafieldDefinitionEnable") or {}
        errors = payload.get("userErrors") or []
        # TAKEN: the shop has it already (enabled by the merchant, another app, or an answer we lost).
        refused = [e for e in errors if e.get("code") != "TAKEN"]
        if refused:
            codes = ", ".join(sorted({str(e.get("code") or "error") for e in refused}))
            raise FailedForGood(f"Shopify refused to enable the birthday metafield definition ({codes})")
        self.state[BIRTH_DATE_STATE_KEY] = True


def _search_time(moment: datetime) -> str:
    """``moment`` in UTC as Shopify's search syntax takes it (``2026-03-01T10:00:00Z``), floored to the
    second: Shopify's ``updatedAt`` has whole seconds, and flooring can only add customers, never lose one."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read_cursor(cursor: str) -> tuple[str, str | None]:
    """The ``endCursor`` and search a ``list_customers`` cursor carries; FailedForGood for anything else."""
    try:
        state = json.loads(cursor)
    except ValueError:
        state = None
    if (
        not isinstance(state, dict)
        or not isinstance(state.get("after"), str)
        or not isinstance(state.get("query"), str | None)
    ):
        raise FailedForGood("the customer listing cursor is not one this client made")
    return state["after"], state["query"]


def _count(value: Any) -> int:
    # ``UnsignedInt64`` comes as a string in Shopify's JSON.
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _bulk_export(operation: Mapping[str, Any]) -> BulkExport:
    """A BulkExport from Shopify's ``BulkOperation``: CREATED, RUNNING and CANCELING are still running;
    FAILED, CANCELED and EXPIRED failed (``error`` the errorCode, else the status)."""
    status = str(operation.get("status") or "")
    identifier = str(operation.get("id") or "")
    if not identifier:
        raise FailedForGood("Shopify returned a bulk operation without an id")
    if status in _BULK_RUNNING:
        return BulkExport(
            id=identifier, status=BulkExportStatus.RUNNING, object_count=_count(operation.get("objectCount"))
        )
    if status == "COMPLETED":
        return BulkExport(
            id=identifier,
            status=BulkExportStatus.COMPLETED,
            url=operation.get("url") or None,
            object_count=_count(operation.get("objectCount")),
        )
    if status in _BULK_FAILED:
        return BulkExport(
            id=identifier,
            status=BulkExportStatus.FAILED,
            object_count=_count(operation.get("objectCount")),
            error=str(operation.get("errorCode") or status),
        )
    raise FailedForGood(f"Shopify answered an unknown bulk operation status ({_redact(status)[:40]})")


def _consent_input(state: str, updated_at: datetime | None) -> dict[str, Any]:
    consent: dict[str, Any] = {"marketingState": state, "marketingOptInLevel": OPT_IN_LEVEL}
    if updated_at is not None:
        aware = updated_at if updated_at.tzinfo is not None else updated_at.replace(tzinfo=UTC)
        consent["consentUpdatedAt"] = aware.isoformat()
    return consent


def _metafield(spec: tuple[str, str, str], value: str) -> dict[str, str]:
    namespace, key, type_ = spec
    return {"namespace": namespace, "key": key, "type": type_, "value": value}


def _metafield_value(node: Mapping[str, Any] | None) -> str | None:
    return (node or {}).get("value") or None


def _parse_birthday(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _parse_gender(value: str | None) -> str | None:
    gender = (value or "").strip().lower()
    return gender if gender in GENDERS else None


def _retry_after(value: str | None) -> float:
    try:
        seconds = float(value) if value is not None else DEFAULT_RETRY_SECONDS
    except ValueError:
        return DEFAULT_RETRY_SECONDS
    return seconds if seconds > 0 else DEFAULT_RETRY_SECONDS


def _redact(message: str) -> str:
    """A user error's message without anything that looks like an email address or a phone number."""
    return _NUMBER_LIKE.sub("[number]", _EMAIL_LIKE.sub("[email]", message))
