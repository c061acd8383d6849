"""Contacts as CSV, both ways. Pure: no database, no Flask.

Reading (imports): a file's headers are matched case-insensitively against popsync's own columns, Shopify's
customer export (current and older shapes) and Smartpush's import template (docs: csv-formats.md), and each
row becomes a ``Collected`` or a ``RowError`` naming the field. Writing (exports): the contract's CSV
columns, with formula-like cells neutralised by a leading ``'`` that the reader strips again.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import re
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import IO
from typing import Any

import pycountry
from email_validator import EmailNotValidError
from email_validator import validate_email

from app.contacts.normalize import FieldError
from app.contacts.normalize import clean_text
from app.contacts.normalize import normalize_country
from app.contacts.normalize import normalize_email
from app.contacts.normalize import normalize_gender
from app.contacts.normalize import normalize_phone
from app.contacts.normalize import parse_birthday
from app.contacts.rules import Collected
from app.contacts.rules import ConsentIntent

# The contract's CSV columns, in order (export and import).
COLUMNS = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "birthday",
    "gender",
    "country",
    "email_consent",
    "sms_consent",
    "tags",
)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TAG_MAX_LENGTH = 255
# Header (lower-cased, spaces and underscores alike) -> field, per field in order of preference: the first
# non-empty one of a row wins (Shopify's "Phone" before its "Default Address Phone").
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "email": ("email", "e-mail", "email address"),
    "phone": ("phone", "phone number", "default address phone"),
    "first_name": ("first name",),
    "last_name": ("last name",),
    "birthday": ("birthday", "birth date", "date of birth"),
    "gender": ("gender",),
    # A code column before popsync's/Smartpush's "Country", which Smartpush fills with a name.
    "country": ("country code", "default address country code", "country"),
    "email_consent": ("email consent", "accepts email marketing", "accepts marketing"),
    "sms_consent": ("sms consent", "accepts sms marketing"),
    "tags": ("tags",),
    # Smartpush: the calling code of a phone number written without one.
    "calling_code": ("country/region code",),
}
CONSENT_WORDS: dict[str, ConsentIntent | None] = {
    "yes": ConsentIntent.SUBSCRIBE,
    "true": ConsentIntent.SUBSCRIBE,
    "subscribed": ConsentIntent.SUBSCRIBE,
    "unsubscribe": ConsentIntent.UNSUBSCRIBE,
    "unsubscribed": ConsentIntent.UNSUBSCRIBE,
    "no": None,
    "false": None,
    "not_subscribed": None,
    "not subscribed": None,
    # popsync's own export may say a consent is pending confirmation: not a consent the import can give.
    "pending": None,
    "": None,
}
GENDER_WORDS = {"m": "male", "f": "female", "u": "unspecified", "o": "other"}


class FileRefused(ValueError):
    """The file cannot be imported at all (pass 1): ``field`` names the form field, for a 422."""

    def __init__(self, message: str, field: str = "file") -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class RowError:
    message: str


@dataclass(frozen=True)
class Layout:
    """Where each field is in a file's rows: the delimiter and, per field, the column indexes to try."""

    delimiter: str
    columns: Mapping[str, tuple[int, ...]]

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.columns)


# --- neutralising formulas -----------------------------------------------------------------------------


def formula_like(value: str) -> bool:
    """Whether a spreadsheet may read the cell as a formula: it starts with one of ``FORMULA_STARTS``, also
    behind leading spaces (some spreadsheets trim them on import)."""
    return value.startswith(FORMULA_STARTS) or (
        value[:1] in _LEADING_BLANKS and value.lstrip(" \u00a0").startswith(FORMULA_STARTS)
    )


_LEADING_BLANKS = (" ", "\u00a0")


def neutralise(value: str) -> str:
    """A cell a spreadsheet would run as a formula gets a leading ``'`` (OWASP's CSV injection advice)."""
    return "'" + value if formula_like(value) else value


def unneutralise(value: str) -> str:
    """Undo ``neutralise``: only a ``'`` in front of a formula-like start is ours (a name like ``'t Hooft``
    keeps its apostrophe)."""
    if value.startswith("'") and formula_like(value[1:]):
        return value[1:]
    return value


# --- reading -------------------------------------------------------------------------------------------


def _header_key(header: str) -> str:
    return " ".join(header.replace("\ufeff", "").replace("_", " ").strip().lower().split())


