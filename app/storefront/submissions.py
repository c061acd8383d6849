"""What both submission routes do once they know the shop and the client (``/storefront/submissions`` with
CORS, ``/proxy/submissions`` through Shopify's signed app proxy): rate limits, bot checks, validation, the
form's tag and the consent evidence, the sync, and the form's daily count.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from typing import Any
from typing import Protocol

import sqlalchemy as sa
from flask import abort
from flask import request
from sqlalchemy.orm import Session

from app.config import current_settings
from app.contacts.normalize import ValidationError
from app.contacts.normalize import collect_submission
from app.contacts.service import get_service
from app.db import connection_of
from app.db import end_read_session
from app.db import get_database
from app.db import utcnow
from app.enums import Source
from app.models import Form
from app.prepared import run
from app.storefront import stats
from app.storefront.rate_limit import Limit
from app.storefront.rate_limit import get_rate_limiter

log = logging.getLogger("popsync.storefront")

MAX_BODY_BYTES = 64 * 1024
_EVIDENCE_TEXT_LIMIT = 2048
# A person needs more than this to read a popup and type an address; scripts post at once.
MIN_FILL_MILLISECONDS = 1500
HONEYPOT_FIELD = "website"


class SubmittingShop(Protocol):
    """What a submission needs of its shop (a ``Shop`` row, or the storefront route's lighter read)."""

    @property
    def id(self) -> int: ...

    @property
    def region(self) -> str | None: ...


@dataclass(frozen=True)
class Answer:
    """What to answer: the JSON body, the status and any extra headers (the route adds CORS)."""

    body: dict[str, Any]
    status: int
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


def read_json_body() -> dict[str, Any]:
    """The request's JSON object (whatever its Content-Type: beacons send text/plain); 400 or 413."""
    request.max_content_length = MAX_BODY_BYTES
    raw = request.get_data(cache=False)  # 413 past the limit
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        abort(400, description="the body must be a JSON object")
    if not isinstance(body, dict):
        abort(400, description="the body must be a JSON object")
    return body


def over_limit(kind: str, shop: SubmittingShop, client: str) -> Answer | None:
    """Count one request of ``kind`` for the client and the shop; a 429 answer when either is over."""
    settings = current_settings()
    if not (settings.submission_rate_limit.enabled or settings.shop_rate_limit.enabled):
        return None
    end_read_session()  # the counters commit in their own short transaction
    verdict = get_rate_limiter().hit(
        [
            Limit(f"{kind}:client:{client}", settings.submission_rate_limit),
            Limit(f"{kind}:shop:{shop.id}", settings.shop_rate_limit),
        ]
    )
    if verdict.allowed:
        return None
    who = "this shop" if verdict.refused_by and ":shop:" in verdict.refused_by else "this address"
    return Answer(
        {"ok": False, "error": f"too many requests from {who}; try again later"},
        429,
        {"Retry-After": str(verdict.retry_after)},
    )


def looks_automated(body: dict[str, Any]) -> str | None:
    """Why the submission looks like a bot's (a filled honeypot, filled too fast), or None."""
    honeypot = body.get(HONEYPOT_FIELD)
    if honeypot not in (None, "", False):
        return "honeypot filled"
    elapsed = body.get("elapsed_ms")
    if (
        isinstance(elapsed, (int, float))
        and not isinstance(elapsed, bool)
        and elapsed < MIN_FILL_MILLISECONDS
    ):
        return "filled too fast"
    return None


def accept_submission(
    body: dict[str, Any], shop: SubmittingShop, client: str, *, customer_id: str | None = None
) -> Answer:
    """Limits, bot checks, validation, then the sync, committed before the answer (the contract's answers).

    ``customer_id`` is a platform customer id the platform vouched for (the app proxy's signed
    ``logged_in_customer_id``): with no email or phone collected it identifies the shopper (rule 1).
    """
    refused = over_limit("submissions", shop, client)
    if refused is not None:
        return refused
    reason = looks_automated(body)
    if reason is not None:
        # No personal data in the log: the shop and the reason only.
        log.info("submission for shop %s not synced: %s", shop.id, reason)
        return Answer({"ok": True}, 200)
    try:
        collected = collect_submission(body, shop.region)
    except ValidationError as error:
        return Answer({"ok": False, "errors": error.errors}, 422)

    if customer_id:
        collected = dataclasses.replace(collected, customer_id=customer_id)
    shop_id = shop.id
    form_id = parse_form_id(body.get("form_id"))
    evidence = submission_evidence(body, client)
    end_read_session()  # the sync runs in its own write transaction

    # One transaction for the form's tag, the contact, its event, its platform write and the form's daily
    # count. The form row is share-locked as it is read: a form deleted meanwhile is not counted and its tag
    # not applied, and the submission it no longer belongs to never fails.
    service = get_service()
    with get_database().write_transaction() as session:
        form = _locked_form(session, shop_id, form_id)
        if form is not None and form.tag:
            collected = dataclasses.replace(collected, tags=(*collected.tags, form.tag))
        # The form's daily count goes with the sync's writes (one round trip).
        counts = []
        if form is not None:
            counts.append(stats.count_statement(connection_of(session), form.id, "submissions"))
        service.sync_in_transaction(
            session, shop_id, [collected], source=Source.FORM, evidence=[evidence], then_write=counts
        )
    return Answer({"ok": True}, 200)


def _locked_form(session: Session, shop_id: int, form_id: int | None) -> Any:
    """The shop's form (its id and tag), share-locked until the transaction ends; None if there is none."""
    if form_id is None:
        return None
    connection = connection_of(session)
    return run(connection, _LOCKED_FORM, {"shop_id": shop_id, "form_id": form_id}).first()


_FORMS: sa.Table = Form.__table__  # type: ignore[assignment]
# Built once (app/db.py, PerDialect says why); SQLite compiles FOR SHARE to nothing (BEGIN IMMEDIATE holds
# the only write lock there is).
_LOCKED_FORM = (
    sa.select(_FORMS.c.id, _FORMS.c.tag)
    .where(
        _FORMS.c.shop_id == sa.bindparam("shop_id", type_=_FORMS.c.shop_id.type),
        _FORMS.c.id == sa.bindparam("form_id", type_=_FORMS.c.id.type),
    )
    .with_for_update(read=True)
)


def parse_form_id(value: Any) -> int | None:
    """A form id as the script sends it ("7" or 7); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value < 2**63 else None
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 19:
        return int(value.strip())
    return None


def submission_evidence(body: dict[str, Any], client: str) -> dict[str, Any]:
    """The consent evidence a submission keeps on its event: form, text shown, page, time, client."""

    def text(value: Any) -> str | None:
        return value.strip()[:_EVIDENCE_TEXT_LIMIT] if isinstance(value, str) and value.strip() else None

    form_id = body.get("form_id")
    email_consent = body.get("email_consent") is True
    sms_consent = body.get("sms_consent") is True
    # Older scripts sent one ``consent_text``; the text shown next to each ticked box is what counts.
    legacy_text = text(body.get("consent_text"))
    evidence = {
        "form_id": text(str(form_id))
        if isinstance(form_id, (str, int)) and not isinstance(form_id, bool)
        else None,
        "email_consent": email_consent,
        "sms_consent": sms_consent,
        "email_consent_text": (text(body.get("email_consent_text")) or legacy_text)
        if email_consent
        else None,
        "sms_consent_text": (text(body.get("sms_consent_text")) or legacy_text) if sms_consent else None,
        "locale": text(body.get("locale")),
        "page_url": text(body.get("page_url")) or text(request.headers.get("Referer")),
        "submitted_at": utcnow().isoformat(),
        "client_ip": client,
    }
    return {key: value for key, value in evidence.items() if value is not None}
