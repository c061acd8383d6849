"""The development store's Shopify side: ``POST /admin/api/<version>/graphql.json``.

Requests are parsed, validated and executed by graphql-core against the trimmed official 2026-10 schema
shipped next to this module (``shopify_admin_2026-10.graphql``, made by ``scripts/trim_admin_schema.py``),
so a document Shopify would reject is rejected here too, with Shopify's answer shapes. Resolvers exist for
exactly the root fields popsync's documents use, with Shopify's rules: one customer per email and per
phone, E.164 phones, consent only with its identifier and only SUBSCRIBED/UNSUBSCRIBED/PENDING as input,
``tags`` and ``addresses`` replacing their lists, ``facts.birth_date`` only once its standard definition is
enabled. Costs are computed like Shopify's and drawn from a leaky bucket per shop; every answer carries
``extensions.cost``; a document asking for more than 1,000 points is refused unexecuted
(``MAX_COST_EXCEEDED``), as Shopify does. Every customer change sends a ``customers/create`` or
``customers/update`` webhook.

Reading every customer: the ``customers`` connection (``first``/``after``, ``sortKey`` UPDATED_AT or ID, and
``query`` with ``updated_at`` comparisons only; other search syntax is refused rather than ignored), and bulk
exports: ``bulkOperationRunQuery`` validates its query against the same schema and runs it at once over the
shop's customers as they are at that moment, keeping the JSONL in memory; ``bulkOperation(id:)`` answers
RUNNING for the first poll(s) and then COMPLETED (see ``configure_bulk_operations``), and the file is served
without a token at ``GET /devstore/bulk/<unguessable token>.jsonl``, like Shopify's signed storage URLs.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta
from functools import lru_cache
from importlib import resources
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
from graphql import GraphQLError
from graphql import GraphQLObjectType
from graphql import GraphQLResolveInfo
from graphql import GraphQLSchema
from graphql import build_schema
from graphql import execute
from graphql import get_named_type
from graphql import is_composite_type
from graphql import parse
from graphql import validate
from graphql.language import DocumentNode
from graphql.language import FieldNode
from graphql.language import FragmentDefinitionNode
from graphql.language import FragmentSpreadNode
from graphql.language import InlineFragmentNode
from graphql.language import OperationDefinitionNode
from graphql.language import OperationType
from graphql.language import SelectionSetNode
from graphql.language import VariableNode
from graphql.utilities import get_operation_ast
from werkzeug.exceptions import NotFound

from app.platforms.devstore.state import METADATA
from app.platforms.devstore.state import DevStore
from app.platforms.devstore.state import now_utc

bp = Blueprint("devstore_shopify", __name__)

SCHEMA_FILE = "shopify_admin_2026-10.graphql"
API_VERSION = "2026-10"
CUSTOMER_GID = "gid://shopify/Customer/"
DEFINITION_GID = "gid://shopify/MetafieldDefinition/"
INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"  # noqa: S105 (Shopify's error text)
RATE_LIMITS_DOCS = "https://shopify.dev/api/usage/rate-limits"
MUTATION_COST = 10
# Shopify refuses a document whose requested cost passes this, before running it.
MAX_QUERY_COST = 1000
MAX_PAGE_SIZE = 250
BULK_GID = "gid://shopify/BulkOperation/"
# 2026-01 and later: up to five bulk queries running at once per shop and app.
MAX_RUNNING_BULK_QUERIES = 5
BULK_ERROR_CODES = ("ACCESS_DENIED", "INTERNAL_SERVER_ERROR", "TIMEOUT")
# Consent states a caller may set; NOT_SUBSCRIBED, REDACTED and INVALID are Shopify's own.
SETTABLE_CONSENT = ("SUBSCRIBED", "UNSUBSCRIBED", "PENDING")
# The standard definitions the store knows: (owner type, namespace, key) -> (type, name).
STANDARD_DEFINITIONS = {("CUSTOMER", "facts", "birth_date"): ("date", "Birthday")}
RESERVED_NAMESPACE = "facts"
APP_NAMESPACE = "$app"
TAG_MAX_LENGTH = 255
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

customers = sa.Table(
    "devstore_shopify_customers",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("shop_id", sa.Integer, nullable=False, index=True),
    sa.Column("email", sa.String(320)),
    sa.Column("phone", sa.String(32)),
    sa.Column("first_name", sa.String(255)),
    sa.Column("last_name", sa.String(255)),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("email_state", sa.String(20), nullable=False),
    sa.Column("email_opt_in_level", sa.String(20)),
    sa.Column("email_consent_updated_at", sa.String(40)),
    sa.Column("sms_state", sa.String(20), nullable=False),
    sa.Column("sms_opt_in_level", sa.String(20)),
    sa.Column("sms_consent_updated_at", sa.String(40)),
    sa.Column("addresses", sa.JSON, nullable=False),  # [{"countryCode": "US"}], the first is the default
    sa.Column(
        "metafields", sa.JSON, nullable=False
    ),  # {"namespace.key": {"namespace", "key", "type", "value"}}
    # ISO 8601 with microseconds and offset: updatedAt must grow on every change, even within a second.
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
    sa.UniqueConstraint("shop_id", "email"),
    sa.UniqueConstraint("shop_id", "phone"),
)

definitions = sa.Table(
    "devstore_shopify_definitions",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("shop_id", sa.Integer, nullable=False),
    sa.Column("owner_type", sa.String(40), nullable=False),
    sa.Column("namespace", sa.String(255), nullable=False),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.UniqueConstraint("shop_id", "owner_type", "namespace", "key"),
)


# -- rate limit ------------------------------------------------------------------------------------------


@dataclass
class CostBucket:
    """One shop's leaky bucket of query cost points, on the store's clock."""

    available: float
    updated: float

    def refill(self, store: DevStore) -> float:
        now = store.clock()
        elapsed = max(0.0, now - self.updated)
        self.available = min(store.shopify_bucket_size, self.available + elapsed * store.shopify_restore_rate)
        self.updated = now
        return self.available

    def status(self, store: DevStore) -> dict[str, float]:
        return {
            "maximumAvailable": float(store.shopify_bucket_size),
            "currentlyAvailable": float(round(self.available, 3)),
            "restoreRate": float(store.shopify_restore_rate),
        }


@dataclass
class BulkRun:
    """One bulk query: run when it was created, its result kept until the store stops (or it expires)."""

    id: str
    shop_id: int
    query: str
    created_at: str
    object_count: int
    file_token: str | None  # None: no result (no object, a failure or an expiry)
    file_url: str | None
    # How it ends, as the store was configured when it was created (see configure_bulk_operations).
    running_polls: int = 1
    error_code: str | None = None
    polls: int = 0
    expired: bool = False


@dataclass
class ShopifyState:
    """What the Shopify side keeps per development store besides its tables."""

    buckets: dict[int, CostBucket] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    bulk_runs: dict[str, BulkRun] = field(default_factory=dict)
    bulk_files: dict[str, bytes] = field(default_factory=dict)
    # How the store's bulk queries end: RUNNING for this many polls, then COMPLETED, or FAILED with this code.
    bulk_running_polls: int = 1
    bulk_error_code: str | None = None
    # Each shop's live theme ``config/settings_data.json`` (app embeds switched on or off there).
    theme_settings: dict[int, str] = field(default_factory=dict)

    def bucket(self, store: DevStore, shop_id: int) -> CostBucket:
        if shop_id not in self.buckets:
            self.buckets[shop_id] = CostBucket(available=store.shopify_bucket_size, updated=store.clock())
        return self.buckets[shop_id]


_STATES: weakref.WeakKeyDictionary[DevStore, ShopifyState] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def _state(store: DevStore) -> ShopifyState:
    with _STATES_LOCK:
        if store not in _STATES:
            _STATES[store] = ShopifyState()
        return _STATES[store]


def configure_bulk_operations(
    store: DevStore, *, running_polls: int = 1, error_code: str | None = None
) -> None:
    """How the bulk queries created from now on end: ``running_polls`` polls of ``bulkOperation(id:)``
    answer RUNNING (0: COMPLETED at the first), then COMPLETED, or FAILED with ``error_code`` (one of
    Shopify's ``BulkOperationErrorCode``) when given."""
    if running_polls < 0:
        raise ValueError("running_polls must not be negative")
    if error_code is not None and error_code not in BULK_ERROR_CODES:
        raise ValueError(f"error_code must be one of {', '.join(BULK_ERROR_CODES)}")
    state = _state(store)
    with state.lock:
        state.bulk_running_polls = running_polls
        state.bulk_error_code = error_code


def expire_bulk_operation(store: DevStore, operation_id: str) -> None:
    """Age a bulk query past Shopify's seven days: EXPIRED, and its file gone (its URL answers 404)."""
    state = _state(store)
    with state.lock:
        run = state.bulk_runs[operation_id]
        run.expired = True
        if run.file_token is not None:
            state.bulk_files.pop(run.file_token, None)


def requested_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any],
) -> int:
    """Shopify's requested cost: 10 per mutation field, 1 per object, a connection ``2 + first * node``
    cost, scalars and enums nothing."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    mutation = operation.operation == OperationType.MUTATION

    def size(node: FieldNode) -> int:
        for argument in node.arguments:
            if argument.name.value in ("first", "last"):
                value: Any = argument.value
                raw = variables.get(value.name.value) if isinstance(value, VariableNode) else value.value
                try:
                    return int(raw or 0)
                except (TypeError, ValueError):
                    return 0
        return 0

    def cost(selection_set: SelectionSetNode | None, parent: Any, root: bool) -> int:
        total = 0
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                name = selection.name.value
                fields = getattr(parent, "fields", {})
                if name.startswith("__") or name not in fields:
                    continue
                named = get_named_type(fields[name].type)
                if not is_composite_type(named):
                    continue
                children = cost(selection.selection_set, named, False)
                if named.name.endswith("Connection"):
                    total += 2 + size(selection) * children
                else:
                    total += (MUTATION_COST if root and mutation else 1) + children
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = schema.get_type(condition.name.value) if condition else parent
                total += cost(selection.selection_set, target, root)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value in fragments:
                fragment = fragments[selection.name.value]
                target = schema.get_type(fragment.type_condition.name.value)
                total += cost(fragment.selection_set, target, root)
        return total

    root_type = schema.mutation_type if mutation else schema.query_type
    return cost(operation.selection_set, root_type, True)


# -- the view --------------------------------------------------------------------------------------------


@dataclass
class RequestContext:
    """What every resolver of one request needs: the store and the authenticated shop. ``bulk``: the
    request is a bulk query's own run, where connections answer every node (``first``/``after`` ignored)."""

    store: DevStore
    shop_id: int
    domain: str
    bulk: bool = False