def sniff_delimiter(header_line: str) -> str:
    """Comma or semicolon, whichever the header line has more of outside quotes (Excel in Europe: ``;``)."""
    commas = semicolons = 0
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char == ",":
            commas += 1
        elif not quoted and char == ";":
            semicolons += 1
    return ";" if semicolons > commas else ","


def layout_of(headers: Sequence[str], delimiter: str) -> Layout:
    """Map a header row to the fields it holds; ``FileRefused`` when it has neither email nor phone."""
    keys = [_header_key(h) for h in headers]
    columns: dict[str, tuple[int, ...]] = {}
    for name, aliases in HEADER_ALIASES.items():
        found = tuple(keys.index(alias) for alias in aliases if alias in keys)
        if found:
            columns[name] = found
    if "email" not in columns and "phone" not in columns:
        raise FileRefused("has no email or phone column (e.g. a header row with email, phone, first_name …)")
    return Layout(delimiter, columns)


def open_text(path: str) -> IO[str]:
    """The file as text for the csv module: UTF-8 with or without a BOM."""
    return open(path, encoding="utf-8-sig", newline="", errors="strict")


def read_layout(stream: IO[str]) -> Layout:
    """Read the header line of ``stream`` and return the file's layout (leaves ``stream`` after it)."""
    try:
        header_line = stream.readline(MAX_LINE_CHARS + 1)
    except UnicodeDecodeError:
        raise FileRefused("must be UTF-8 text (save it as \u201cCSV UTF-8\u201d)") from None
    if len(header_line) > MAX_LINE_CHARS:
        raise FileRefused(f"is not CSV text: its header row is over {MAX_LINE_CHARS // 1024} KB")
    if not header_line.strip():
        raise FileRefused("is empty: the first line must be a header row")
    if "\x00" in header_line:
        raise FileRefused("is not CSV text")
    delimiter = sniff_delimiter(header_line)
    try:
        headers = next(csv.reader([header_line], delimiter=delimiter))
    except (csv.Error, StopIteration):
        raise FileRefused("is not CSV text: its header row cannot be read") from None
    return layout_of(headers, delimiter)


def records(stream: IO[str], layout: Layout) -> Iterator[tuple[int, list[str]]]:
    """The data rows after the header, as (spreadsheet row number, cells); the header is row 1.

    A record whose quoted cell holds a newline is one spreadsheet row; an empty line is a row of its own
    that carries nothing and is left out."""
    reader = csv.reader(_bounded_lines(stream), delimiter=layout.delimiter)
    row = 1
    try:
        for cells in reader:
            row += 1
            if not cells or all(not c.strip() for c in cells):
                continue
            yield row, cells
    except UnicodeDecodeError:
        raise FileRefused(f"must be UTF-8 text (row {row + 1} is not)") from None
    except csv.Error as error:
        raise FileRefused(f"is not CSV text (row {row + 1}: {error})") from None
    except _LineTooLong:
        raise FileRefused(f"is not CSV text: row {row + 1} is over {MAX_LINE_CHARS // 1024} KB") from None


# The longest line a file may have: csv's own limit on one cell. A longer line (or a line of that many
# separators, read as that many cells) would otherwise be held in memory whole, however large.
MAX_LINE_CHARS = 128 * 1024


class _LineTooLong(Exception):
    pass


def _bounded_lines(stream: IO[str]) -> Iterator[str]:
    while line := stream.readline(MAX_LINE_CHARS + 1):
        if len(line) > MAX_LINE_CHARS:
            raise _LineTooLong
        yield line


def count_rows(path: str) -> tuple[Layout, int]:
    """Pass 1: check the whole file can be read (UTF-8, CSV, a usable header) and count its data rows,
    streaming it. ``FileRefused`` says why not."""
    try:
        with open_text(path) as stream:
            layout = read_layout(stream)
            total = sum(1 for _ in records(stream, layout))
    except UnicodeDecodeError:
        raise FileRefused("must be UTF-8 text (save it as \u201cCSV UTF-8\u201d)") from None
    if total == 0:
        raise FileRefused("has a header row but no contacts")
    return layout, total


def _cell(cells: Sequence[str], layout: Layout, name: str) -> str | None:
    for index in layout.columns.get(name, ()):
        if index < len(cells):
            value = unneutralise(cells[index]).strip()
            if value:
                return value
    return None


