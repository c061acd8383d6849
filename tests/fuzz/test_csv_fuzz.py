"""Hypothesis over the CSV importer's reading (app/contacts/csvio.py): pass 1 (``count_rows``: is the saved
upload readable, and how many rows) and the row parsing pass 2 does (``read_layout``, ``records``,
``parse_row``). Whatever a merchant uploads — any bytes, UTF-8 with or without a BOM, UTF-16, Latin-1,
commas, semicolons, tabs or pipes, stray quotes, huge cells, NULs, CR-only line ends — the file is either
refused with a ``FileRefused`` whose message says why, or every data row becomes a ``Collected`` or a
``RowError`` naming its field; nothing else is raised, and pass 2 reads the rows pass 1 counted.
Reading streams: a large file is never held in memory whole.

tests/unit/test_csvio.py has the formats' tables (Shopify, Smartpush, BOM, semicolons, quoted newlines);
this generates the files.
"""

from __future__ import annotations

import csv
import tracemalloc
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from app.contacts import csvio
from app.contacts.csvio import FileRefused
from app.contacts.csvio import RowError
from app.contacts.rules import Collected

pytestmark = pytest.mark.nodb

FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
TODAY = date(2026, 11, 30)
# The fields a RowError may name: parse_row's own and those of the normalisers it calls.
ROW_FIELDS = ("email", "phone", "first_name", "last_name", "birthday", "gender", "country", "tags")
ROW_FIELDS += ("email_consent", "sms_consent")

headers = st.sampled_from(
    [
        "email",
        "Email",
        " E-mail ",
        "phone",
        "Phone Number",
        "Default Address Phone",
        "first_name",
        "Last Name",
        "birthday",
        "Gender",
        "country",
        "Country Code",
        "Accepts Email Marketing",
        "sms_consent",
        "tags",
        "Country/Region Code",
        "notes",
        "",
    ]
)
cells = st.one_of(
    st.sampled_from(
        [
            "ann@example.com",
            "ANN@Example.COM",
            "'+14155552671",
            "(415) 555-2671",
            "0044 20 7946 0958",
            "Ann",
            "'t Hooft",
            '=HYPERLINK("x")',
            "1990-04-01",
            "1990/02/30",
            "f",
            "Netherlands",
            "NL",
            "yes",
            "unsubscribed",
            "maybe",
            "vip, new",
            "",
            " ",
        ]
    ),
    st.text(max_size=30),
    st.text(
        alphabet=st.sampled_from(['"', ",", ";", "\n", "\r", "\x00", "\t", "|", "\ufeff", "é"]), max_size=12
    ),
)
separators = st.sampled_from([",", ",", ";", "\t", "|"])
line_ends = st.sampled_from(["\n", "\r\n", "\r"])
encodings = st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-16-le", "latin-1", "cp1252"])


def quote(cell: str, separator: str) -> str:
    """As a spreadsheet writes it, or now and then left raw (stray quotes and separators stay)."""
    if any(ch in cell for ch in (separator, '"', "\n", "\r")):
        return '"' + cell.replace('"', '""') + '"'
    return cell


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    separator = draw(separators)
    line_end = draw(line_ends)
    columns = draw(st.lists(headers, min_size=1, max_size=6))
    rows = draw(st.lists(st.lists(cells, min_size=0, max_size=len(columns) + 1), max_size=6))
    raw = draw(st.booleans())
    lines = [separator.join(columns)]
    for row in rows:
        lines.append(separator.join(cell if raw else quote(cell, separator) for cell in row))
    text = line_end.join(lines) + draw(st.sampled_from(["", line_end]))
    data = text.encode(draw(encodings), errors="replace")
    # Now and then a hostile twist: a NUL, a cut in the middle of a character, junk at the end.
    twist = draw(st.sampled_from(["none", "none", "nul", "cut", "junk"]))
    if twist == "nul":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + b"\x00" + data[at:]
    elif twist == "cut" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif twist == "junk":
        data += draw(st.binary(min_size=1, max_size=16))
    return data