@bp.post("/admin/api/<version>/graphql.json")
def graphql_endpoint(version: str) -> Any:
    """Shopify's Admin GraphQL API for the store's Shopify shops: 401 for an unknown token or a token used for
    another shop; otherwise 200 with ``data`` and/or ``errors`` and ``extensions.cost``, like Shopify. Any
    ``version`` is answered with the 2026-10 schema (as Shopify falls forward from an unsupported one) and
    says so in ``X-Shopify-API-Version``."""
    store: DevStore = current_app.extensions["devstore"]
    token = request.headers.get("X-Shopify-Access-Token", "")
    shop = None
    if token:
        # Under the store's lock like every database access: an in-memory store shares one SQLite
        # connection between threads, and a read ending elsewhere would roll back a write in flight.
        with store.lock:
            shop = store.shop_for_token("shopify", token, request.headers.get("X-Forwarded-Host"))
    if shop is None:
        return jsonify({"errors": INVALID_TOKEN}), 401
    shop_id, domain = shop
    fault = store.faults.before_call()
    if fault in ("error", "timeout"):
        return _unavailable()
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return jsonify({"errors": {"query": "Required parameter missing or invalid"}}), 400
    variables = body.get("variables") or {}
    if not isinstance(variables, dict):
        return jsonify({"errors": {"variables": "must be an object"}}), 400

    schema = admin_schema()
    try:
        document = parse(body["query"])
    except GraphQLError as error:
        return _refused(store, shop_id, [error.formatted])
    errors = validate(schema, document)
    if errors:
        return _refused(store, shop_id, [error.formatted for error in errors])
    operation = get_operation_ast(document, body.get("operationName"))
    if operation is None:
        return _refused(store, shop_id, [{"message": "An operation name is required"}])

    cost = requested_cost(schema, document, operation, variables)
    if cost > MAX_QUERY_COST:
        return _refused(store, shop_id, [_max_cost_error(cost)], requested=cost)
    throttled, status = _charge(store, shop_id, cost, refuse=fault == "throttle")
    if throttled:
        return _answer(
            {
                "errors": [
                    {
                        "message": "Throttled",
                        "extensions": {"code": "THROTTLED", "documentation": RATE_LIMITS_DOCS},
                    }
                ],
                "extensions": {
                    "cost": {"requestedQueryCost": cost, "actualQueryCost": None, "throttleStatus": status}
                },
            }
        )

    # One request at a time: the one-customer-per-identifier checks and the writes must not interleave,
    # and the in-memory store's single connection must not be shared by two threads at once.
    with store.lock:
        result = execute(
            schema,
            document,
            context_value=RequestContext(store, shop_id, domain),
            variable_values=variables,
            operation_name=body.get("operationName"),
        )
    answer: dict[str, Any] = {}
    if result.errors:
        answer["errors"] = [error.formatted for error in result.errors]
    if result.data is not None or not result.errors:
        answer["data"] = result.data
    answer["extensions"] = {
        "cost": {"requestedQueryCost": cost, "actualQueryCost": cost, "throttleStatus": status}
    }
    if (
        operation.operation == OperationType.MUTATION
        and result.data is not None
        and store.faults.lose_answer()
    ):
        return _unavailable()
    return _answer(answer)


