"""``popsync demo``: the whole loop on a laptop with no Shopify account.

One process serves popsync and the built-in development store side by side (the store answers the Admin
API paths, popsync everything else), runs the background worker in a thread, and wires a demo shop to the
store: a submission shows up in the store's customers a moment later, at ``/devstore/customers``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import Session

from app import create_app
from app.db import get_database
from app.models import Form
from app.models import Shop
from app.platforms.devstore import DevStore
from app.platforms.devstore import create_devstore
from app.shops import create_api_key
from app.shops import register_shop
from app.storefront.demo_store import DEMO_SHOP
from app.storefront.forms import default_texts
from app.storefront.forms import validate_form

DEMO_FORM_NAME = "Welcome (demo)"
# The development store accepts this token for the demo shop only; it is not a Shopify credential.
DEMO_TOKEN = "shpat_popsync_demo_store"  # noqa: S105
DEVSTORE_PREFIXES = ("/admin/api/", "/admin/openapi/", "/admin/oauth/", "/devstore")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class PathDispatcher:
    """Send the platform's Admin API paths to the development store, everything else to popsync."""

    def __init__(self, popsync: WSGIApp, devstore: WSGIApp) -> None:
        self.popsync = popsync
        self.devstore = devstore

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        target = self.devstore if path.startswith(DEVSTORE_PREFIXES) else self.popsync
        return target(environ, start_response)


def demo_environment(port: int, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    origin = f"http://127.0.0.1:{port}"
    env.setdefault("POPSYNC_ENV", "development")
    env["APP_URL"] = origin
    env["SHOPIFY_ADMIN_ORIGIN"] = origin
    env["SHOPLINE_ADMIN_ORIGIN"] = origin
    # Webhooks from the development store are signed with these; real secrets are never needed here.
    env.setdefault("SHOPIFY_API_KEY", "popsync-demo")
    env.setdefault("SHOPIFY_API_SECRET", "popsync-demo-shopify-app-secret-0001")
    env.setdefault("SHOPLINE_APP_KEY", "popsync-demo")
    env.setdefault("SHOPLINE_APP_SECRET", "popsync-demo-shopline-app-secret-001")
    return env


def build_demo(port: int, env: dict[str, str] | None = None) -> tuple[Flask, DevStore, str, PathDispatcher]:
    """The popsync app (migrated, with the demo shop), the development store, an admin API key, and the
    WSGI app serving both."""
    from app.cli import upgrade_database

    app = create_app(demo_environment(port, env))
    settings = app.config["POPSYNC"]
    if settings.is_sqlite:
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    upgrade_database(app)
    store = DevStore(
        f"sqlite:///{Path(app.instance_path) / 'devstore.sqlite3'}",
        app_url=settings.app_url,
        webhook_secrets={"shopify": settings.shopify_api_secret, "shopline": settings.shopline_app_secret},
    )
    store.add_shop("shopify", DEMO_SHOP, DEMO_TOKEN)
    with get_database(app).write_transaction() as session:
        shop = register_shop(
            session,
            app.extensions["popsync.keyring"],
            platform="shopify",
            domain=DEMO_SHOP,
            token=DEMO_TOKEN,
            region="US",
        )
        api_key = create_api_key(session, shop)
        ensure_demo_form(session, shop)
    return app, store, api_key, PathDispatcher(app, create_devstore(store))


def ensure_demo_form(session: Session, shop: Shop) -> Form:
    """The demo shop's popup form: created once (by name), left as the person trying the demo edited it."""
    existing = session.scalar(sa.select(Form).where(Form.shop_id == shop.id, Form.name == DEMO_FORM_NAME))
    if existing is not None:
        return existing
    french = {
        "title": "Rejoignez notre liste",
        "body": "Recevez nos nouveautés et 10 % de réduction sur votre première commande.",
        "email_label": "E-mail",
        "phone_label": "Téléphone",
        "email_consent": "Oui, envoyez-moi des offres par e-mail. Je peux me désabonner à tout moment.",
        "sms_consent": "Oui, envoyez-moi des offres par SMS. Répondez STOP pour vous désabonner.",
        "submit": "S'inscrire",
        "close": "Fermer",
        "invalid_email": "Saisissez une adresse e-mail valide",
        "required": "Ce champ est obligatoire",
        "success_title": "Merci !",
        "success_body": "Vous êtes inscrit·e. Voici votre code :",
        "discount_label": "Votre code",
    }
    english = {
        **default_texts(),
        "title": "Join the tea club",
        "body": "New arrivals first, and 10% off your first order.",
        "success_body": "You're on the list. Here is your code:",
    }
    values = validate_form(
        {
            "name": DEMO_FORM_NAME,
            "template": "email_sms",
            "fields": [{"name": "email", "required": True}, {"name": "phone", "required": False}],
            "texts": {"en": english, "fr": french},
            "default_locale": "en",
            "trigger": {"type": "delay", "delay_seconds": 2, "frequency_days": 0},
            "targeting": {"match": "all", "paths": []},
            "discount_code": "WELCOME10",
            "tag": "popsync-demo",
            "active": True,
        }
    )
    form = Form(shop_id=shop.id, **values)
    session.add(form)
    session.flush()
    return form


def start_worker(app: Flask) -> threading.Event:
    """The background worker in a daemon thread of this process; set the event to stop it."""
    from app.cli import build_worker

    stop = threading.Event()
    worker = build_worker(app)
    threading.Thread(target=worker.run, kwargs={"stop": stop}, name="popsync-worker", daemon=True).start()
    return stop


def banner(port: int, api_key: str) -> str:
    origin = f"http://127.0.0.1:{port}"
    return f"""
popsync demo — the app and a development store in one process (SQLite, development mode)

  Demo storefront (the popup)    {origin}/demo/store
  Admin (contacts, forms, …)     {origin}/demo/admin
  Development store's customers  {origin}/devstore/customers
  Admin API (contacts)           curl -H 'Authorization: Bearer {api_key}' {origin}/api/v1/contacts
  Submit as a shopper            curl -X POST {origin}/storefront/submissions \\
                                   -H 'Content-Type: application/json' \\
                                   -d '{{"shop": "{DEMO_SHOP}", "email": "ann@example.com"}}'

A submission lands in the contact list at once and in the store's customers a moment later.
"""
