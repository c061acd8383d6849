"""A SHOPLINE store's webhook subscriptions, kept through the Open API (reference/shopline.md §2.1).

SHOPLINE subscribes an app per store: ``GET/POST /admin/openapi/<version>/webhooks.json``, ``PUT`` and
``DELETE /admin/openapi/<version>/<id>/webhooks.json``, with the store's access token. A subscription
whose deliveries fail 19 times in a row is deleted by SHOPLINE (§2.4), so ``ensure_subscriptions`` is run at
install and again every day (``check_shop`` does it for one shop): it lists what the store has, creates
what is missing and points a subscription of ours at another address back at the app. Running it again
changes nothing.

Like the customer client, this never sleeps and never retries: it takes one request from the shop's shared
budget before each call and raises ``RetryLater`` (throttled, 5xx, unreachable) or ``AuthFailed`` (401);
a topic SHOPLINE refuses (another 4xx) is reported in the result and the other topics go ahead. Messages
never carry the token.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import TYPE_CHECKING
from typing import Any
from urllib.parse import quote

import requests

from app.enums import Platform
from app.platforms.base import AuthFailed
from app.platforms.base import FailedForGood
from app.platforms.base import RetryLater
from app.platforms.http import DEFAULT_TIMEOUT
from app.platforms.shopline import BUCKET_CAPACITY
from app.platforms.shopline import ERROR_WAIT
from app.platforms.shopline import RESTORE_RATE
from app.platforms.shopline import ShoplineClient

if TYPE_CHECKING:
    from app.config import Settings
    from app.crypto import Keyring
    from app.db import Database
    from app.models import Shop
    from app.platforms.budget import RateBudget

log = logging.getLogger("popsync.platforms.shopline")

# What popsync listens to (§2.5): customer changes and unsubscribes, the app's install state, and the two
# mandatory privacy topics (SHOPLINE has no customers/data_request).
TOPICS: tuple[str, ...] = (
    "customers/create",
    "customers/update",
    "customers/delete",
    "customers_marketing_consent/update",
    "apps/installed_uninstalled",
    "customers/redact",
    "merchants/redact",
)
WEBHOOK_PATH = "/webhooks/shopline"


def webhook_address(app_url: str) -> str:
    """Where SHOPLINE delivers popsync's webhooks: ``<APP_URL>/webhooks/shopline``."""
    return app_url.rstrip("/") + WEBHOOK_PATH


@dataclass(frozen=True)
class Subscription:
    id: int | str
    topic: str
    address: str
    api_version: str | None = None


@dataclass
class SubscriptionChanges:
    """What ``ensure_subscriptions`` did: subscriptions created, subscriptions pointed back at the app,
    and the topics SHOPLINE refused, with its reason."""

    created: list[Subscription] = field(default_factory=list)
    updated: list[Subscription] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)


def _subscription(payload: Any) -> Subscription | None:
    if not isinstance(payload, dict):
        return None
    topic, address, webhook_id = payload.get("topic"), payload.get("address"), payload.get("id")
    if not isinstance(topic, str) or not isinstance(address, str) or webhook_id in (None, ""):
        return None
    version = payload.get("api_version")
    return Subscription(webhook_id, topic, address, version if isinstance(version, str) else None)