def _charge(
    store: DevStore, shop_id: int, cost: int, *, refuse: bool = False
) -> tuple[bool, dict[str, float]]:
    """Take ``cost`` from the shop's bucket: (throttled, the throttle status after it). A throttled call
    takes nothing, as Shopify's bucket must hold the whole requested cost up front."""
    state = _state(store)
    with state.lock:
        bucket = state.bucket(store, shop_id)
        throttled = refuse or cost > bucket.refill(store)
        if not throttled:
            bucket.available -= cost
        store.stats.record("shopify", throttled=throttled, cost=cost)
        return throttled, bucket.status(store)


def _refused(store: DevStore, shop_id: int, errors: list[dict[str, Any]], *, requested: int = 0) -> Response:
    """A document that was never executed: its errors and nothing charged."""
    _, status = _charge(store, shop_id, 0)
    cost = {"requestedQueryCost": requested, "actualQueryCost": 0, "throttleStatus": status}
    return _answer({"errors": errors, "extensions": {"cost": cost}})


def _max_cost_error(cost: int) -> dict[str, Any]:
    return {
        "message": f"Query cost is {cost}, which exceeds the single query max cost limit ({MAX_QUERY_COST}).",
        "extensions": {
            "code": "MAX_COST_EXCEEDED",
            "cost": cost,
            "maxCost": MAX_QUERY_COST,
            "documentation": RATE_LIMITS_DOCS,
        },
    }


def _answer(body: dict[str, Any]) -> Response:
    response = jsonify(body)
    response.headers["X-Shopify-API-Version"] = API_VERSION
    return response


def _unavailable() -> Response:
    return Response("Service Unavailable", status=503, mimetype="text/plain")


# -- the schema and its resolvers ------------------------------------------------------------------------


@lru_cache(maxsize=1)
def admin_schema() -> GraphQLSchema:
    """The trimmed official schema with the store's resolvers (loaded once per process)."""
    sdl = resources.files("app.platforms.devstore").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    schema = build_schema(sdl)
    # The SDL keeps exactly the root fields popsync's documents use; each needs its resolver.
    for root_type, resolvers in (
        (schema.query_type, QUERY_RESOLVERS),
        (schema.mutation_type, MUTATION_RESOLVERS),
    ):
        names = sorted(root_type.fields) if root_type else []
        if root_type is None or set(names) != set(resolvers):
            raise RuntimeError(f"{SCHEMA_FILE}: root fields {names} do not match the store's resolvers")
        for name, resolver in resolvers.items():
            root_type.fields[name].resolve = resolver
    customer_type = schema.get_type("Customer")
    if not isinstance(customer_type, GraphQLObjectType):
        raise RuntimeError(f"{SCHEMA_FILE} has no Customer type")
    customer_type.fields["metafield"].resolve = resolve_customer_metafield
    return schema


def _context(info: GraphQLResolveInfo) -> RequestContext:
    return info.context


def _user_error(path: list[str] | None, message: str, code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"field": path, "message": message}
    if code is not None:
        error["code"] = code
    return error


def _customer_pk(gid: Any) -> int | None:
    if not isinstance(gid, str) or not gid.startswith(CUSTOMER_GID):
        return None
    tail = gid[len(CUSTOMER_GID) :]
    return int(tail) if tail.isdigit() else None


def _load(connection: sa.Connection, shop_id: int, pk: int | None) -> dict[str, Any] | None:
    if pk is None:
        return None
    row = connection.execute(
        sa.select(customers).where(customers.c.shop_id == shop_id, customers.c.id == pk)
    ).first()
    return dict(row._mapping) if row is not None else None


def resolve_customer(_root: Any, info: GraphQLResolveInfo, id: str) -> dict[str, Any] | None:
    """``customer(id:)``: the shop's customer or null."""
    context = _context(info)
    if not id.startswith("gid://shopify/"):
        raise GraphQLError(f"Invalid global id '{id}'")
    with context.store.engine.connect() as connection:
        row = _load(connection, context.shop_id, _customer_pk(id))
    return customer_node(row) if row else None


def resolve_customer_by_identifier(
    _root: Any, info: GraphQLResolveInfo, identifier: Mapping[str, Any]
) -> dict[str, Any] | None:
    """``customerByIdentifier``: exact match on one of email, phone or id (``@oneOf``)."""
    context = _context(info)
    given = {k: v for k, v in identifier.items() if v is not None}
    if len(given) != 1:
        raise GraphQLError("CustomerIdentifierInput must specify exactly one key")
    ((kind, value),) = given.items()
    condition: Any
    if kind == "emailAddress":
        condition = customers.c.email == str(value).strip().lower()
    elif kind == "phoneNumber":
        phone = _e164(str(value))
        if phone is None:
            return None
        condition = customers.c.phone == phone
    elif kind == "id":
        condition = customers.c.id == (_customer_pk(value) or 0)
    else:
        raise GraphQLError(
            "customId lookups need a unique-values metafield definition, which this store lacks"
        )
    with context.store.engine.connect() as connection:
        row = connection.execute(
            sa.select(customers).where(customers.c.shop_id == context.shop_id, condition)
        ).first()
    return customer_node(dict(row._mapping)) if row else None


# -- reading every customer ------------------------------------------------------------------------------

# ``updated_at:>='2026-03-01T10:00:00Z'`` and the like: the part of Shopify's search syntax the store knows.
_SEARCH_TERM = re.compile(r"""updated_at:(>=|<=|>|<)(?:'([^']*)'|"([^"]*)"|([^\s'"]+))""")
_SEARCH_JOIN = re.compile(r"\s+(?:AND\s+)?")
_SORT_COLUMNS = {"UPDATED_AT": "updated_at", "ID": "id"}


