"""``POST /webhooks/shopify`` and ``POST /webhooks/shopline``: verify the signature over the raw body,
record the delivery once (a webhook delivered twice is kept once), and answer at once; the worker does
the work. ``app/uninstalled`` is the exception: the shop's tokens are deleted in the request itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from typing import Any

from flask import Blueprint
from flask import jsonify
from flask import request

from app.config import current_settings
from app.db import get_database
from app.platforms.shopline_signing import verify_webhook as verify_shopline_signature
from app.webhooks.records import record_delivery
from app.webhooks.records import unsigned_headers_problem

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
log = logging.getLogger("popsync.webhooks")

MAX_WEBHOOK_BYTES = 2 * 1024 * 1024


def _shopify_signature_ok(body: bytes, header: str) -> bool:
    settings = current_settings()
    for secret in (settings.shopify_api_secret, settings.shopify_api_secret_previous):
        if not secret:
            continue
        expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
        # As bytes: compare_digest refuses str with non-ASCII characters, and a header may hold some.
        if hmac.compare_digest(expected.encode(), header.strip().encode("utf-8", "replace")):
            return True
    return False


def _refuse(status: int, message: str) -> Any:
    response = jsonify({"ok": False, "error": message})
    response.status_code = status
    return response


def _payload(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


@bp.post("/shopify")
def shopify_webhook() -> Any:
    """A Shopify webhook (every topic, compliance topics included): 401 unless its HMAC verifies."""
    request.max_content_length = MAX_WEBHOOK_BYTES
    body = request.get_data(cache=False)
    if not _shopify_signature_ok(body, request.headers.get("X-Shopify-Hmac-Sha256", "")):
        return _refuse(401, "the webhook's signature does not verify")
    payload = _payload(body)
    if payload is None:
        return _refuse(400, "the webhook's body is not a JSON object")
    topic = request.headers.get("X-Shopify-Topic", "")
    webhook_id = request.headers.get("X-Shopify-Webhook-Id") or request.headers.get("X-Shopify-Event-Id", "")
    domain = request.headers.get("X-Shopify-Shop-Domain", "")
    if problem := unsigned_headers_problem("shopify", topic, domain, payload):
        return _refuse(401, problem)
    outcome = record_delivery(get_database(), "shopify", webhook_id, topic, domain, payload)
    return jsonify({"ok": True, "outcome": outcome})


@bp.post("/shopline")
def shopline_webhook() -> Any:
    """A SHOPLINE webhook: 401 unless its HMAC (hex or base64) verifies with the app secret."""
    request.max_content_length = MAX_WEBHOOK_BYTES
    body = request.get_data(cache=False)
    secret = current_settings().shopline_app_secret
    signature = request.headers.get("X-Shopline-Hmac-Sha256", "")
    if not secret or not verify_shopline_signature(body, signature, secret):
        return _refuse(401, "the webhook's signature does not verify")
    payload = _payload(body)
    if payload is None:
        return _refuse(400, "the webhook's body is not a JSON object")
    topic = request.headers.get("X-Shopline-Topic", "")
    webhook_id = request.headers.get("X-Shopline-Webhook-Id", "")
    domain = request.headers.get("X-Shopline-Shop-Domain", "")
    if problem := unsigned_headers_problem("shopline", topic, domain, payload):
        return _refuse(401, problem)
    outcome = record_delivery(get_database(), "shopline", webhook_id, topic, domain, payload)
    return jsonify({"ok": True, "outcome": outcome})
