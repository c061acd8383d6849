"""The ``popsync`` command line: a Flask CLI group over ``create_app``. Thin: each command calls a service.

Bad arguments and unreachable databases end in a one-line message and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from flask import Flask
from flask import current_app
from flask.cli import FlaskGroup
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from app.config import ConfigError
from app.contacts.normalize import FieldError
from app.contacts.normalize import normalize_region
from app.db import get_database
from app.enums import Platform
from app.shops import ShopError
from app.shops import create_api_key
from app.shops import find_shop
from app.shops import register_shop
from app.shops import shop_json


def migrations_dir() -> Path:
    """The Alembic folder: beside the package in a checkout, else in the working directory (the image)."""
    beside_package = Path(__file__).resolve().parent.parent / "migrations"
    return beside_package if beside_package.exists() else Path.cwd() / "migrations"


def _create_app() -> Flask:
    from app import create_app

    return create_app()


cli = FlaskGroup(
    name="popsync",
    create_app=_create_app,
    add_default_commands=False,
    add_version_option=False,
    load_dotenv=False,
    help="popsync: popup forms and a contact list synced to Shopify and SHOPLINE customers.",
)


def main() -> None:
    """The console script: run the group and turn every expected failure into one line on stderr."""
    try:
        result = cli.main(prog_name="popsync", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("popsync: aborted", err=True)
        sys.exit(1)
    except click.ClickException as error:
        click.echo(f"popsync: {error.format_message()}", err=True)
        sys.exit(error.exit_code)
    except (ConfigError, ShopError, FieldError) as error:
        click.echo(f"popsync: {error}", err=True)
        sys.exit(2)
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        click.echo(f"popsync: database error: {reason}", err=True)
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)


# --- db ----------------------------------------------------------------------------------------------


@click.group("db", help="The database schema.")
def db_group() -> None:
    pass


def alembic_config(database_url: str) -> Any:
    from alembic.config import Config

    folder = migrations_dir()
    if not (folder / "env.py").exists():
        raise click.ClickException(f"migrations not found at {folder}; run popsync from its checkout")
    config = Config()
    config.set_main_option("script_location", str(folder))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_database(app: Flask) -> None:
    from alembic import command

    database = get_database(app)
    config = alembic_config(database.url)
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@db_group.command("upgrade", help="Create or upgrade the schema of DATABASE_URL to the latest migration.")
@with_appcontext
def db_upgrade() -> None:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if app.config["POPSYNC"].is_sqlite:
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    upgrade_database(app)
    click.echo("database is up to date")


# --- shops -------------------------------------------------------------------------------------------


@click.group("shops", help="Shops and their admin API keys.")
def shops_group() -> None:
    pass


def _parse_iso(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            "must be an ISO 8601 time, e.g. 2026-12-01T10:00:00Z", param_hint=name
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@shops_group.command(
    "add", help="Register a shop with an Admin API token (running it again updates the token)."
)
@click.option("--platform", required=True, type=click.Choice([p.value for p in Platform]))
@click.option("--domain", required=True, help="name.myshopify.com or handle.myshopline.com")
@click.option("--token", required=True, help="the Admin API access token")
@click.option("--refresh-token", default=None)
@click.option("--expires-at", default=None, help="when the access token expires (ISO 8601)")
@click.option("--region", default=None, help="ISO country code national phone numbers are read in, e.g. US")
@with_appcontext
def shops_add(
    platform: str,
    domain: str,
    token: str,
    refresh_token: str | None,
    expires_at: str | None,
    region: str | None,
) -> None:
    expires = _parse_iso(expires_at, "--expires-at")
    try:
        region_code = normalize_region(region, "--region") if region is not None else None
    except FieldError as error:
        raise click.BadParameter(error.message, param_hint="--region") from None
    from app.db import utcnow
    from app.pulls import start_backfill

    with get_database().write_transaction() as session:
        shop = register_shop(
            session,
            current_app.extensions["popsync.keyring"],
            platform=platform,
            domain=domain,
            token=token,
            refresh_token=refresh_token,
            expires_at=expires,
            region=region_code,
        )
        # A shop popsync did not know (or that had uninstalled) brings its existing customers in.
        start_backfill(session, shop, utcnow())
        body = shop_json(shop)
    from app.jobs import requeue_failed

    # A restored token: the writes that failed while it was missing or revoked go out again.
    requeue_failed(get_database(), body["id"])
    click.echo(json.dumps(body, indent=2))


@shops_group.command("list", help="List the shops.")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@with_appcontext
def shops_list(as_json: bool) -> None:
    import sqlalchemy as sa

    from app.models import Shop

    with get_database().sessionmaker() as session:
        shops = [shop_json(s) for s in session.scalars(sa.select(Shop).order_by(Shop.domain))]
    if as_json:
        click.echo(json.dumps(shops, indent=2))
        return
    if not shops:
        click.echo("no shops yet: popsync shops add --platform … --domain … --token …")
        return
    for shop in shops:
        state = "installed" if shop["installed"] else "uninstalled"
        click.echo(f"{shop['domain']:<48} {shop['platform']:<9} {state:<12} region={shop['region'] or '-'}")


@shops_group.command("api-key", help="Print a new admin API key (psk_…) for a shop.")
@click.option("--domain", required=True)
@with_appcontext
def shops_api_key(domain: str) -> None:
    with get_database().write_transaction() as session:
        shop = find_shop(session, domain)
        if shop is None:
            raise click.ClickException(f"no shop {domain!r}; add it with popsync shops add")
        key = create_api_key(session, shop)
    click.echo(key)


# --- worker ------------------------------------------------------------------------------------------


def build_worker(app: Flask) -> Any:
    from app.jobs import Worker

    return Worker(
        get_database(app),
        app.config["POPSYNC"],
        app.extensions["popsync.keyring"],
        app.extensions["popsync.contacts"],
        schedule_daily=True,
    )


@click.command("worker", help="Run background jobs: platform writes and imports.")
@click.option("--until-idle", is_flag=True, help="exit 0 once nothing is due")
@with_appcontext
def worker(until_idle: bool) -> None:
    import signal
    import threading

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    processed = build_worker(current_app._get_current_object()).run(until_idle=until_idle, stop=stop)  # type: ignore[attr-defined]
    if until_idle:
        click.echo(f"{processed} jobs done; nothing is due")


# --- demo --------------------------------------------------------------------------------------------


@click.command("demo", help="The embedded default: SQLite, the built-in development store, a demo shop.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
def demo(port: int) -> None:
    from app.server import run_demo_server

    run_demo_server(port)


# --- serve -------------------------------------------------------------------------------------------


@click.command("serve", help="Serve the app with gunicorn (and the background worker unless --no-worker).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=None, type=click.IntRange(1, 256), help="default: 2 x CPU cores + 1")
@click.option("--no-worker", is_flag=True, help="do not start the background worker")
@with_appcontext
def serve(host: str, port: int, workers: int | None, no_worker: bool) -> None:
    from app.gunicorn_conf import default_workers
    from app.server import run_server

    run_server(
        host=host,
        port=port,
        workers=workers or default_workers(),
        with_worker=not no_worker,
        development=current_app.config["POPSYNC"].development,
    )


# --- tracking ----------------------------------------------------------------------------------------


@click.group("tracking", help="Open and click tracking links.")
def tracking_group() -> None:
    pass


@tracking_group.command("link", help="Print a recipient's open-pixel, click and unsubscribe URLs as JSON.")
@click.option("--domain", required=True, help="the shop: name.myshopify.com or handle.myshopline.com")
@click.option("--email", default=None, help="the recipient's email (the email channel)")
@click.option("--phone", default=None, help="the recipient's phone (the sms channel)")
@click.option("--message-id", required=True, help="the message the links are in")
@click.option("--url", default=None, help="where the click link leads (http or https)")
@click.option("--first-name", default=None, help="fills the contact's first name only when it is empty")
@click.option("--last-name", default=None, help="fills the contact's last name only when it is empty")
@with_appcontext
def tracking_link(
    domain: str,
    email: str | None,
    phone: str | None,
    message_id: str,
    url: str | None,
    first_name: str | None,
    last_name: str | None,
) -> None:
    from app.contacts.normalize import ValidationError
    from app.db import utcnow
    from app.tracking.links import link_urls
    from app.tracking.links import parse_recipient

    if bool(email) == bool(phone):
        raise click.UsageError("give either --email or --phone")
    with get_database().sessionmaker() as session:
        shop = find_shop(session, domain)
    if shop is None or not shop.installed:
        raise click.ClickException(f"no installed shop {domain!r}; add it with popsync shops add")
    body = {
        "channel": "email" if email else "sms",
        "email": email,
        "phone": phone,
        "first_name": first_name,
        "last_name": last_name,
        "message_id": message_id,
        "url": url,
    }
    try:
        link = parse_recipient(body, shop_id=shop.id, region=shop.region, now=utcnow())
    except ValidationError as error:
        name, message = next(iter(error.errors.items()))
        raise click.BadParameter(message, param_hint="--" + name.replace("_", "-")) from None
    settings = current_app.config["POPSYNC"]
    click.echo(
        json.dumps(link_urls(current_app.extensions["popsync.keyring"], settings.app_url, link), indent=2)
    )


# --- contacts ----------------------------------------------------------------------------------------


@click.group("contacts", help="Import and export the contact list as CSV.")
def contacts_group() -> None:
    pass


def _installed_shop(domain: str) -> Any:
    with get_database().sessionmaker() as session:
        shop = find_shop(session, domain)
    if shop is None or not shop.installed:
        raise click.ClickException(f"no installed shop {domain!r}; add it with popsync shops add")
    return shop


@contacts_group.command("import", help="Import a CSV of contacts (both passes here, with a progress bar).")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--domain", required=True, help="the shop: name.myshopify.com or handle.myshopline.com")
@click.option("--write-platform", is_flag=True, help="also write the platform customers (rule 9)")
@with_appcontext
def contacts_import(file: Path, domain: str, write_platform: bool) -> None:
    from app.contacts.csvio import FileRefused
    from app.imports import ImportRunner
    from app.imports import import_json
    from app.imports import save_upload
    from app.imports import start_import
    from app.imports import upload_folder
    from app.models import Import

    shop = _installed_shop(domain)
    try:
        with open(file, "rb") as source:
            path = save_upload(source, upload_folder(current_app.instance_path))
        record = start_import(
            get_database(), shop.id, path, filename=file.name, write_platform=write_platform
        )
    except OSError as error:
        raise click.ClickException(f"cannot read {file}: {error.strerror or error}") from None
    except FileRefused as error:
        raise click.ClickException(f"{file} cannot be imported: the file {error.message}") from None
    runner = ImportRunner(get_database(), current_app.extensions["popsync.contacts"])
    with click.progressbar(length=record.total, label="importing", file=sys.stderr) as bar:
        runner.run(record.id, on_batch=bar.update)
    with get_database().sessionmaker() as session:
        done = import_json(session.get(Import, record.id))  # type: ignore[arg-type]
    click.echo(
        f"import {done['id']}: {done['status']}; {done['processed']} of {done['total']} rows: "
        f"{done['created']} created, {done['updated']} updated, {done['skipped']} skipped, "
        f"{done['error_count']} errors"
    )
    for error in done["errors"][:20]:
        click.echo(f"  row {error['row']}: {error['message']}")
    if done["error_count"] > 20:
        click.echo(f"  … {done['error_count'] - 20} more: GET /api/v1/imports/{done['id']}/report.csv")
    if done["status"] != "done":
        raise click.ClickException(f"import {done['id']} {done['status']}: {done['detail']}")


@contacts_group.command("export", help="Write the shop's contacts as CSV, to a file or stdout.")
@click.option("--domain", required=True, help="the shop: name.myshopify.com or handle.myshopline.com")
@click.option("--segment", default=None, help="only the contacts of this segment (its id)")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False, path_type=Path))
@with_appcontext
def contacts_export(domain: str, segment: str | None, output: Path | None) -> None:
    from app.admin.imports import NoSuchSegment
    from app.admin.imports import export_statement
    from app.contacts.csvio import export_lines
    from app.contacts.queries import export_rows

    shop = _installed_shop(domain)
    try:
        with get_database().sessionmaker() as session:
            statement = export_statement(session, shop.id, segment=segment)
    except FieldError as error:
        raise click.BadParameter(error.message, param_hint="--" + error.field) from None
    except NoSuchSegment:
        raise click.ClickException(f"no segment {segment} in {domain}") from None
    lines = export_lines(export_rows(get_database(), statement))
    if output is None:
        out = click.get_text_stream("stdout")
        for line in lines:
            out.write(line)
        out.flush()
        return
    try:
        with open(output, "w", encoding="utf-8", newline="") as target:
            target.writelines(lines)
    except OSError as error:
        raise click.ClickException(f"cannot write {output}: {error.strerror or error}") from None


# Commands hang on the group itself, not on app.cli, so ``popsync --help`` works before any setting is.
cli.add_command(db_group)
cli.add_command(shops_group)
cli.add_command(serve)
cli.add_command(worker)
cli.add_command(demo)
cli.add_command(tracking_group)
cli.add_command(contacts_group)


if __name__ == "__main__":
    main()
