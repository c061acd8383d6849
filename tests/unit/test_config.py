"""Settings come from the environment once, with clear errors naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import ConfigError
from app.config import RateLimit
from app.config import Settings

pytestmark = pytest.mark.nodb


def test_defaults(tmp_path: Path) -> None:
    settings = Settings.from_mapping({"SECRET_KEY": "x" * 32}, str(tmp_path))
    assert settings.database_url == f"sqlite:///{tmp_path / 'popsync.sqlite3'}"
    assert settings.app_url == "http://127.0.0.1:8000"
    assert settings.shopify_api_version == "2026-10"
    assert settings.shopline_api_version == "v20260301"
    assert settings.submission_rate_limit == RateLimit(20, 60)
    assert settings.shop_rate_limit == RateLimit(1200, 60)
    assert settings.proxy_count == 0
    assert settings.sync_give_up_after == 3600
    assert settings.environment == "production"
    assert settings.platform_timeout == 10.0
    assert settings.worker_lease == 300.0
    assert settings.shopline_requests_per_second == 4.0


def test_worker_settings_are_read(tmp_path: Path) -> None:
    settings = Settings.from_mapping(
        {"SECRET_KEY": "k" * 32, "WORKER_LEASE": "2", "WORKER_POLL_INTERVAL": ".05", "PLATFORM_TIMEOUT": "2"},
        str(tmp_path),
    )
    assert settings.worker_lease == 2.0
    assert settings.worker_poll_interval == 0.05
    assert settings.platform_timeout == 2.0


def test_secret_key_is_required_in_production(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        Settings.from_mapping({}, str(tmp_path))


def test_development_generates_a_secret_key_once_and_keeps_it(tmp_path: Path) -> None:
    first = Settings.from_mapping({"POPSYNC_ENV": "development"}, str(tmp_path))
    second = Settings.from_mapping({"POPSYNC_ENV": "development"}, str(tmp_path))
    assert len(first.secret_key) >= 32
    assert first.secret_key == second.secret_key
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SUBMISSION_RATE_LIMIT", "lots"),
        ("SHOP_RATE_LIMIT", "10"),
        ("PROXY_COUNT", "-1"),
        ("SYNC_GIVE_UP_AFTER", "soon"),
        ("APP_URL", "popsync.example.com"),
        ("DATABASE_URL", "mysql://x"),
        ("POPSYNC_ENV", "staging"),
    ],
)
def test_bad_values_name_their_variable(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_mapping({"SECRET_KEY": "x" * 32, name: value}, str(tmp_path))


def test_rate_limits_parse_and_zero_turns_them_off(tmp_path: Path) -> None:
    settings = Settings.from_mapping(
        {"SECRET_KEY": "x" * 32, "SUBMISSION_RATE_LIMIT": "5/second", "SHOP_RATE_LIMIT": "0"}, str(tmp_path)
    )
    assert settings.submission_rate_limit == RateLimit(5, 1)
    assert not settings.shop_rate_limit.enabled


def test_plain_postgresql_urls_use_psycopg3(tmp_path: Path) -> None:
    settings = Settings.from_mapping(
        {"SECRET_KEY": "x" * 32, "DATABASE_URL": "postgresql://root@127.0.0.1/test"}, str(tmp_path)
    )
    assert settings.database_url == "postgresql+psycopg://root@127.0.0.1/test"