def read_file(path: Path) -> tuple[csvio.Layout, int] | FileRefused:
    """Pass 1's verdict: the layout and the row count, or the refusal (any other exception fails)."""
    try:
        return csvio.count_rows(str(path))
    except FileRefused as refused:
        return refused


def parsed_rows(path: Path) -> Iterator[tuple[int, Collected | RowError]]:
    """What pass 2 reads, row by row (app/contacts/import_rows.py does the same in batches)."""
    with csvio.open_text(str(path)) as stream:
        layout = csvio.read_layout(stream)
        for row, row_cells in csvio.records(stream, layout):
            yield row, csvio.parse_row(row_cells, layout, "US", TODAY)


def check_the_import_of(path: Path) -> None:
    verdict = read_file(path)
    if isinstance(verdict, FileRefused):
        assert verdict.field == "file"
        assert verdict.message.strip()
        return
    _, total = verdict
    assert total >= 1
    rows = list(parsed_rows(path))
    assert len(rows) == total  # pass 2 imports exactly what pass 1 counted
    numbers = [row for row, _ in rows]
    assert numbers == sorted(set(numbers))
    assert numbers[0] >= 2  # the header is row 1
    for _, item in rows:
        if isinstance(item, RowError):
            assert item.message.split(":", 1)[0] in ROW_FIELDS, item.message
        else:
            assert isinstance(item, Collected)
            assert item.may_resubscribe is False  # rule 8: an import never re-subscribes


@FUZZ
@given(data=csv_files())
def test_a_generated_csv_is_refused_clearly_or_read_row_by_row(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("csv") / "upload.csv"
    path.write_bytes(data)
    check_the_import_of(path)


@FUZZ
@given(data=st.binary(max_size=300) | st.binary(max_size=40).map(lambda b: b"email,phone\n" + b))
def test_any_bytes_are_refused_clearly_or_read_row_by_row(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("csv") / "upload.csv"
    path.write_bytes(data)
    check_the_import_of(path)


@pytest.mark.parametrize(
    ("content", "refusal"),
    [
        ("\ufeffemail\n".encode("utf-16"), "UTF-8"),  # UTF-16 with its BOM
        ("email\nann@example.com\n".encode("utf-16-le"), "CSV"),  # UTF-16 without: NULs in the header
        ("email,name\nann@example.com,Jos\u00e9\n".encode("latin-1"), "UTF-8"),
        (b"email\n" + b'"' + b"x" * (csv.field_size_limit() + 10) + b'"\n', "CSV"),  # a cell past the limit
        (b"email\r\r\r", "no contacts"),  # CR-only line ends, no data row
    ],
)
def test_what_cannot_be_imported_says_why(tmp_path: Path, content: bytes, refusal: str) -> None:
    path = tmp_path / "upload.csv"
    path.write_bytes(content)
    with pytest.raises(FileRefused, match=refusal):
        csvio.count_rows(str(path))


def test_cr_only_line_ends_and_a_bom_read_like_any_other(tmp_path: Path) -> None:
    path = tmp_path / "upload.csv"
    path.write_bytes("\ufeffemail;first_name\rann@example.com;Ann\r\rbo@example.com;Bo".encode())
    assert csvio.count_rows(str(path))[1] == 2
    assert [(row, item.email) for row, item in parsed_rows(path) if isinstance(item, Collected)] == [
        (2, "ann@example.com"),
        (4, "bo@example.com"),
    ]


def peak_memory_reading(path: Path) -> int:
    """The most memory pass 1 and pass 2's reading hold at once (parsing a row holds only that row)."""
    tracemalloc.start()
    try:
        csvio.count_rows(str(path))
        with csvio.open_text(str(path)) as stream:
            layout = csvio.read_layout(stream)
            for _ in csvio.records(stream, layout):
                pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_large_file_is_read_without_holding_it_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "upload.csv"
    with path.open("w") as out:
        out.write("email,first_name,last_name,birthday,email_consent\n")
        out.writelines(f"ann{i}@example.com,Ann,Lee,1990-04-01,yes\n" for i in range(40_000))
    size = path.stat().st_size
    assert size > 1_500_000
    assert peak_memory_reading(path) < size / 4
