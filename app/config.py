"""Settings, read once from the environment (or from a mapping a test passes) when the app is created.

No other module reads ``os.environ``: everything configurable is a field here, documented in the README's
configuration table and in CONTRACT.md.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

DEFAULT_APP_URL = "http://127.0.0.1:8000"
_RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE_RE = re.compile(r"^\s*(\d+)\s*(?:/\s*(second|minute|hour|day)\s*)?$")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class RateLimit:
    """``limit`` requests per ``period`` seconds; ``limit == 0`` turns the limit off."""

    limit: int
    period: int

    @property
    def enabled(self) -> bool:
        return self.limit > 0


def parse_rate_limit(name: str, value: str) -> RateLimit:
    match = _RATE_RE.match(value)
    if not match:
        raise ConfigError(f"{name} must look like '20/minute' (or 0 to turn it off), not {value!r}")
    limit = int(match.group(1))
    unit = match.group(2)
    if limit and not unit:
        raise ConfigError(f"{name} needs a period, e.g. '{limit}/minute'")
    return RateLimit(limit=limit, period=_RATE_UNITS[unit] if unit else 60)


@dataclass(frozen=True)
class Settings:
    database_url: str
    secret_key: str
    secret_key_fallbacks: tuple[str, ...] = ()
    environment: str = "production"
    app_url: str = DEFAULT_APP_URL
    shopify_api_key: str = ""
    shopify_api_secret: str = ""
    # The previous secret, accepted on webhooks while Shopify rotates the app's secret.
    shopify_api_secret_previous: str = ""
    shopify_api_version: str = "2026-10"
    shopline_app_key: str = ""
    shopline_app_secret: str = ""
    shopline_api_version: str = "v20260301"
    shopify_admin_origin: str | None = None
    shopline_admin_origin: str | None = None
    submission_rate_limit: RateLimit = field(default_factory=lambda: RateLimit(20, 60))
    shop_rate_limit: RateLimit = field(default_factory=lambda: RateLimit(1200, 60))
    proxy_count: int = 0
    # Serve the demo storefront page at /demo/store (development and tests only; off in production).
    demo_storefront: bool = False
    sync_give_up_after: int = 3600
    platform_timeout: float = 10.0
    shopline_requests_per_second: float = 4.0
    worker_poll_interval: float = 0.5
    worker_lease: float = 300.0
    # Contact events older than this many days are deleted by the worker's daily pruning; 0 keeps them.
    event_retention_days: int = 400
    # The bearer token GET /metrics asks for; unset, /metrics answers 404 (docs/deploy.md).
    metrics_token: str = ""
    instance_path: str = ""

    @property
    def development(self) -> bool:
        return self.environment == "development"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_mapping(cls, env: Mapping[str, str], instance_path: str) -> Settings:
        """Build settings from ``env`` (normally ``os.environ``); raise ConfigError naming the variable."""
        environment = env.get("POPSYNC_ENV", "production").strip() or "production"
        if environment not in ("production", "development"):
            raise ConfigError(f"POPSYNC_ENV must be 'production' or 'development', not {environment!r}")

        secret_key = env.get("SECRET_KEY", "").strip()
        if not secret_key:
            if environment != "development":
                raise ConfigError("SECRET_KEY is required (or set POPSYNC_ENV=development)")
            secret_key = _development_secret_key(instance_path)
        elif len(secret_key) < 16:
            raise ConfigError("SECRET_KEY must be at least 16 characters")
        fallbacks = tuple(k.strip() for k in env.get("SECRET_KEY_FALLBACKS", "").split(",") if k.strip())

        database_url = env.get("DATABASE_URL", "").strip()
        if not database_url:
            database_url = f"sqlite:///{Path(instance_path) / 'popsync.sqlite3'}"
        if not database_url.startswith(("sqlite", "postgresql")):
            raise ConfigError("DATABASE_URL must be a sqlite:/// or postgresql+psycopg:// URL")
        if database_url.startswith("postgresql://") or database_url.startswith("postgres://"):
            # psycopg 3 is the driver we install; plain postgresql:// would ask SQLAlchemy for psycopg2.
            database_url = "postgresql+psycopg://" + database_url.split("://", 1)[1]

        return cls(
            database_url=database_url,
            secret_key=secret_key,
            secret_key_fallbacks=fallbacks,
            environment=environment,
            app_url=_origin("APP_URL", env.get("APP_URL", DEFAULT_APP_URL)),
            shopify_api_key=env.get("SHOPIFY_API_KEY", "").strip(),
            shopify_api_secret=env.get("SHOPIFY_API_SECRET", "").strip(),
            shopify_api_secret_previous=env.get("SHOPIFY_API_SECRET_PREVIOUS", "").strip(),
            shopify_api_version=env.get("SHOPIFY_API_VERSION", "2026-10").strip() or "2026-10",
            shopline_app_key=env.get("SHOPLINE_APP_KEY", "").strip(),
            shopline_app_secret=env.get("SHOPLINE_APP_SECRET", "").strip(),
            shopline_api_version=env.get("SHOPLINE_API_VERSION", "v20260301").strip() or "v20260301",
            shopify_admin_origin=_optional_origin("SHOPIFY_ADMIN_ORIGIN", env),
            shopline_admin_origin=_optional_origin("SHOPLINE_ADMIN_ORIGIN", env),
            submission_rate_limit=parse_rate_limit(
                "SUBMISSION_RATE_LIMIT", env.get("SUBMISSION_RATE_LIMIT", "20/minute")
            ),
            shop_rate_limit=parse_rate_limit("SHOP_RATE_LIMIT", env.get("SHOP_RATE_LIMIT", "1200/minute")),
            proxy_count=_non_negative_int("PROXY_COUNT", env.get("PROXY_COUNT", "0")),
            demo_storefront=_flag(
                "DEMO_STOREFRONT", env.get("DEMO_STOREFRONT", ""), environment == "development"
            ),
            sync_give_up_after=_non_negative_int("SYNC_GIVE_UP_AFTER", env.get("SYNC_GIVE_UP_AFTER", "3600")),
            platform_timeout=_positive_float("PLATFORM_TIMEOUT", env.get("PLATFORM_TIMEOUT", "10")),
            shopline_requests_per_second=_positive_float(
                "SHOPLINE_REQUESTS_PER_SECOND", env.get("SHOPLINE_REQUESTS_PER_SECOND", "4")
            ),
            worker_poll_interval=_positive_float(
                "WORKER_POLL_INTERVAL", env.get("WORKER_POLL_INTERVAL", "0.5")
            ),
            worker_lease=_positive_float("WORKER_LEASE", env.get("WORKER_LEASE", "300")),
            event_retention_days=_non_negative_int(
                "EVENT_RETENTION_DAYS", env.get("EVENT_RETENTION_DAYS", "400")
            ),
            metrics_token=_metrics_token(env.get("METRICS_TOKEN", "")),
            instance_path=instance_path,
        )


def _non_negative_int(name: str, value: str) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None
    if number < 0:
        raise ConfigError(f"{name} must not be negative")
    return number


def _metrics_token(value: str) -> str:
    value = value.strip()
    if value and len(value) < 16:
        raise ConfigError("METRICS_TOKEN must be at least 16 characters (or unset to turn /metrics off)")
    return value


def _flag(name: str, value: str, default: bool) -> bool:
    value = value.strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1 or 0 (true or false), not {value!r}")


def _positive_float(name: str, value: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name} must be more than 0")
    return number


def _origin(name: str, value: str) -> str:
    value = value.strip().rstrip("/")
    if not re.match(r"^https?://[^/\s?#]+$", value):
        raise ConfigError(f"{name} must be an origin like https://popsync.example.com, not {value!r}")
    return value


def _optional_origin(name: str, env: Mapping[str, str]) -> str | None:
    value = env.get(name, "").strip()
    return _origin(name, value) if value else None


def _development_secret_key(instance_path: str) -> str:
    """Generate a key once and keep it in the instance folder, so cookies and tokens survive restarts."""
    path = Path(instance_path) / "secret_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


def current_settings() -> Settings:
    """The settings of the app handling the current request or command."""
    from flask import current_app

    return current_app.config["POPSYNC"]