class ShoplineWebhookApi(ShoplineClient):
    """One store's webhook subscriptions through the Open API: the customer client's transport (shared
    budget, headers, error mapping, origin rewrite) with the subscription endpoints."""

    subject = "webhook"

    def __init__(
        self,
        *,
        domain: str,
        access_token: str,
        api_version: str,
        admin_origin: str | None,
        shop_id: int | None = None,
        budget: RateBudget | None = None,
        session: requests.Session | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        bucket_capacity: float = BUCKET_CAPACITY,
        restore_rate: float = RESTORE_RATE,
    ) -> None:
        if budget is not None and shop_id is None:
            raise ValueError("a shared budget needs the shop's id")
        super().__init__(
            domain=domain,
            access_token=access_token,
            api_version=api_version,
            admin_origin=admin_origin,
            shop_id=shop_id or 0,
            budget=budget,
            session=session,
            timeout=timeout,
            bucket_capacity=bucket_capacity,
            restore_rate=restore_rate,
        )

    def __repr__(self) -> str:
        return f"ShoplineWebhookApi(domain={self.domain!r}, api_version={self.api_version!r})"

    @classmethod
    def for_shop(
        cls,
        shop: Shop,
        *,
        settings: Settings,
        keyring: Keyring,
        budget: RateBudget | None = None,
        session: requests.Session | None = None,
    ) -> ShoplineWebhookApi:
        """The API for an installed SHOPLINE shop, with its stored token; AuthFailed when it has none."""
        from app.platforms import shopline_options
        from app.shops import access_token

        if shop.platform != Platform.SHOPLINE:
            raise ValueError("webhook subscriptions through the Open API are SHOPLINE's")
        token = access_token(shop, keyring)
        if not token:
            raise AuthFailed("the store has no access token: it needs to be installed again")
        return cls(**shopline_options(shop, token, settings=settings, budget=budget, session=session))

    # -- the endpoints ---------------------------------------------------------------------------------

    def subscriptions(self) -> list[Subscription]:
        """Every subscription the app has on this store."""
        data = self._request("GET", "webhooks.json", "list")
        items = data.get("webhooks")
        if not isinstance(items, list):
            raise RetryLater("SHOPLINE answered the webhook list without the webhooks", ERROR_WAIT)
        return [sub for sub in map(_subscription, items) if sub is not None]

    def create(self, topic: str, address: str) -> Subscription:
        body = {"webhook": {"topic": topic, "address": address, "api_version": self.api_version}}
        data = self._request("POST", "webhooks.json", f"subscription to {topic}", body=body)
        created = _subscription(data.get("webhook"))
        if created is None:
            # The subscription may exist now; the next check lists before creating again.
            raise RetryLater(f"SHOPLINE answered the subscription to {topic} without it", ERROR_WAIT)
        return created

    def update_address(self, webhook_id: int | str, address: str) -> Subscription:
        path = f"{quote(str(webhook_id), safe='')}/webhooks.json"
        data = self._request("PUT", path, "subscription update", body={"webhook": {"address": address}})
        updated = _subscription(data.get("webhook"))
        if updated is None:
            raise RetryLater("SHOPLINE answered the subscription update without it", ERROR_WAIT)
        return updated

    def delete(self, webhook_id: int | str) -> None:
        self._request("DELETE", f"{quote(str(webhook_id), safe='')}/webhooks.json", "unsubscribe")

    def _request(
        self, method: str, path: str, what: str, *, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        response = self._call(method, self._endpoint(path), what, body=body)
        self._check(response, what)
        return self._json(response, what)


def ensure_subscriptions(
    api: ShoplineWebhookApi, topics: Sequence[str] = TOPICS, address: str | None = None
) -> SubscriptionChanges:
    """Make the store deliver every topic in ``topics`` to ``address``: list its subscriptions, create the
    missing ones, and point a subscription to one of these topics at another address (an old APP_URL)
    back at ``address``. Idempotent. RetryLater/AuthFailed stop the check (what was done stays done); a
    topic SHOPLINE refuses is recorded in ``failed`` and the others go ahead."""
    if not address:
        raise ValueError("the webhook address is required")
    changes = SubscriptionChanges()
    existing = api.subscriptions()
    for topic in dict.fromkeys(topics):
        mine = [sub for sub in existing if sub.topic == topic]
        if any(sub.address == address for sub in mine):
            continue
        try:
            if mine:
                # The app's own subscription with a stale address: fix it rather than deliver twice.
                changes.updated.append(api.update_address(mine[0].id, address))
            else:
                changes.created.append(api.create(topic, address))
        except FailedForGood as error:
            changes.failed[topic] = str(error)
    if changes.changed or changes.failed:
        log.info(
            "SHOPLINE webhooks of %s: %d created, %d re-addressed, refused: %s",
            api.domain,
            len(changes.created),
            len(changes.updated),
            ", ".join(changes.failed) or "none",
        )
    return changes


def _checkable(shop: Shop | None) -> bool:
    return (
        shop is not None
        and shop.platform == Platform.SHOPLINE
        and shop.installed
        and not shop.needs_reauth
        and bool(shop.access_token)
    )


def check_shop(
    db: Database,
    settings: Settings,
    keyring: Keyring,
    shop_id: int,
    *,
    budget: RateBudget | None = None,
    session: requests.Session | None = None,
) -> SubscriptionChanges | None:
    """The daily re-check for one shop: refresh its token if it is due (app.platforms.tokens), then
    ``ensure_subscriptions`` to ``<APP_URL>/webhooks/shopline``. None for a shop that is gone, uninstalled,
    not SHOPLINE's, waiting for re-authorisation or without a token. Raises RetryLater/AuthFailed like the
    API and the refresh do."""
    from app.models import Shop
    from app.platforms.tokens import refresh_if_due

    with db.sessionmaker() as read:
        if not _checkable(read.get(Shop, shop_id)):
            return None
    refresh_if_due(db, keyring, settings, shop_id, session=session)
    with db.sessionmaker() as read:
        shop = read.get(Shop, shop_id)
        if shop is None or not _checkable(shop):
            return None
        api = ShoplineWebhookApi.for_shop(
            shop, settings=settings, keyring=keyring, budget=budget, session=session
        )
    try:
        return ensure_subscriptions(api, TOPICS, webhook_address(settings.app_url))
    finally:
        api.close()