def _search_moment(text: str) -> str:
    """A search value as the stored ``updated_at`` text (UTC, microseconds), so the database compares it."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise GraphQLError(f"Invalid date in query: '{text}'") from None
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="microseconds")


def _search_conditions(query: str | None) -> list[Any]:
    """The conditions for ``customers(query:)``; a GraphQLError for syntax the store does not understand,
    which Shopify would apply and a silent store would not."""
    text = (query or "").strip()
    if not text:
        return []
    conditions: list[Any] = []
    for term in _SEARCH_JOIN.split(text):
        match = _SEARCH_TERM.fullmatch(term)
        if match is None:
            raise GraphQLError(
                f"The development store's customers(query:) understands only updated_at comparisons "
                f"(updated_at:>='2026-03-01T00:00:00Z', joined by AND), not '{term}'"
            )
        operator, *values = match.groups()
        value = _search_moment(next(v for v in values if v is not None))
        column = customers.c.updated_at
        conditions.append(
            {">=": column >= value, "<=": column <= value, ">": column > value, "<": column < value}[operator]
        )
    return conditions


def _encode_cursor(sort_key: str, row: Mapping[str, Any]) -> str:
    state = {"k": sort_key, "i": row["id"], "u": row["updated_at"]}
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode()


def _after_condition(sort_key: str, cursor: str) -> Any:
    """The rows after ``cursor`` in ``sort_key`` order (ties on updatedAt broken by id, as Shopify does)."""
    try:
        state = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError):
        state = None
    if (
        not isinstance(state, dict)
        or state.get("k") != sort_key
        or not isinstance(state.get("i"), int)
        or not isinstance(state.get("u"), str)
    ):
        raise GraphQLError("Invalid cursor for this sort key")
    if sort_key == "ID":
        return customers.c.id > state["i"]
    return sa.or_(
        customers.c.updated_at > state["u"],
        sa.and_(customers.c.updated_at == state["u"], customers.c.id > state["i"]),
    )


def resolve_customers(
    _root: Any,
    info: GraphQLResolveInfo,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    query: str | None = None,
    reverse: bool = False,
    sortKey: str = "ID",
) -> dict[str, Any]:
    """``customers``: a forward page in ``sortKey`` order; in a bulk query's run, every customer."""
    context = _context(info)
    if sortKey not in _SORT_COLUMNS:
        raise GraphQLError(f"The development store sorts customers by UPDATED_AT or ID, not {sortKey}")
    if reverse or last is not None or before is not None:
        raise GraphQLError("The development store pages customers forward only (first/after, no reverse)")
    conditions = [customers.c.shop_id == context.shop_id, *_search_conditions(query)]
    limit: int | None = None
    if not context.bulk:
        # Shopify ignores first and after in bulk queries, and demands first (or last) elsewhere.
        if first is None:
            raise GraphQLError("you must provide one of first or last")
        if not 0 <= first <= MAX_PAGE_SIZE:
            raise GraphQLError(f"The first argument must be between 0 and {MAX_PAGE_SIZE}")
        limit = first
        if after:
            conditions.append(_after_condition(sortKey, after))
    column = customers.c[_SORT_COLUMNS[sortKey]]
    order = [column] if sortKey == "ID" else [column, customers.c.id]
    statement = sa.select(customers).where(*conditions).order_by(*order)
    if limit is not None:
        statement = statement.limit(limit + 1)
    with context.store.engine.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(statement)]
    more = limit is not None and len(rows) > limit
    rows = rows[:limit] if limit is not None else rows
    edges = [{"cursor": _encode_cursor(sortKey, row), "node": customer_node(row)} for row in rows]
    return {
        "edges": edges,
        "nodes": [edge["node"] for edge in edges],
        "pageInfo": {
            "hasNextPage": more,
            "hasPreviousPage": bool(after) and not context.bulk,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


def _bulk_error(message: str, code: str = "INVALID") -> dict[str, Any]:
    return {"bulkOperation": None, "userErrors": [_user_error(["query"], message, code)]}


def _bulk_lines(schema: GraphQLSchema, document: DocumentNode, context: RequestContext) -> list[str] | str:
    """The JSONL lines of a bulk query's run, or why it cannot run (Shopify's rules, those the trimmed
    schema can meet: one top-level connection, a query, no ``node``/``nodes`` root)."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1 or operations[0].operation != OperationType.QUERY:
        return (
            "Bulk queries must contain exactly one query operation (mutations have bulkOperationRunMutation)"
        )
    selections = operations[0].selection_set.selections
    if len(selections) != 1 or not isinstance(selections[0], FieldNode):
        return "Bulk queries must select exactly one top-level field"
    root = selections[0]
    root_field = schema.query_type.fields.get(root.name.value) if schema.query_type else None
    if root_field is None or not get_named_type(root_field.type).name.endswith("Connection"):
        return "Bulk queries must start from a connection field"
    result = execute(schema, document, context_value=context)
    if result.errors:
        return "; ".join(error.message for error in result.errors)
    connection = (result.data or {}).get(root.alias.value if root.alias else root.name.value) or {}
    nodes = [edge["node"] for edge in connection.get("edges") or []] + list(connection.get("nodes") or [])
    # Nested connections would be lines of their own with ``__parentId``; the trimmed schema has none.
    return [json.dumps(node, separators=(",", ":"), ensure_ascii=False) for node in nodes]


def resolve_bulk_operation_run_query(
    _root: Any, info: GraphQLResolveInfo, query: str, groupObjects: bool = False
) -> dict[str, Any]:
    """``bulkOperationRunQuery``: validates ``query`` against the schema and runs it now, over the shop's
    customers as they are; the result waits in memory for ``bulkOperation(id:)`` to report it done."""
    context = _context(info)
    schema = admin_schema()
    try:
        document = parse(query)
    except GraphQLError as error:
        return _bulk_error(f"Invalid bulk query: {error.message}")
    errors = validate(schema, document)
    if errors:
        return _bulk_error(f"Invalid bulk query: {'; '.join(error.message for error in errors)}")
    state = _state(context.store)
    with state.lock:
        running = [
            run
            for run in state.bulk_runs.values()
            if run.shop_id == context.shop_id and _bulk_status(run) in ("CREATED", "RUNNING")
        ]
    if len(running) >= MAX_RUNNING_BULK_QUERIES:
        return _bulk_error(
            f"A maximum of {MAX_RUNNING_BULK_QUERIES} bulk query operations can run at a time for this app "
            "and shop",
            "LIMIT_REACHED",
        )
    lines = _bulk_lines(
        schema, document, RequestContext(context.store, context.shop_id, context.domain, True)
    )
    if isinstance(lines, str):
        return _bulk_error(f"Invalid bulk query: {lines}")
    token = secrets.token_urlsafe(32) if lines else None
    with state.lock:
        run = BulkRun(
            id=f"{BULK_GID}{len(state.bulk_runs) + 1}",
            shop_id=context.shop_id,
            query=query,
            created_at=now_utc().isoformat(timespec="seconds").replace("+00:00", "Z"),
            object_count=len(lines),
            file_token=token,
            # Absolute on the store's own origin, as the app fetches it from wherever it runs.
            file_url=f"{request.host_url}devstore/bulk/{token}.jsonl" if token else None,
            running_polls=state.bulk_running_polls,
            error_code=state.bulk_error_code,
        )
        state.bulk_runs[run.id] = run
        if token is not None:
            state.bulk_files[token] = ("\n".join(lines) + "\n").encode()
        return {"bulkOperation": _bulk_node(state, run), "userErrors": []}


def _bulk_status(run: BulkRun) -> str:
    if run.expired:
        return "EXPIRED"
    if run.polls == 0:
        return "CREATED"
    if run.polls <= run.running_polls:
        return "RUNNING"
    return "FAILED" if run.error_code else "COMPLETED"


def _bulk_node(state: ShopifyState, run: BulkRun) -> dict[str, Any]:
    status = _bulk_status(run)
    done = status == "COMPLETED"
    return {
        "__typename": "BulkOperation",
        "id": run.id,
        "status": status,
        "type": "QUERY",
        "query": run.query,
        "createdAt": run.created_at,
        "completedAt": run.created_at if done else None,
        "errorCode": run.error_code if status == "FAILED" else None,
        # UnsignedInt64 is a string in Shopify's JSON.
        "objectCount": str(run.object_count if done else 0),
        "rootObjectCount": str(run.object_count if done else 0),
        "fileSize": str(len(state.bulk_files.get(run.file_token or "", b"")))
        if done and run.file_url
        else None,
        "url": run.file_url if done else None,
        "partialDataUrl": None,
    }


def resolve_bulk_operation(_root: Any, info: GraphQLResolveInfo, id: str) -> dict[str, Any] | None:
    """``bulkOperation(id:)``: the shop's bulk query or null; each poll moves it on (see
    ``configure_bulk_operations``)."""
    context = _context(info)
    state = _state(context.store)
    with state.lock:
        run = state.bulk_runs.get(id)
        if run is None or run.shop_id != context.shop_id:
            return None
        # A finished operation stays as it ended; only a running one moves on with the polls.
        if _bulk_status(run) in ("CREATED", "RUNNING"):
            run.polls += 1
        return _bulk_node(state, run)


@bp.get("/devstore/bulk/<token>.jsonl")
def bulk_file(token: str) -> Response:
    """A bulk query's JSONL, for whoever has the unguessable link (like Shopify's signed URLs): no token."""
    store: DevStore = current_app.extensions["devstore"]
    state = _state(store)
    with state.lock:
        content = state.bulk_files.get(token)
    if content is None:
        raise NotFound()
    return Response(content, mimetype="application/jsonl")


def resolve_customer_metafield(
    source: Mapping[str, Any], _info: GraphQLResolveInfo, key: str, namespace: str | None = None
) -> dict[str, Any] | None:
    """``Customer.metafield(namespace:, key:)``; an omitted namespace is the app's own."""
    stored = (source.get("_metafields") or {}).get(f"{namespace or APP_NAMESPACE}.{key}")
    if not stored:
        return None
    return {
        "__typename": "Metafield",
        "id": f"gid://shopify/Metafield/{source['id'].rsplit('/', 1)[-1]}",
        **stored,
    }


