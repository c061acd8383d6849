"""Fixtures of the attack suite: both platforms configured with known secrets, a second shop to attack
from, and a guard that records (and refuses) every outgoing connection the app tries to make."""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from flask import Flask

from app.models import Shop
from tests.conftest import POSTGRES_URL
from tests.conftest import add_api_key
from tests.conftest import add_shop

SHOPIFY_KEY = "security-shopify-client-id"
SHOPIFY_SECRET = "shpss_security_suite_secret_0123456789"
SHOPLINE_KEY = "security-shopline-app-key"
SHOPLINE_SECRET = "shopline-security-suite-secret-0123"


@pytest.fixture
def app_extra() -> dict[str, Any]:
    return {
        "SHOPIFY_API_KEY": SHOPIFY_KEY,
        "SHOPIFY_API_SECRET": SHOPIFY_SECRET,
        "SHOPLINE_APP_KEY": SHOPLINE_KEY,
        "SHOPLINE_APP_SECRET": SHOPLINE_SECRET,
    }


def session_token(domain: str, *, secret: str = SHOPIFY_SECRET, **overrides: Any) -> str:
    """A Shopify App Bridge session token for ``domain`` (HS256 with the app's secret)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": f"https://{domain}/admin",
        "dest": f"https://{domain}",
        "aud": SHOPIFY_KEY,
        "sub": "73",
        "exp": now + 60,
        "nbf": now - 1,
        "iat": now - 1,
        "jti": "security",
        "sid": "security",
        **overrides,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


@dataclass
class Tenant:
    """A shop with its credentials."""

    shop: Shop
    api_key: str

    @property
    def key_auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def token_auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {session_token(self.shop.domain)}"}


@pytest.fixture
def mallory(app: Flask) -> Tenant:
    """The attacking shop."""
    shop = add_shop(app, "mallory.myshopify.com")
    return Tenant(shop, add_api_key(app, shop))


@pytest.fixture
def victim(app: Flask) -> Tenant:
    """The shop under attack."""
    shop = add_shop(app, "victim.myshopify.com")
    return Tenant(shop, add_api_key(app, shop))


# --- the outgoing-connection guard ----------------------------------------------------------------------


def _database_port() -> int | None:
    return sa.make_url(POSTGRES_URL).port or 5432 if POSTGRES_URL else None


@dataclass
class Outbound:
    """Every host name looked up and every address connected to, other than the test database's."""

    lookups: list[str] = field(default_factory=list)
    connections: list[Any] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.lookups or self.connections)

    def hosts(self) -> list[str]:
        return [*self.lookups, *(str(address) for address in self.connections)]


def _loopback(host: object) -> bool:
    try:
        return ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        return host == "localhost"


@pytest.fixture
def outbound(monkeypatch: pytest.MonkeyPatch) -> Outbound:
    """Refuse, and record, any connection the app opens to anything but the test database (requests,
    httpx, urllib3 and the standard library all go through these two calls)."""
    seen = Outbound()
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    database_port = _database_port()

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not (_loopback(name) and database_port is not None and port == database_port):
            seen.lookups.append(f"{name}:{port}")
            raise socket.gaierror(socket.EAI_NONAME, "outgoing connections are refused in this test")
        return real_getaddrinfo(host, port, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and not (
            _loopback(address[0]) and database_port is not None and address[1] == database_port
        ):
            seen.connections.append(address)
            raise ConnectionRefusedError("outgoing connections are refused in this test")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


@pytest.fixture
def platform() -> Any:
    from tests.fakes import MemoryPlatform

    return MemoryPlatform()


@pytest.fixture
def worker(app: Flask, platform: Any) -> Any:
    """The background worker, writing to an in-memory platform."""
    from app.db import get_database
    from app.jobs import Worker

    return Worker(
        get_database(app),
        app.config["POPSYNC"],
        app.extensions["popsync.keyring"],
        app.extensions["popsync.contacts"],
        client_factory=lambda shop: platform,
    )
