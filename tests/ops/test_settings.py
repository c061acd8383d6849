"""The operations settings: EVENT_RETENTION_DAYS and METRICS_TOKEN."""

from __future__ import annotations

import pytest

from app.config import ConfigError
from app.config import Settings

pytestmark = pytest.mark.nodb

BASE = {"SECRET_KEY": "k" * 32}


def settings(**env: str) -> Settings:
    return Settings.from_mapping({**BASE, **env}, instance_path="/tmp/popsync-settings-test")


def test_defaults() -> None:
    defaults = settings()
    assert defaults.event_retention_days == 400
    assert defaults.metrics_token == ""


def test_values() -> None:
    assert settings(EVENT_RETENTION_DAYS=" 30 ").event_retention_days == 30
    assert settings(EVENT_RETENTION_DAYS="0").event_retention_days == 0
    assert settings(METRICS_TOKEN=" t" * 10).metrics_token == ("t " * 10).strip()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"EVENT_RETENTION_DAYS": "-1"}, "EVENT_RETENTION_DAYS"),
        ({"EVENT_RETENTION_DAYS": "a year"}, "EVENT_RETENTION_DAYS"),
        ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        settings(**env)