def resolve_customer_create(_root: Any, info: GraphQLResolveInfo, input: Mapping[str, Any]) -> dict[str, Any]:
    """``customerCreate``: a new customer, or userErrors and no customer."""
    context = _context(info)
    if input.get("id") is not None:
        return {"customer": None, "userErrors": [_user_error(["id"], "Id must be blank when creating")]}
    store = context.store
    with store.lock, store.engine.begin() as connection:
        values, errors = _profile_changes(connection, context.shop_id, None, input)
        if not any(input.get(k) for k in ("email", "phone", "firstName", "lastName")):
            errors.append(_user_error(None, "Customer must have a name, phone number or email address"))
        values.update(_create_consent(input, values, errors))
        if errors:
            return {"customer": None, "userErrors": errors}
        stamp = _timestamp(None)
        row = {
            "shop_id": context.shop_id,
            "email": None,
            "phone": None,
            "first_name": None,
            "last_name": None,
            "tags": [],
            "email_state": "NOT_SUBSCRIBED",
            "email_opt_in_level": None,
            "email_consent_updated_at": None,
            "sms_state": "NOT_SUBSCRIBED",
            "sms_opt_in_level": None,
            "sms_consent_updated_at": None,
            "addresses": [],
            "metafields": {},
            **values,
            "created_at": stamp,
            "updated_at": stamp,
        }
        pk = connection.execute(customers.insert().values(**row)).inserted_primary_key[0]
        created = _load(connection, context.shop_id, pk)
    assert created is not None
    _notify(context, "customers/create", created)
    return {"customer": customer_node(created), "userErrors": []}


def resolve_customer_update(_root: Any, info: GraphQLResolveInfo, input: Mapping[str, Any]) -> dict[str, Any]:
    """``customerUpdate``: the given fields replace the stored ones (``tags`` and ``addresses`` whole)."""
    context = _context(info)
    store = context.store
    errors: list[dict[str, Any]] = []
    for name, mutation in (
        ("emailMarketingConsent", "customerEmailMarketingConsentUpdate"),
        ("smsMarketingConsent", "customerSmsMarketingConsentUpdate"),
    ):
        if input.get(name) is not None:
            errors.append(
                _user_error([name], f"To update {name}, please use the {mutation} Mutation instead")
            )
    with store.lock, store.engine.begin() as connection:
        current = _load(connection, context.shop_id, _customer_pk(input.get("id")))
        if current is None:
            return {"customer": None, "userErrors": [_user_error(["id"], "Customer does not exist")]}
        values, more = _profile_changes(connection, context.shop_id, current, input)
        errors.extend(more)
        if errors:
            return {"customer": None, "userErrors": errors}
        updated = _save(connection, current, values)
    if updated is not current:
        _notify(context, "customers/update", updated)
    return {"customer": customer_node(updated), "userErrors": []}