def parse_consent(value: str | None, field: str) -> ConsentIntent | None:
    """Rule 8's import words: yes/true/subscribed subscribe, unsubscribe(d) unsubscribes, no/false/
    not_subscribed/empty leave a contact as it is."""
    word = (value or "").strip().lower()
    if word not in CONSENT_WORDS:
        raise FieldError(field, "must be yes, no, subscribed, unsubscribed or not_subscribed")
    return CONSENT_WORDS[word]


@lru_cache(maxsize=512)
def _country_code(value: str) -> str:
    if len(value) == 2:
        return normalize_country(value) or value
    try:
        return str(pycountry.countries.lookup(value).alpha_2)
    except LookupError:
        raise FieldError("country", "must be an ISO 3166-1 alpha-2 country code or a country name") from None


def parse_tags(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    tags = []
    for part in value.split(","):
        tag = clean_text(part, "tags", max_length=TAG_MAX_LENGTH)
        if tag:
            tags.append(tag)
    return tuple(dict.fromkeys(tags))


def _phone(value: str | None, calling_code: str | None, region: str | None) -> str | None:
    if value is None:
        return None
    if value.startswith("'"):
        value = value[1:]  # Shopify's "keep it as text" prefix, even before a national number
    if calling_code and not value.lstrip().startswith(("+", "00")):
        digits = "".join(ch for ch in calling_code if ch.isdigit())
        if digits and not calling_code.strip().isalpha():
            value = f"+{digits} {value}"
        elif calling_code.strip().isalpha():
            region = calling_code.strip().upper()
    return normalize_phone(value, region)


# An address whose local part is a plain ASCII dot-atom (RFC 5322; the pattern email-validator checks
# first) and whose domain is plain ASCII letters, digits, dots and hyphens.
_PLAIN_LOCAL = re.compile(r"[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+(?:\.[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+)*\Z")
_PLAIN_DOMAIN = re.compile(r"[a-zA-Z0-9.-]+\Z")
_EMAIL_MAX_LENGTH = 254  # email-validator's limit on the whole address


@lru_cache(maxsize=4096)
def _domain_accepted(domain: str) -> bool:
    try:
        validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def _email(value: str | None) -> str | None:
    """``normalize_email`` for a cell, with the domain's verdict cached: a file holds a few thousand
    domains for a million addresses, and email-validator spends most of its time on the domain (IDNA).
    For a plain ASCII address the domain's checks do not depend on the local part, so the verdict on
    ``a@domain`` is the address's; anything else (quoted or international parts, IDNA domains, refused
    domains, for their error message) goes through ``normalize_email`` itself."""
    if value is None:
        return None
    local, at, domain = value.rpartition("@")
    if (
        at
        and len(value) <= _EMAIL_MAX_LENGTH
        and _PLAIN_LOCAL.match(local)
        and _PLAIN_DOMAIN.match(domain)
        and "xn--" not in domain.lower()
        and _domain_accepted(domain)
    ):
        return value.lower()
    return normalize_email(value)


def parse_row(
    cells: Sequence[str], layout: Layout, region: str | None, today: date | None = None
) -> Collected | RowError:
    """One data row to what it collects (rules' preamble), or the first field it gets wrong.

    A national phone number is read in the row's own country when it has one, else in the shop's region.
    A row is imported whole or not at all: one bad value makes it an error, never a half-import."""
    try:
        country_text = _cell(cells, layout, "country")
        country = _country_code(country_text) if country_text else None
        email = _email(_cell(cells, layout, "email"))
        phone = _phone(_cell(cells, layout, "phone"), _cell(cells, layout, "calling_code"), country or region)
        gender_text = _cell(cells, layout, "gender")
        if gender_text is not None:
            gender_text = GENDER_WORDS.get(gender_text.lower(), gender_text)
        return Collected(
            email=email,
            phone=phone,
            first_name=clean_text(_cell(cells, layout, "first_name"), "first_name"),
            last_name=clean_text(_cell(cells, layout, "last_name"), "last_name"),
            birthday=parse_birthday(_cell(cells, layout, "birthday"), today),
            gender=normalize_gender(gender_text),
            country=country,
            email_consent=parse_consent(_cell(cells, layout, "email_consent"), "email_consent"),
            sms_consent=parse_consent(_cell(cells, layout, "sms_consent"), "sms_consent"),
            tags=parse_tags(_cell(cells, layout, "tags")),
            # Rule 8: an import never re-subscribes a contact that unsubscribed.
            may_resubscribe=False,
        )
    except FieldError as error:
        return RowError(f"{error.field}: {error.message}")


# --- writing -------------------------------------------------------------------------------------------


def export_cells(row: Mapping[str, Any]) -> list[str]:
    """A contact (a mapping with the CSV columns' names) as the export's neutralised cells."""
    cells = []
    for name in COLUMNS:
        value = row.get(name)
        if value is None:
            text = ""
        elif name == "tags":
            text = ", ".join(value or ())
        elif isinstance(value, date):
            text = value.isoformat()
        else:
            text = str(value)
        cells.append(neutralise(text))
    return cells


def csv_lines(rows: Iterable[Sequence[str]]) -> Iterator[str]:
    """Each row as one CSV line (RFC 4180 quoting, CRLF line ends as spreadsheets expect)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


# Rows per string ``export_lines`` yields: one string per line cost as much as writing the line.
_LINES_PER_CHUNK = 500


def _csv_chunks(rows: Iterable[Sequence[str]]) -> Iterator[str]:
    """The rows as CSV (as ``csv_lines``), a few hundred lines per string."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    chunk: list[Sequence[str]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == _LINES_PER_CHUNK:
            writer.writerows(chunk)
            chunk.clear()
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if chunk:
        writer.writerows(chunk)
        yield buffer.getvalue()


def _text_cell(value: str | None) -> str:
    if value is None:
        return ""
    # Most cells start with a letter or a digit: one set look-up decides them (``formula_like`` for the rest).
    if value[:1] not in _FORMULA_OR_BLANK_FIRST:
        return value
    return "'" + value if formula_like(value) else value


_FORMULA_OR_BLANK_FIRST = frozenset(FORMULA_STARTS) | frozenset(_LEADING_BLANKS) | {""}


def _row_cells(row: Sequence[Any]) -> tuple[str, ...]:
    """A row of ``queries.EXPORT_COLUMNS`` (the id, then the CSV columns) as neutralised cells: what
    ``export_cells`` does, unrolled for speed (it runs once per exported contact)."""
    _, email, phone, first_name, last_name, birthday, gender, country, email_consent, sms_consent, tags = row
    return (
        _text_cell(email),
        _text_cell(phone),
        _text_cell(first_name),
        _text_cell(last_name),
        birthday.isoformat() if birthday is not None else "",
        _text_cell(gender),
        _text_cell(country),
        _text_cell(email_consent),
        _text_cell(sms_consent),
        _tags_cell(tags),
    )


def _tags_cell(tags: str | Sequence[str] | None) -> str:
    """The tags cell from the list or from its JSON text (``queries.EXPORT_COLUMNS`` reads it as text)."""
    if isinstance(tags, str):
        tags = json.loads(tags) if tags != "[]" else None
    return _text_cell(", ".join(tags)) if tags else ""


def export_lines(contacts: Iterable[Mapping[str, Any] | Sequence[Any]]) -> Iterator[str]:
    """The export's header line, then the contacts' lines (several per string). A contact is a mapping
    with the CSV columns' names, or a row of the contact's id and then the CSV columns in order (what
    ``queries.export_rows`` reads: the fast way)."""
    yield from csv_lines([COLUMNS])
    rows = iter(contacts)
    first = next(rows, None)
    if first is None:
        return
    # Every contact of one export has the same shape: the first one chooses (an ABC check per row cost
    # a tenth of the export's time).
    cells: Callable[[Any], Sequence[str]] = export_cells if isinstance(first, Mapping) else _row_cells
    yield from _csv_chunks(map(cells, itertools.chain((first,), rows)))


def utf8_bytes(lines: Iterable[str]) -> Iterator[bytes]:
    """Encode streamed lines in chunks of about 64 KB (one write per line would be slow to send)."""
    encoder = codecs.getincrementalencoder("utf-8")()
    chunk: list[str] = []
    size = 0
    for line in lines:
        chunk.append(line)
        size += len(line)
        if size >= 65536:
            yield encoder.encode("".join(chunk))
            chunk, size = [], 0
    yield encoder.encode("".join(chunk), final=True)
