"""CSV reading and writing (app/contacts/csvio.py): every header set the importer must read, encodings,
delimiters, quoting, formula neutralising both ways, and rule 8's consent words. Pure: no database."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

import pytest

from app.contacts import csvio
from app.contacts.csvio import Collected
from app.contacts.csvio import FileRefused
from app.contacts.csvio import RowError
from app.contacts.rules import ConsentIntent

TODAY = date(2026, 12, 1)

SHOPIFY_HEADER = (
    "Customer ID,First Name,Last Name,Email,Accepts Email Marketing,Default Address Company,"
    "Default Address Address1,Default Address Address2,Default Address City,Default Address Province Code,"
    "Default Address Country Code,Default Address Zip,Default Address Phone,Phone,Accepts SMS Marketing,"
    "Total Spent,Total Orders,Note,Tax Exempt,Tags,Accepts WhatsApp Marketing"
)
SHOPIFY_ROW = (
    "'9013808660771,Ann,Lee,Ann@Example.com,yes,Acme,1 Main St,,Amsterdam,NH,NL,1011,,'+31612345678,no,"
    '12.50,3,,no,"vip, horeca",no'
)
SHOPIFY_OLD_HEADER = (
    "First Name,Last Name,Email,Accepts Email Marketing,Company,Address1,Address2,City,Province,"
    "Province Code,Country,Country Code,Zip,Phone,Accepts SMS Marketing,Total Spent,Total Orders,Tags,Note,"
    "Tax Exempt"
)
SHOPIFY_OLD_ROW = "Bo,Kim,bo@example.com,no,,,,,,,United States,US,,(415) 555-2671,yes,0,0,new,,no"
SMARTPUSH_HEADER = (
    "First Name,Last Name,Email,Accepts Email Marketing,Phone Number,Accepts SMS Marketing,Gender,Birthday,"
    "Language,Company,Address 1,Address 2,City,Province/State,Province/State Code,Country,Country Code,Zip,"
    "Tags,Note"
)
SMARTPUSH_ROW = (
    'Cy,Ng,cy@example.com,unsubscribe,+14155552671,yes,f,1990/04/01,en,,,,,,,United States,US,,"a,b",hi'
)


def write(tmp_path: Path, text: str, encoding: str = "utf-8") -> str:
    path = tmp_path / "contacts.csv"
    path.write_bytes(text.encode(encoding))
    return str(path)


def read_all(path: str, region: str | None = "US") -> list[tuple[int, Collected | RowError]]:
    with csvio.open_text(path) as stream:
        layout = csvio.read_layout(stream)
        return [
            (row, csvio.parse_row(cells, layout, region, TODAY))
            for row, cells in csvio.records(stream, layout)
        ]


def test_popsyncs_own_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        ",".join(csvio.COLUMNS)
        + "\nann@example.com,'+14155552671,Ann,Lee,1990-04-01,female,US,"
        + 'subscribed,unsubscribed,"vip, new"\n',
    )
    [(row, item)] = read_all(path)
    assert row == 2
    assert item == Collected(
        email="ann@example.com",
        phone="+14155552671",
        first_name="Ann",
        last_name="Lee",
        birthday=date(1990, 4, 1),
        gender="female",
        country="US",
        email_consent=ConsentIntent.SUBSCRIBE,
        sms_consent=ConsentIntent.UNSUBSCRIBE,
        tags=("vip", "new"),
        may_resubscribe=False,
    )


def test_shopifys_customer_export_with_bom(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeff" + SHOPIFY_HEADER + "\r\n" + SHOPIFY_ROW + "\r\n")
    [(_, item)] = read_all(path)
    assert isinstance(item, Collected)
    assert (item.email, item.phone, item.first_name, item.last_name) == (
        "ann@example.com",
        "+31612345678",
        "Ann",
        "Lee",
    )
    assert item.country == "NL"
    assert item.email_consent is ConsentIntent.SUBSCRIBE
    assert item.sms_consent is None  # "no" leaves a contact as it is
    assert item.tags == ("vip", "horeca")


def test_shopifys_older_export_reads_a_national_phone_in_the_rows_country(tmp_path: Path) -> None:
    path = write(tmp_path, SHOPIFY_OLD_HEADER + "\n" + SHOPIFY_OLD_ROW + "\n")
    [(_, item)] = read_all(path, region=None)
    assert isinstance(item, Collected)
    assert (item.email, item.phone, item.country) == ("bo@example.com", "+14155552671", "US")
    assert item.sms_consent is ConsentIntent.SUBSCRIBE
    assert item.tags == ("new",)


def test_smartpushs_template(tmp_path: Path) -> None:
    path = write(tmp_path, SMARTPUSH_HEADER + "\n" + SMARTPUSH_ROW + "\n")
    [(_, item)] = read_all(path)
    assert isinstance(item, Collected)
    assert item.phone == "+14155552671"
    assert item.gender == "female"
    assert item.birthday == date(1990, 4, 1)
    assert item.email_consent is ConsentIntent.UNSUBSCRIBE
    assert item.sms_consent is ConsentIntent.SUBSCRIBE
    assert item.tags == ("a", "b")


def test_smartpushs_calling_code_column(tmp_path: Path) -> None:
    path = write(tmp_path, "Email,Phone Number,Country/Region Code\nx@example.com,4155552671,+1\n")
    [(_, item)] = read_all(path, region=None)
    assert isinstance(item, Collected)
    assert item.phone == "+14155552671"


def test_headers_match_whatever_the_case_and_spacing(tmp_path: Path) -> None:
    path = write(tmp_path, " EMAIL ;First_Name;LAST NAME\nann@example.com;Ann;Lee\n")
    [(_, item)] = read_all(path)
    assert isinstance(item, Collected)
    assert (item.email, item.first_name, item.last_name) == (
        "ann@example.com",
        "Ann",
        "Lee",
    )


def test_semicolons_are_sniffed(tmp_path: Path) -> None:
    path = write(tmp_path, 'email;first_name;tags\nann@example.com;"Ann, the first";"a, b"\n')
    [(_, item)] = read_all(path)
    assert isinstance(item, Collected)
    assert item.first_name == "Ann, the first"
    assert item.tags == ("a", "b")


def test_quoted_fields_with_newlines_keep_spreadsheet_row_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'email,first_name,last_name\nann@example.com,"Ann\nMarie",Lee\n\nnot-an-email,Bo,Kim\nc@example.com,,\n',
    )
    items = read_all(path)
    assert [row for row, _ in items] == [2, 4, 5]
    assert items[1][1] == RowError("email: " + items[1][1].message.split(": ", 1)[1])  # type: ignore[union-attr]
    assert items[1][1].message.startswith("email: is not a valid email address")  # type: ignore[union-attr]
    assert items[0][1].first_name == "Ann\nMarie"  # type: ignore[union-attr]


def test_bad_values_are_row_errors_naming_the_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "email,phone,birthday,gender,country,email_consent\n"
        "a@example.com,12,,,,\n"
        "b@example.com,,1990-13-01,,,\n"
        "c@example.com,,,robot,,\n"
        "d@example.com,,,,Atlantis,\n"
        "e@example.com,,,,,maybe\n",
    )
    messages = [item.message for _, item in read_all(path)]  # type: ignore[union-attr]
    assert [m.split(":")[0] for m in messages] == ["phone", "birthday", "gender", "country", "email_consent"]


@pytest.mark.parametrize(
    ("word", "intent"),
    [
        ("yes", ConsentIntent.SUBSCRIBE),
        ("TRUE", ConsentIntent.SUBSCRIBE),
        ("subscribed", ConsentIntent.SUBSCRIBE),
        ("unsubscribe", ConsentIntent.UNSUBSCRIBE),
        ("Unsubscribed", ConsentIntent.UNSUBSCRIBE),
        ("no", None),
        ("false", None),
        ("not_subscribed", None),
        ("", None),
        ("  ", None),
    ],
)
def test_consent_words(word: str, intent: ConsentIntent | None) -> None:
    assert csvio.parse_consent(word, "email_consent") is intent


def test_an_import_never_resubscribes() -> None:
    layout = csvio.layout_of(["email", "email_consent"], ",")
    item = csvio.parse_row(["a@example.com", "yes"], layout, "US", TODAY)
    assert isinstance(item, Collected)
    assert item.may_resubscribe is False


def test_no_email_or_phone_column_is_refused() -> None:
    with pytest.raises(FileRefused) as refused:
        csvio.layout_of(["first_name", "last_name"], ",")
    assert refused.value.field == "file"


def test_non_utf8_and_binary_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileRefused, match="UTF-8"):
        csvio.count_rows(write(tmp_path, "email,first_name\nann@example.com,Jos\u00e9\n", encoding="latin-1"))
    (tmp_path / "b.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(FileRefused):
        csvio.count_rows(str(tmp_path / "b.csv"))
    with pytest.raises(FileRefused, match="empty"):
        csvio.count_rows(write(tmp_path, ""))


def test_count_rows_streams_and_counts_data_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "email\n" + "".join(f"u{i}@example.com\n" for i in range(2500)) + "\n")
    layout, total = csvio.count_rows(path)
    assert (layout.delimiter, total) == (",", 2500)


@pytest.mark.parametrize(
    "value", ["=1+1", "+14155552671", "-2", "@SUM(A1)", "\tx", "\rx", "'quoted", "plain"]
)
def test_formula_neutralising_round_trip(value: str) -> None:
    cell = csvio.neutralise(value)
    if value[0] in "=+-@\t\r":
        assert cell == "'" + value
    else:
        assert cell == value
    assert csvio.unneutralise(cell) == value


def test_an_apostrophe_that_is_part_of_a_name_is_kept() -> None:
    assert csvio.unneutralise("'t Hooft") == "'t Hooft"


def test_export_lines_are_neutralised_and_read_back() -> None:
    contact = {
        "email": "ann@example.com",
        "phone": "+14155552671",
        "first_name": '=HYPERLINK("x")',
        "last_name": "Lee, Jr\nthe second",
        "birthday": date(1990, 4, 1),
        "gender": "female",
        "country": "US",
        "email_consent": "subscribed",
        "sms_consent": "not_subscribed",
        "tags": ["vip", "-x"],
    }
    text = "".join(csvio.export_lines([contact]))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(csvio.COLUMNS)
    assert rows[1][1] == "'+14155552671"
    assert rows[1][2] == '\'=HYPERLINK("x")'
    layout = csvio.layout_of(rows[0], ",")
    item = csvio.parse_row(rows[1], layout, None, TODAY)
    assert isinstance(item, Collected)
    assert (item.phone, item.first_name, item.last_name) == (
        "+14155552671",
        contact["first_name"],
        contact["last_name"],
    )
    assert item.tags == ("vip", "-x")