def resolve_tags_add(_root: Any, info: GraphQLResolveInfo, id: str, tags: list[str]) -> dict[str, Any]:
    """``tagsAdd``: adds tags (each may itself be a comma-separated list), never removes any."""
    context = _context(info)
    store = context.store
    with store.lock, store.engine.begin() as connection:
        current = _load(connection, context.shop_id, _customer_pk(id))
        if current is None:
            return {"node": None, "userErrors": [_user_error(["id"], "Customer does not exist")]}
        added, errors = _clean_tags(tags, ["tags"])
        if errors:
            return {"node": None, "userErrors": errors}
        merged = list(current["tags"])
        held = {tag.casefold() for tag in merged}
        merged.extend(tag for tag in added if tag.casefold() not in held)
        updated = _save(connection, current, {"tags": _sorted_tags(merged)})
    if updated is not current:
        _notify(context, "customers/update", updated)
    return {"node": customer_node(updated), "userErrors": []}


def _consent_mutation(info: GraphQLResolveInfo, data: Mapping[str, Any], channel: str) -> dict[str, Any]:
    context = _context(info)
    store = context.store
    name = "emailMarketingConsent" if channel == "email" else "smsMarketingConsent"
    identifier = "email" if channel == "email" else "phone"
    consent = data[name]
    with store.lock, store.engine.begin() as connection:
        current = _load(connection, context.shop_id, _customer_pk(data["customerId"]))
        if current is None:
            return {
                "customer": None,
                "userErrors": [_user_error(["customerId"], "Customer not found", "INVALID")],
            }
        if not current[identifier]:
            label = "An email address" if channel == "email" else "A phone number"
            return {
                "customer": None,
                "userErrors": [
                    _user_error(
                        [name],
                        f"{label} is required to set the {channel} marketing consent state.",
                        "INVALID",
                    )
                ],
            }
        if consent["marketingState"] not in SETTABLE_CONSENT:
            return {
                "customer": None,
                "userErrors": [
                    _user_error(
                        [name, "marketingState"], "Marketing state is not included in the list", "INCLUSION"
                    )
                ],
            }
        updated = _save(connection, current, _consent_values(channel, consent))
    if updated is not current:
        _notify(context, "customers/update", updated)
    return {"customer": customer_node(updated), "userErrors": []}


def resolve_email_consent_update(
    _root: Any, info: GraphQLResolveInfo, input: Mapping[str, Any]
) -> dict[str, Any]:
    """``customerEmailMarketingConsentUpdate``: needs an email on the customer."""
    return _consent_mutation(info, input, "email")


def resolve_sms_consent_update(
    _root: Any, info: GraphQLResolveInfo, input: Mapping[str, Any]
) -> dict[str, Any]:
    """``customerSmsMarketingConsentUpdate``: needs a phone on the customer."""
    return _consent_mutation(info, input, "sms")


def resolve_standard_definition_enable(
    _root: Any,
    info: GraphQLResolveInfo,
    ownerType: str,
    namespace: str | None = None,
    key: str | None = None,
    **_options: Any,
) -> dict[str, Any]:
    """``standardMetafieldDefinitionEnable``: only the templates the store knows (``facts.birth_date``)."""
    context = _context(info)
    template = STANDARD_DEFINITIONS.get((ownerType, namespace or "", key or ""))
    if template is None:
        return {
            "createdDefinition": None,
            "userErrors": [
                _user_error(["namespace"], "A standard definition wasn't found.", "TEMPLATE_NOT_FOUND")
            ],
        }
    store = context.store
    with store.lock, store.engine.begin() as connection:
        if _definition(connection, context.shop_id, namespace or "", key or "") is not None:
            message = f"Key is in use for {ownerType.title()} metafields on the '{namespace}' namespace."
            return {"createdDefinition": None, "userErrors": [_user_error(["key"], message, "TAKEN")]}
        type_, name = template
        pk = connection.execute(
            definitions.insert().values(
                shop_id=context.shop_id,
                owner_type=ownerType,
                namespace=namespace,
                key=key,
                type=type_,
                name=name,
            )
        ).inserted_primary_key[0]
    return {
        "createdDefinition": {"__typename": "MetafieldDefinition", "id": f"{DEFINITION_GID}{pk}"},
        "userErrors": [],
    }


THEME_SETTINGS_NOTICE = (
    "/*\n * ------------------------------------------------------------\n"
    " * IMPORTANT: The contents of this file are auto-generated.\n"
    " * ------------------------------------------------------------\n */\n"
)


def theme_settings_with_embed(app_handle: str, block_handle: str, *, enabled: bool) -> str:
    """A live theme's settings_data.json as Shopify writes it, with this app embed on or off."""
    block_type = f"shopify://apps/{app_handle}/blocks/{block_handle}/0f6e2b9c-5d4e-4b8a-9c1d-2e3f4a5b6c7d"
    settings = {
        "current": {
            "blocks": {"4478918330431342093": {"type": block_type, "disabled": not enabled, "settings": {}}},
            "sections": {},
        },
        "presets": {"Default": {}},
    }
    return THEME_SETTINGS_NOTICE + json.dumps(settings, indent=2)


def set_theme_settings(store: DevStore, domain: str, content: str) -> None:
    """Write a Shopify shop's live theme settings (tests, the demo's "switch the embed on" link)."""
    shop = next((pk for pk, known in store.shop_domains("shopify") if known == domain), None)
    if shop is None:
        raise KeyError(domain)
    state = _state(store)
    with state.lock:
        state.theme_settings[shop] = content


def resolve_themes(
    _root: Any, info: GraphQLResolveInfo, roles: list[str] | None = None, **_: Any
) -> dict[str, Any]:
    """``themes``: the store has one theme, its live (MAIN) one, with its settings_data.json."""
    context = _context(info)
    if roles and "MAIN" not in roles:
        return {"nodes": []}
    state = _state(context.store)
    with state.lock:
        content = state.theme_settings.get(context.shop_id)
    if content is None:
        content = THEME_SETTINGS_NOTICE + json.dumps({"current": {"blocks": {}, "sections": {}}}, indent=2)
    body = {"__typename": "OnlineStoreThemeFileBodyText", "content": content}
    theme_file = {"filename": "config/settings_data.json", "body": body}
    return {
        "nodes": [
            {"id": f"gid://shopify/OnlineStoreTheme/{context.shop_id}", "files": {"nodes": [theme_file]}}
        ]
    }


