"""The Dockerfile, read as text (Docker is not needed to run this): it installs the way the README says,
runs as a non-root user, checks /healthz, serves with `popsync serve`, and never migrates on a web start.

The image itself is not built by the test suite; docs/deploy.md says how to build and run it.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

pytestmark = pytest.mark.nodb

ROOT = Path(__file__).resolve().parents[2]


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    )
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            found.append((keyword.upper(), " ".join(arguments.split())))
    return found


def command_words(arguments: str) -> list[str]:
    """An exec-form (JSON array) or shell-form CMD/ENTRYPOINT as words."""
    return json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return instructions((ROOT / "Dockerfile").read_text())


def readme_install_step() -> str:
    """The `pip install …` line of the README's "Running it" block, without its comment."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Running it", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    [line] = [line for line in block.splitlines() if line.strip().startswith("pip install")]
    return line.split("#", 1)[0].strip()


def test_it_installs_the_way_the_readme_says(dockerfile: list[tuple[str, str]]) -> None:
    step = readme_install_step()
    assert step == "pip install -e ."
    installs = [
        arguments for keyword, arguments in dockerfile if keyword == "RUN" and "pip install" in arguments
    ]
    assert installs == [step]
    copied = [arguments.split()[0] for keyword, arguments in dockerfile if keyword == "COPY"]
    # The package, what pyproject.toml needs to build it, and the migrations for the release step.
    assert {"pyproject.toml", "app", "migrations"} <= set(copied)


def test_it_is_a_slim_python_3_11_image(dockerfile: list[tuple[str, str]]) -> None:
    [base] = [arguments for keyword, arguments in dockerfile if keyword == "FROM"]
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", base)


def test_it_runs_as_a_non_root_user(dockerfile: list[tuple[str, str]]) -> None:
    users = [(index, arguments) for index, (keyword, arguments) in enumerate(dockerfile) if keyword == "USER"]
    assert users, "no USER: the processes would run as root"
    last_index, user = users[-1]
    name = user.split(":", 1)[0]
    assert name not in ("root", "0")
    # Numeric, so Kubernetes' runAsNonRoot can check it, and created by the image.
    assert name.isdigit()
    assert any(keyword == "RUN" and f"--uid {name}" in arguments for keyword, arguments in dockerfile)
    # Nothing after the switch goes back to root; the install ran before it.
    keywords_after = [keyword for keyword, _ in dockerfile[last_index + 1 :]]
    assert "RUN" not in keywords_after


def test_it_serves_with_popsync_serve_and_never_migrates_on_start(dockerfile: list[tuple[str, str]]) -> None:
    [command] = [command_words(arguments) for keyword, arguments in dockerfile if keyword == "CMD"]
    assert command[:2] == ["popsync", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0"  # noqa: S104 (inside its container)
    entrypoints = [command_words(arguments) for keyword, arguments in dockerfile if keyword == "ENTRYPOINT"]
    started = " ".join(command + [word for entrypoint in entrypoints for word in entrypoint])
    assert "upgrade" not in started
    assert "alembic" not in started
    # The release step is written down for the operator instead.
    assert "popsync db upgrade" in (ROOT / "Dockerfile").read_text()
    assert "popsync db upgrade" in (ROOT / "docs" / "deploy.md").read_text()


def test_the_health_check_asks_healthz_on_the_served_port(dockerfile: list[tuple[str, str]]) -> None:
    [check] = [arguments for keyword, arguments in dockerfile if keyword == "HEALTHCHECK"]
    assert "CMD" in check
    assert "http://127.0.0.1:8000/healthz" in check
    [command] = [command_words(arguments) for keyword, arguments in dockerfile if keyword == "CMD"]
    assert command[command.index("--port") + 1] == "8000"
    exposed = [arguments for keyword, arguments in dockerfile if keyword == "EXPOSE"]
    assert exposed == ["8000"]


def test_the_build_context_leaves_out_secrets_and_bulk() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "instance", ".env", "node_modules", "tests"} <= ignored
    # What the image copies must not be ignored.
    assert not ({"app", "migrations", "pyproject.toml", "README.md"} & ignored)
