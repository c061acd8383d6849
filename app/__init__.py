"""popsync: popup forms, open and click recognition, and one contact list synced to the store's customers."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any
from typing import NoReturn

from flask import Flask
from flask import Request
from flask import Response
from flask.sessions import NullSession
from flask.sessions import SessionInterface
from flask.sessions import SessionMixin
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import Settings


class _SessionUnavailable(NullSession):
    def _fail(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError("popsync keeps nothing in Flask's session (see NoFlaskSession)")

    __setitem__ = __delitem__ = clear = pop = popitem = update = setdefault = _fail  # type: ignore[assignment]


class NoFlaskSession(SessionInterface):
    """popsync keeps nothing in Flask's session (the admin's sessions are signed cookies of its own,
    app/auth/admin_session.py). Flask would still build a signing serializer on every request to look for
    the cookie: a tenth of the open pixel's time. Any use of ``flask.session`` fails loudly instead."""

    null_session_class = _SessionUnavailable

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        return self.make_null_session(app)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        return None


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings (from ``config`` if given, else the environment), resources, blueprints, CLI.

    ``config`` is a mapping of the same names as the environment variables (tests pass one). A key
    ``DATABASE_ENGINE`` may hand in an existing SQLAlchemy engine (tests share one across apps).
    """
    source = dict(os.environ if config is None else config)
    # The instance folder comes from the settings like everything else (a test's or the demo's mapping).
    app = Flask(__name__, instance_path=source.get("POPSYNC_INSTANCE_PATH") or None)
    settings = Settings.from_mapping(source, instance_path=app.instance_path)
    app.config.update(SECRET_KEY=settings.secret_key, POPSYNC=settings, JSON_SORT_KEYS=False)
    app.session_interface = NoFlaskSession()
    from app.tracking.views import OpenPixelEndpoint

    # Innermost, inside ProxyFix and the request-id middleware: the open pixel without Flask's own costs.
    app.wsgi_app = OpenPixelEndpoint(app.wsgi_app, app)  # type: ignore[method-assign]
    if config is None:
        # A real process (gunicorn, the worker, the CLI): JSON log lines in production. Tests keep
        # pytest's handlers, and capture the lines with configure_logging when they need them.
        from app.logging_setup import configure_logging

        configure_logging(settings)
    if settings.proxy_count:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_count, x_proto=settings.proxy_count)  # type: ignore[method-assign]
    from app.ops import requests as request_context

    # Outermost: every request's id and count, whatever ProxyFix or an error page does.
    request_context.init_app(app)

    from app import db
    from app import errors
    from app.admin import api
    from app.admin import pages as admin_pages
    from app.auth import shopify as shopify_auth
    from app.auth import shopline as shopline_auth
    from app.contacts import service
    from app.crypto import Keyring
    from app.ops import views as ops
    from app.storefront import demo_store
    from app.storefront import proxy as storefront_proxy
    from app.storefront import views as storefront
    from app.tracking import views as tracking
    from app.webhooks import views as webhooks

    database = db.Database(settings.database_url, engine=source.get("DATABASE_ENGINE"))
    db.init_app(app, database)
    keyring = Keyring(settings.secret_key, settings.secret_key_fallbacks)
    app.extensions["popsync.keyring"] = keyring
    service.init_app(app, service.ContactService(database, keyring))

    app.register_blueprint(storefront.bp)
    app.register_blueprint(storefront_proxy.bp)
    app.register_blueprint(demo_store.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(admin_pages.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(shopline_auth.bp)
    app.register_blueprint(shopify_auth.bp)
    app.register_blueprint(tracking.bp)
    errors.init_app(app)
    logging.getLogger("popsync").setLevel(logging.INFO)
    return app