QUERY_RESOLVERS: dict[str, Any] = {
    "bulkOperation": resolve_bulk_operation,
    "customer": resolve_customer,
    "customerByIdentifier": resolve_customer_by_identifier,
    "customers": resolve_customers,
    "themes": resolve_themes,
}
MUTATION_RESOLVERS: dict[str, Any] = {
    "customerCreate": resolve_customer_create,
    "customerUpdate": resolve_customer_update,
    "tagsAdd": resolve_tags_add,
    "customerEmailMarketingConsentUpdate": resolve_email_consent_update,
    "customerSmsMarketingConsentUpdate": resolve_sms_consent_update,
    "standardMetafieldDefinitionEnable": resolve_standard_definition_enable,
    "bulkOperationRunQuery": resolve_bulk_operation_run_query,
}


# -- Shopify's rules -------------------------------------------------------------------------------------


def _e164(value: str) -> str | None:
    """E.164 of a number that can be dialled from anywhere (so it carries its country code), else None."""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _profile_changes(
    connection: sa.Connection, shop_id: int, current: Mapping[str, Any] | None, data: Mapping[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The column values ``data`` (a CustomerInput) sets, and its userErrors."""
    values: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    if "email" in data:
        email = (data["email"] or "").strip()
        if not email:
            values["email"] = None
        else:
            try:
                validate_email(email, check_deliverability=False)
            except EmailNotValidError:
                errors.append(_user_error(["email"], "Email is invalid"))
            else:
                values["email"] = email.lower()
    if "phone" in data:
        phone = (data["phone"] or "").strip()
        if not phone:
            values["phone"] = None
        elif (e164 := _e164(phone)) is None:
            errors.append(_user_error(["phone"], "Phone is invalid"))
        else:
            values["phone"] = e164
    for name, column in (("firstName", "first_name"), ("lastName", "last_name")):
        if name in data:
            values[column] = (data[name] or "").strip() or None
    if data.get("tags") is not None:
        tags, tag_errors = _clean_tags(data["tags"], ["tags"])
        errors.extend(tag_errors)
        values["tags"] = _sorted_tags(tags)
    if data.get("addresses") is not None:
        values["addresses"] = [
            {"countryCode": address.get("countryCode")}
            for address in data["addresses"]
            if address is not None
        ]
    if data.get("metafields"):
        metafields, metafield_errors = _metafields(
            connection, shop_id, (current or {}).get("metafields") or {}, data["metafields"]
        )
        errors.extend(metafield_errors)
        values["metafields"] = metafields
    own_id = current["id"] if current else None
    for column in ("email", "phone"):
        if values.get(column) and _held_by_other(connection, shop_id, column, values[column], own_id):
            errors.append(_user_error([column], f"{column.title()} has already been taken"))
    return values, errors


def _held_by_other(
    connection: sa.Connection, shop_id: int, column: str, value: str, own_id: int | None
) -> bool:
    statement = sa.select(customers.c.id).where(customers.c.shop_id == shop_id, customers.c[column] == value)
    if own_id is not None:
        statement = statement.where(customers.c.id != own_id)
    return connection.execute(statement).first() is not None


def _create_consent(
    data: Mapping[str, Any], values: Mapping[str, Any], errors: list[dict[str, Any]]
) -> dict[str, Any]:
    """Consent given in a CustomerInput on create: it needs its identifier in the same input."""
    consent_values: dict[str, Any] = {}
    for channel, name, identifier in (
        ("email", "emailMarketingConsent", "email"),
        ("sms", "smsMarketingConsent", "phone"),
    ):
        consent = data.get(name)
        if consent is None:
            continue
        if not values.get(identifier):
            label = "email" if channel == "email" else "phone"
            errors.append(
                _user_error([name], f"A {label} is required when setting {channel} marketing consent")
            )
        elif consent["marketingState"] not in SETTABLE_CONSENT:
            errors.append(
                _user_error([name, "marketingState"], "Marketing state is not included in the list")
            )
        else:
            consent_values.update(_consent_values(channel, consent))
    return consent_values


def _consent_values(channel: str, consent: Mapping[str, Any]) -> dict[str, Any]:
    given = consent.get("consentUpdatedAt")
    moment = datetime.fromisoformat(str(given)) if given else now_utc()
    stamp = (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).isoformat()
    return {
        f"{channel}_state": consent["marketingState"],
        f"{channel}_opt_in_level": consent.get("marketingOptInLevel") or "SINGLE_OPT_IN",
        f"{channel}_consent_updated_at": stamp,
    }


def _clean_tags(raw: Any, path: list[str]) -> tuple[list[str], list[dict[str, Any]]]:
    items = [raw] if isinstance(raw, str) else list(raw or [])
    tags: list[str] = []
    errors: list[dict[str, Any]] = []
    for item in items:
        for tag in str(item).split(","):
            tag = tag.strip()
            if not tag:
                continue
            if len(tag) > TAG_MAX_LENGTH:
                errors.append(
                    _user_error(path, f"Tags are too long (maximum is {TAG_MAX_LENGTH} characters)")
                )
            elif tag.casefold() not in {t.casefold() for t in tags}:
                tags.append(tag)
    return tags, errors


def _sorted_tags(tags: list[str]) -> list[str]:
    # Shopify answers a customer's tags in alphabetical order.
    return sorted(tags, key=str.casefold)


def _definition(connection: sa.Connection, shop_id: int, namespace: str, key: str) -> Any:
    return connection.execute(
        sa.select(definitions).where(
            definitions.c.shop_id == shop_id,
            definitions.c.owner_type == "CUSTOMER",
            definitions.c.namespace == namespace,
            definitions.c.key == key,
        )
    ).first()


def _metafields(
    connection: sa.Connection, shop_id: int, stored: Mapping[str, Any], given: list[Mapping[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Stored metafields with ``given`` upserted by namespace and key, and the userErrors."""
    merged = dict(stored)
    errors: list[dict[str, Any]] = []
    for index, metafield in enumerate(given):
        path = ["metafields", str(index)]
        namespace, key, value = metafield.get("namespace"), metafield.get("key"), metafield.get("value")
        if not namespace or not key:
            errors.append(_user_error([*path, "key"], "Namespace and key are required"))
            continue
        if value is None:
            errors.append(_user_error([*path, "value"], "Value can't be blank"))
            continue
        definition = _definition(connection, shop_id, namespace, key)
        if namespace == RESERVED_NAMESPACE and definition is None:
            errors.append(
                _user_error(
                    [*path, "namespace"],
                    f"The {namespace} namespace is reserved: enable the standard definition "
                    f"{namespace}.{key} before writing it",
                )
            )
            continue
        type_ = metafield.get("type") or (definition.type if definition else None)
        if not type_:
            errors.append(_user_error([*path, "type"], "Type can't be blank"))
            continue
        if definition is not None and type_ != definition.type:
            errors.append(
                _user_error([*path, "type"], f"Type must be {definition.type} as its definition says")
            )
            continue
        if type_ == "date" and not _is_iso_date(value):
            errors.append(_user_error([*path, "value"], "Value must be in YYYY-MM-DD format."))
            continue
        if type_ == "single_line_text_field" and ("\n" in value or len(value) > TAG_MAX_LENGTH):
            errors.append(
                _user_error([*path, "value"], "Value must be a single line of up to 255 characters.")
            )
            continue
        merged[f"{namespace}.{key}"] = {"namespace": namespace, "key": key, "type": type_, "value": value}
    return merged, errors


def _is_iso_date(value: str) -> bool:
    if not _ISO_DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _timestamp(previous: str | None) -> str:
    """Now, or a microsecond after ``previous`` when the clock has not moved past it."""
    now = now_utc()
    if previous:
        floor = datetime.fromisoformat(previous) + timedelta(microseconds=1)
        now = max(now, floor)
    return now.isoformat(timespec="microseconds")


def _save(connection: sa.Connection, current: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Write the values that differ; the stored row when something changed, else ``current`` itself."""
    changes = {k: v for k, v in values.items() if current.get(k) != v}
    if not changes:
        return current
    changes["updated_at"] = _timestamp(current["updated_at"])
    connection.execute(customers.update().where(customers.c.id == current["id"]).values(**changes))
    return {**current, **changes}


# -- what goes out ---------------------------------------------------------------------------------------


def _graphql_datetime(value: str | None) -> str | None:
    if not value:
        return None
    return datetime.fromisoformat(value).isoformat(timespec="microseconds").replace("+00:00", "Z")


def customer_node(row: Mapping[str, Any]) -> dict[str, Any]:
    """The GraphQL ``Customer`` for a stored row (the default resolvers read it by field name)."""
    gid = f"{CUSTOMER_GID}{row['id']}"
    email_node = None
    if row["email"]:
        email_node = {
            "emailAddress": row["email"],
            "marketingState": row["email_state"],
            "marketingOptInLevel": row["email_opt_in_level"],
            "marketingUpdatedAt": _graphql_datetime(row["email_consent_updated_at"]),
        }
    phone_node = None
    if row["phone"]:
        phone_node = {
            "phoneNumber": row["phone"],
            "marketingState": row["sms_state"],
            "marketingOptInLevel": row["sms_opt_in_level"],
            "marketingUpdatedAt": _graphql_datetime(row["sms_consent_updated_at"]),
            "smsMarketingConsent": {
                # The newer consent object spells "never subscribed" differently from the older enum.
                "state": "NEVER_SUBSCRIBED" if row["sms_state"] == "NOT_SUBSCRIBED" else row["sms_state"],
                "optInLevel": row["sms_opt_in_level"],
                "updatedAt": _graphql_datetime(row["sms_consent_updated_at"]),
            },
        }
    addresses = row["addresses"] or []
    default_address = None
    if addresses:
        default_address = {
            "__typename": "MailingAddress",
            "id": f"gid://shopify/MailingAddress/{row['id']}?model_name=CustomerAddress",
            "countryCodeV2": addresses[0].get("countryCode"),
        }
    return {
        "__typename": "Customer",
        "id": gid,
        "firstName": row["first_name"],
        "lastName": row["last_name"],
        "tags": list(row["tags"] or []),
        "createdAt": _graphql_datetime(row["created_at"]),
        "updatedAt": _graphql_datetime(row["updated_at"]),
        "defaultEmailAddress": email_node,
        "defaultPhoneNumber": phone_node,
        "defaultAddress": default_address,
        "_metafields": row["metafields"] or {},
    }


def _consent_payload(state: str, level: str | None, updated_at: str | None) -> dict[str, Any]:
    return {
        "state": state.lower(),
        "opt_in_level": level.lower() if level else None,
        "consent_updated_at": updated_at,
    }


def webhook_payload(row: Mapping[str, Any]) -> dict[str, Any]:
    """The customer as Shopify's REST webhook payload shows it."""
    addresses = [
        {"country_code": address.get("countryCode"), "default": index == 0}
        for index, address in enumerate(row["addresses"] or [])
    ]
    sms = None
    if row["phone"]:
        sms = {
            **_consent_payload(row["sms_state"], row["sms_opt_in_level"], row["sms_consent_updated_at"]),
            "consent_collected_from": "OTHER",
        }
    return {
        "id": row["id"],
        "admin_graphql_api_id": f"{CUSTOMER_GID}{row['id']}",
        "email": row["email"],
        "phone": row["phone"],
        "first_name": row["first_name"],
        "last_name": row["last_name"],
        "state": "disabled",
        "verified_email": False,
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "tags": ", ".join(row["tags"] or []),
        "addresses": addresses,
        "default_address": addresses[0] if addresses else None,
        "email_marketing_consent": (
            _consent_payload(row["email_state"], row["email_opt_in_level"], row["email_consent_updated_at"])
            if row["email"]
            else None
        ),
        "sms_marketing_consent": sms,
    }


def _notify(context: RequestContext, topic: str, row: Mapping[str, Any]) -> None:
    context.store.webhooks.send("shopify", topic, context.domain, webhook_payload(row))


def list_customers(store: DevStore, shop_id: int) -> list[dict[str, Any]]:
    """The shop's customers as the store's Customers page lists them, newest first."""
    with store.lock, store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(customers).where(customers.c.shop_id == shop_id).order_by(customers.c.id.desc())
        ).all()
    listing = []
    for row in rows:
        mapping = row._mapping
        name = " ".join(part for part in (mapping["first_name"], mapping["last_name"]) if part)
        listing.append(
            {
                "id": f"{CUSTOMER_GID}{mapping['id']}",
                "name": name,
                "email": mapping["email"],
                "phone": mapping["phone"],
                "email_consent": mapping["email_state"].lower() if mapping["email"] else None,
                "sms_consent": mapping["sms_state"].lower() if mapping["phone"] else None,
                "tags": list(mapping["tags"] or []),
                "updated_at": mapping["updated_at"],
            }
        )
    return listing
