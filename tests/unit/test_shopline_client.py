"""The SHOPLINE client against recorded answers (``responses``): formats, lookups, errors, budget, tokens."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from app.platforms.base import AuthFailed
from app.platforms.base import CustomerGone
from app.platforms.base import CustomerPage
from app.platforms.base import CustomerWrite
from app.platforms.base import FailedForGood
from app.platforms.base import IdentifierTaken
from app.platforms.base import PlatformCustomer
from app.platforms.base import PlatformError
from app.platforms.base import RetryLater
from app.platforms.shopline import ShoplineClient
from app.platforms.shopline import create_access_token
from app.platforms.shopline import parse_customer
from app.platforms.shopline import read_phone
from app.platforms.shopline import refresh_access_token
from app.platforms.shopline import taken_fields
from app.platforms.shopline_signing import sign_post

pytestmark = pytest.mark.nodb

DOMAIN = "demo.myshopline.com"
TOKEN = "sl-token-very-secret-0123456789"
VERSION = "v20260301"
BASE = f"https://{DOMAIN}/admin/openapi/{VERSION}"
ORIGIN = "http://devstore.test"
REWRITTEN = f"{ORIGIN}/admin/openapi/{VERSION}"
APP_KEY = "app-key"
APP_SECRET = "app-secret-for-tests"
CONSENT_AT = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


class FakeBudget:
    """Answers ``take`` with the queued waits (0 once they run out) and remembers every call."""

    def __init__(self, *waits: float) -> None:
        self.waits = list(waits)
        self.calls: list[tuple[int, float, float, float]] = []

    def take(self, shop_id: int, cost: float, *, capacity: float, restore_rate: float) -> float:
        self.calls.append((shop_id, cost, capacity, restore_rate))
        return self.waits.pop(0) if self.waits else 0.0


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def make_client(
    budget: FakeBudget | None = None, admin_origin: str | None = None, session: requests.Session | None = None
) -> ShoplineClient:
    return ShoplineClient(
        domain=DOMAIN,
        access_token=TOKEN,
        api_version=VERSION,
        admin_origin=admin_origin,
        shop_id=7,
        budget=budget,  # type: ignore[arg-type]
        session=session,
    )


@pytest.fixture
def client() -> Iterator[ShoplineClient]:
    client = make_client()
    yield client
    client.close()


def customer(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": "4200000000001",
        "email": "ann@example.com",
        "phone": "+14155552671",
        "first_name": "Ann",
        "last_name": "Lee",
        "birthday": "19900401",
        "gender": "female",
        "tags": "vip,newsletter",
        "email_marketing_consent": {"state": 1, "opt_in_level": 1},
        "sms_marketing_consent": {"state": 2, "opt_in_level": 1},
        "addresses": [{"country_code": "US", "default": True}],
        "default_address": {"country_code": "US", "default": True},
        "updated_at": "2026-03-01T14:50:00.250+08:00",
    }
    payload.update(overrides)
    return payload


def sent_json(call: Any) -> Any:
    return json.loads(call.request.body)


# -- lookups ------------------------------------------------------------------------------------------------


def test_find_by_email_is_the_exact_lookup_and_parses_shopline_formats(
    mocked: responses.RequestsMock, client: ShoplineClient
) -> None:
    mocked.post(
        f"{BASE}/customers/query_user_by_email.json",
        json={"customer": customer(phone="0014155552671")},
        match=[matchers.json_params_matcher({"email": "ann@example.com"})],
    )
    found = client.find_customer(email="Ann@Example.com")
    assert found == PlatformCustomer(
        id="4200000000001",
        email="ann@example.com",
        phone="+14155552671",
        first_name="Ann",
        last_name="Lee",
        birthday=date(1990, 4, 1),
        gender="female",
        country="US",
        has_address=True,
        email_consent="subscribed",
        sms_consent="not_subscribed",
        tags=("vip", "newsletter"),
        updated_at=datetime(2026, 3, 1, 6, 50, 0, 250_000, tzinfo=UTC),
    )
    headers = mocked.calls[0].request.headers
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert "X-Forwarded-Host" not in headers


@pytest.mark.parametrize(
    ("status", "body"),
    [(404, {"errors": "The customer does not exist."}), (200, {"customer": None}), (200, {})],
)
def test_an_email_nobody_holds_is_none(
    mocked: responses.RequestsMock, client: ShoplineClient, status: int, body: dict[str, Any]
) -> None:
    mocked.post(f"{BASE}/customers/query_user_by_email.json", json=body, status=status)
    assert client.find_customer(email="nobody@example.com") is None


def test_an_email_lookup_answering_someone_else_is_not_a_match(
    mocked: responses.RequestsMock, client: ShoplineClient
) -> None:
    mocked.post(f"{BASE}/customers/query_user_by_email.json", json={"customer": customer()})
    assert client.find_customer(email="ann.other@example.com") is None


def test_find_by_phone_filters_the_fuzzy_search_across_pages_on_the_rewritten_origin(
    mocked: responses.RequestsMock,
) -> None:
    next_link = f"{BASE}/customers/v2/search.json?limit=250&page_info=cGFnZTI"
    mocked.get(
        f"{REWRITTEN}/customers/v2/search.json",
        json={
            "customers": [
                customer(id="1", phone="+14155552670"),  # fuzzy neighbours, not the same number
                customer(id="2", phone="+4415555526710"),
                customer(id="3", phone=None),
            ]
        },
        headers={"link": f'<{next_link}>; rel="next"'},
        match=[matchers.query_param_matcher({"query_param": "4155552671", "limit": "250"})],
    )
    mocked.get(
        f"{REWRITTEN}/customers/v2/search.json",
        json={"customers": [customer(id="4", email=None, phone="0014155552671")]},
        match=[matchers.query_param_matcher({"limit": "250", "page_info": "cGFnZTI"})],
    )
    client = make_client(admin_origin=ORIGIN)
    found = client.find_customer(phone="+14155552671")
    assert found is not None
    assert (found.id, found.phone, found.email) == ("4", "+14155552671", None)
    for call in mocked.calls:
        assert call.request.url.startswith(ORIGIN)
        assert call.request.headers["X-Forwarded-Host"] == DOMAIN
        assert call.request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_find_by_phone_with_no_match_on_the_last_page_is_none(
    mocked: responses.RequestsMock, client: ShoplineClient
) -> None:
    mocked.get(f"{BASE}/customers/v2/search.json", json={"customers": [customer(phone="+14155552670")]})
    assert client.find_customer(phone="+14155552671") is None


def test_an_email_miss_falls_back_to_the_phone(
    mocked: responses.RequestsMock, client: ShoplineClient
) -> None:
    mocked.post(f"{BASE}/customers/query_user_by_email.json", json={}, status=404)
    mocked.get(f"{BASE}/customers/v2/search.json", json={"customers": [customer(email="x@example.com")]})
    found = client.find_customer(email="ann@example.com", phone="+14155552671")
    assert found is not None
    assert found.email == "x@example.com"


def test_a_next_page_link_to_another_host_is_not_followed(mocked: responses.RequestsMock) -> None:
    mocked.get(
        f"{REWRITTEN}/customers/v2/search.json",
        json={"customers": []},
        headers={"link": '<https://evil.example/admin/openapi/v20260301/x.json?page_info=a>; rel="next"'},
    )
    with pytest.raises(FailedForGood):
        make_client(admin_origin=ORIGIN).find_customer(phone="+14155552671")
    assert len(mocked.calls) == 1


def test_fetch_by_id(mocked: responses.RequestsMock, client: ShoplineClient) -> None:
    mocked.get(f"{BASE}/customers/v2/4200000000001.json", json={"customer": customer()})
    mocked.get(f"{BASE}/customers/v2/4200000000009.json", json={"errors": "no"}, status=404)
    fetched = client.fetch_customer("4200000000001")
    assert fetched is not None
    assert fetched.id == "4200000000001"
    assert client.fetch_customer("4200000000009") is None


# -- writes -------------------------------------------------------------------------------------------------


def test_create_sends_shopline_formats(mocked: responses.RequestsMock, client: ShoplineClient) -> None:
    mocked.post(f"{BASE}/customers.json", json={"customer": customer(id="4200000000002")})
    write = CustomerWrite(
        values={
            "email": "ann@example.com",
            "phone": "+14155552671",
            "first_name": "Ann",
            "birthday": date(1990, 4, 1),
            "gender": "female",
            "country": "US",
            "email_consent": "unsubscribed",
            "sms_consent": "pending",
        },
        consent_updated_at=CONSENT_AT,
        consent_source="form 12",
    )
    created = client.create_customer(write, ["popup", "vip", "popup"])
    assert created.id == "4200000000002"
    assert sent_json(mocked.calls[0]) == {
        "customer": {
            "email": "ann@example.com",
            "phone": "+14155552671",
            "first_name": "Ann",
            "birthday": "19900401",
            "gender": 2,
            "addresses": [{"country_code": "US", "default": True}],
            "email_marketing_consent": {
                "state": 0,
                "opt_in_level": 1,
                "consent_collected_from": "form 12",
                "consent_updated_at": "2026-03-01T12:30:00.000+00:00",
            },
            "sms_marketing_consent": {
                "state": 3,
                "opt_in_level": 1,
                "consent_collected_from": "form 12",
                "consent_updated_at": "2026-03-01T12:30:00.000+00:00",
            },
            "tags": "popup,vip",
        }
    }


@pytest.mark.parametrize(("gender", "code"), [("male", 1), ("female", 2), ("other", 0), ("unspecified", 3)])
def test_genders_are_sent_as_shopline_ints(
    mocked: responses.RequestsMock, client: ShoplineClient, gender: str, code: int
) -> None:
    mocked.post(f"{BASE}/customers.json", json={"customer": customer()})
    client.create_customer(CustomerWrite(values={"email": "ann@example.com", "gender": gender}), [])
    assert sent_json(mocked.calls[0])["customer"]["gender"] == code


def test_consent_defaults_to_popsync_as_source_and_now_as_time(
    mocked: responses.RequestsMock, client: ShoplineClient
) -> None:
    mocked.post(f"{BASE}/customers.json", json={"customer": customer()})
    client.create_customer(
        CustomerWrite(values={"email": "a@example.com", "email_consent": "subscribed"}), []
    )
    consent = sent_json(mocked.calls[0])["customer"]["email_marketing_consent"]
    assert consent["state"] == 1
    assert consent["consent_collected_from"] == "popsync"
    sent_at = datetime.fromisoformat(consent["consent_updated_at"])
    assert abs(datetime.now(UTC) - sent_at) < timedelta(minutes=1)


def test_update_sends_only_the_given_fields(mocked: responses.RequestsMock, client: ShoplineClient) -> None:
    mocked.put(f"{BASE}/customers/4200000000001.json", json={"customer": customer(first_name="Annie")})
    existing = parse_customer(customer())
    write = CustomerWrite(values={"first_name": "Annie", "country": "FR", "sms_consent": "unsubscribed"})
    updated = client.update_customer(existing, write)
    assert updated.first_name == "Annie"
    body = sent_json(mocked.calls[0])["customer"]
    assert set(body) == {"first_name", "sms_marketing_consent"}  # the customer has an address: no country
    assert body["sms_marketing_consent"]["state"] == 0


def test_update_gives_a_country_to_a_customer_without_an_address(
    mocked: responses.RequestsMock, client: ShoplineClient
) -> None:
    mocked.put(f"{BASE}/customers/4200000000001.json", json={"customer": customer()})
    existing = parse_customer(customer(addresses=[], default_address=None))
    assert not existing.has_address
    client.update_customer(existing, CustomerWrite(values={"country": "FR"}))
    assert sent_json(mocked.calls[0]) == {
        "customer": {"addresses": [{"country_code": "FR", "default": True}]}
    }


def test_an_update_without_values_sends_nothing(
    mocked: responses.RequestsMock, client: ShoplineClient
) -> None:
    existing = parse_customer(customer())
    assert client.update_customer(existing, CustomerWrite(values={"email": None, "phone": ""})) is existing
    assert len(mocked.calls) == 0


def test_update_of_a_deleted_customer_is_customer_gone(
    mocked: responses.RequestsMock, client: ShoplineClient
) -> None:
    mocked.put(f"{BASE}/customers/4200000000001.json", json={"errors": "gone"}, status=404)
    with pytest.raises(CustomerGone):
        client.update_customer(parse_customer(customer()), CustomerWrite(values={"first_name": "A"}))


def test_an_update_answer_without_the_customer_reads_it_back(
    mocked: responses.RequestsMock, client: ShoplineClient
) -> None:
    mocked.put(f"{BASE}/customers/4200000000001.json", json={})
    mocked.get(f"{BASE}/customers/v2/4200000000001.json", json={"customer": customer(last_name="Li")})
    updated = client.update_customer(parse_customer(customer()), CustomerWrite(values={"last_name": "Li"}))
    assert updated.last_name == "Li"


def test_add_tags_reads_the_current_tags_and_writes_the_union(
    mocked: responses.RequestsMock, client: ShoplineClient
) -> None:
    mocked.get(f"{BASE}/customers/v2/4200000000001.json", json={"customer": customer(tags="vip, Newsletter")})
    mocked.put(
        f"{BASE}/customers/4200000000001.json",
        json={"customer": customer(tags="vip,Newsletter,popup")},
        match=[matchers.json_params_matcher({"customer": {"tags": "vip,Newsletter,popup"}})],
    )
    stale = parse_customer(customer(tags=""))
    tagged = client.add_tags(stale, ["newsletter", "popup"])
    assert tagged.tags == ("vip", "Newsletter", "popup")


def test_add_tags_already_there_writes_nothing(
    mocked: responses.RequestsMock, client: ShoplineClient
) -> None:
    mocked.get(f"{BASE}/customers/v2/4200000000001.json", json={"customer": customer()})
    assert client.add_tags(parse_customer(customer()), ["VIP"]).tags == ("vip", "newsletter")
    assert len(mocked.calls) == 1


def test_add_tags_to_a_deleted_customer_is_customer_gone(
    mocked: responses.RequestsMock, client: ShoplineClient
) -> None:
    mocked.get(f"{BASE}/customers/v2/4200000000001.json", json={"errors": "gone"}, status=404)
    with pytest.raises(CustomerGone):
        client.add_tags(parse_customer(customer()), ["popup"])


def test_a_tag_shopline_cannot_hold_fails_for_good(client: ShoplineClient) -> None:
    with pytest.raises(FailedForGood):
        client.create_customer(CustomerWrite(values={"email": "a@example.com"}), ["a,b"])
    with pytest.raises(FailedForGood):
        client.create_customer(CustomerWrite(values={"email": "a@example.com"}), ["x" * 129])


# -- errors -------------------------------------------------------------------------------------------------


def test_429_is_a_throttled_retry_with_retry_after_when_given(
    mocked: responses.RequestsMock, client: ShoplineClient
) -> None:
    mocked.get(f"{BASE}/customers/v2/1.json", json={"errors": "Too many request"}, status=429)
    mocked.get(
        f"{BASE}/customers/v2/2.json",
        json={"errors": "Too many request"},
        status=429,
        headers={"Retry-After": "2.5"},
    )
    with pytest.raises(RetryLater) as first:
        client.fetch_customer("1")
    assert first.value.throttled
    assert first.value.seconds == 1.0
    with pytest.raises(RetryLater) as second:
        client.fetch_customer("2")
    assert second.value.seconds == 2.5


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 503, "json": {"errors": "Service Unavailable"}},
        {"status": 500, "body": "oops"},
        {"body": requests.ConnectTimeout("connect timeout to https://demo.myshopline.com")},
        {"body": requests.ReadTimeout("read timeout")},
        {"body": requests.ConnectionError("connection refused")},
        {"status": 200, "body": "<html>proxy</html>"},
    ],
)
def test_server_errors_timeouts_and_lost_connections_are_retried(
    mocked: responses.RequestsMock, client: ShoplineClient, answer: dict[str, Any]
) -> None:
    mocked.get(f"{BASE}/customers/v2/1.json", **answer)
    with pytest.raises(RetryLater) as retry:
        client.fetch_customer("1")
    assert not retry.value.throttled
    assert retry.value.seconds > 0
    # No chained requests exception: its text holds the URL, and a search URL holds phone digits.
    assert retry.value.__cause__ is None
    assert retry.value.__context__ is None or retry.value.__suppress_context__


def test_401_is_auth_failed(mocked: responses.RequestsMock, client: ShoplineClient) -> None:
    mocked.post(f"{BASE}/customers/query_user_by_email.json", json={"errors": "Invalid token"}, status=401)
    with pytest.raises(AuthFailed):
        client.find_customer(email="ann@example.com")


@pytest.mark.parametrize(
    ("errors", "fields"),
    [
        ("Email has already been taken", ("email",)),
        ("phone already exists", ("phone",)),
        ("Email has already been taken; Phone has already been taken", ("email", "phone")),
        ({"email": ["has already been taken"]}, ("email",)),
        (["mobile phone is registered by another customer"], ("phone",)),
    ],
)
def test_an_identifier_held_by_another_customer_is_identifier_taken(
    mocked: responses.RequestsMock, client: ShoplineClient, errors: Any, fields: tuple[str, ...]
) -> None:
    mocked.post(f"{BASE}/customers.json", json={"errors": errors}, status=422)
    with pytest.raises(IdentifierTaken) as taken:
        client.create_customer(CustomerWrite(values={"email": "a@example.com", "phone": "+14155552671"}), [])
    assert taken.value.fields == fields


def test_taken_on_update_is_identifier_taken(mocked: responses.RequestsMock, client: ShoplineClient) -> None:
    mocked.put(
        f"{BASE}/customers/4200000000001.json", json={"errors": "Phone has already been taken"}, status=422
    )
    with pytest.raises(IdentifierTaken) as taken:
        client.update_customer(parse_customer(customer()), CustomerWrite(values={"phone": "+14155552672"}))
    assert taken.value.fields == ("phone",)


def test_other_refusals_fail_for_good_without_personal_data(
    mocked: responses.RequestsMock, client: ShoplineClient
) -> None:
    mocked.post(
        f"{BASE}/customers.json",
        json={"errors": "email ann@example.com is invalid; phone +1 415 555 2671 is invalid"},
        status=422,
        headers={"traceId": "abc123"},
    )
    with pytest.raises(FailedForGood) as refused:
        client.create_customer(CustomerWrite(values={"email": "ann@example.com"}), [])
    message = str(refused.value)
    assert "422" in message
    assert "abc123" in message
    assert "is invalid" in message
    assert "ann@example.com" not in message
    assert "555" not in message


def test_no_error_message_holds_the_token(mocked: responses.RequestsMock, client: ShoplineClient) -> None:
    answers = [
        {"status": 401, "json": {"errors": f"token {TOKEN} refused"}},
        {"status": 403, "json": {"errors": f"Bearer {TOKEN}"}},
        {"status": 429, "json": {}},
        {"status": 503, "json": {}},
        {"status": 402, "json": {}},
        {"status": 435, "json": {}},
        {"body": requests.ConnectionError(f"https://{DOMAIN}/?token={TOKEN}")},
    ]
    for index, answer in enumerate(answers):
        mocked.get(f"{BASE}/customers/v2/{index}.json", **answer)
        with pytest.raises(PlatformError) as error:
            client.fetch_customer(str(index))
        assert TOKEN not in str(error.value)
        assert TOKEN not in repr(error.value)
    assert TOKEN not in repr(client)


def test_an_empty_budget_raises_before_any_request(mocked: responses.RequestsMock) -> None:
    budget = FakeBudget(2.5)
    with pytest.raises(RetryLater) as retry:
        make_client(budget).find_customer(email="ann@example.com")
    assert retry.value.throttled
    assert retry.value.seconds == 2.5
    assert len(mocked.calls) == 0
    assert budget.calls == [(7, 1, 40.0, 4.0)]


def test_every_request_takes_one_from_the_budget(mocked: responses.RequestsMock) -> None:
    mocked.get(f"{BASE}/customers/v2/4200000000001.json", json={"customer": customer()})
    mocked.put(f"{BASE}/customers/4200000000001.json", json={"customer": customer(tags="vip,newsletter,a")})
    budget = FakeBudget()
    make_client(budget).add_tags(parse_customer(customer()), ["a"])
    assert len(budget.calls) == 2


def test_a_store_with_another_limit_gets_its_own_bucket(mocked: responses.RequestsMock) -> None:
    mocked.get(f"{BASE}/customers/v2/1.json", json={"customer": customer(id="1")})
    budget = FakeBudget()
    client = ShoplineClient(
        domain=DOMAIN,
        access_token=TOKEN,
        api_version=VERSION,
        admin_origin=None,
        shop_id=3,
        budget=budget,  # type: ignore[arg-type]
        bucket_capacity=400,
        restore_rate=40,
    )
    client.fetch_customer("1")
    client.close()
    assert budget.calls == [(3, 1, 400, 40)]


def test_a_session_passed_in_is_used_and_left_open(mocked: responses.RequestsMock) -> None:
    mocked.get(f"{BASE}/customers/v2/1.json", json={"customer": customer(id="1")})
    session = requests.Session()
    client = make_client(session=session)
    assert client.session is session
    assert client.fetch_customer("1") is not None
    client.close()
    assert session.adapters  # still usable: closing the client does not close the caller's session
    session.close()


# -- parsing ------------------------------------------------------------------------------------------------


def test_parse_a_webhook_body() -> None:
    parsed = parse_customer(
        {
            "id": 4200000000003,
            "email": "  Bo@Example.com ",
            "phone": "",
            "first_name": "",
            "gender": "secret",
            "tags": "",
            "email_subscribe_flag": 0,
            "mobile_subscribe_flag": 2,
            "default_address": None,
            "addresses": [],
            "updated_at": "2026-03-01T10:00:00Z",
        }
    )
    assert parsed == PlatformCustomer(
        id="4200000000003",
        email="bo@example.com",
        gender="unspecified",
        email_consent="unsubscribed",
        sms_consent="not_subscribed",
        updated_at=datetime(2026, 3, 1, 10, tzinfo=UTC),
    )


def test_parse_reads_others_as_no_gender_and_keeps_an_unreadable_phone() -> None:
    parsed = parse_customer(
        customer(gender="others", phone="12", birthday="1990-13-01", updated_at="nonsense")
    )
    assert parsed.gender is None
    assert parsed.phone == "12"
    assert parsed.birthday is None
    assert parsed.updated_at is None
    assert parse_customer(customer(gender=1)).gender == "male"


def test_parse_dates_and_first_address() -> None:
    parsed = parse_customer(
        customer(
            updated_at="2026-03-01T10:00:00",
            default_address=None,
            addresses=[{"country_code": "gb"}, {"country_code": "FR", "default": True}],
        )
    )
    assert parsed.updated_at == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert parsed.country == "FR"
    ms = parse_customer(customer(updated_at=1_780_000_000_000)).updated_at
    assert ms == datetime(2026, 5, 28, 20, 26, 40, tzinfo=UTC)
    offset = parse_customer(customer(updated_at="2026-03-01T17:00:00+07:00")).updated_at
    assert offset is not None
    assert offset.utcoffset() == timezone(timedelta(hours=7)).utcoffset(None)
    assert offset == datetime(2026, 3, 1, 10, tzinfo=UTC)


def test_phone_forms_shopline_may_store() -> None:
    assert read_phone("+1 415-555-2671") == "+14155552671"
    assert read_phone("0014155552671") == "+14155552671"
    assert read_phone("14155552671") == "+14155552671"
    assert read_phone("4155552671", "US") == "+14155552671"
    assert read_phone("12") is None
    assert read_phone(None) is None


def test_a_customer_without_an_id_is_refused() -> None:
    with pytest.raises(ValueError, match="id"):
        parse_customer({"email": "a@example.com"})


def test_taken_fields_ignores_other_errors() -> None:
    assert taken_fields("The customer does not exist.") == ()
    assert taken_fields("email does not exist") == ()
    assert taken_fields("email is invalid") == ()


# -- tokens -------------------------------------------------------------------------------------------------


def _token_answer(expire: Any = "2026-04-03T12:00:00.000Z") -> dict[str, Any]:
    return {
        "code": 200,
        "i18nCode": "SUCCESS",
        "message": "ok",
        "data": {"accessToken": "new-token", "expireTime": expire, "scope": "read_customers,write_customers"},
    }


def _assert_signed(call: Any, body: str) -> None:
    headers = call.request.headers
    assert headers["appkey"] == APP_KEY
    assert headers["timestamp"].isdigit()
    now_ms = datetime.now(UTC).timestamp() * 1000
    assert abs(int(headers["timestamp"]) - now_ms) < 60_000
    assert headers["sign"] == sign_post(body, headers["timestamp"], APP_SECRET)


def test_create_access_token_signs_the_body_and_parses_the_answer(mocked: responses.RequestsMock) -> None:
    mocked.post(f"https://{DOMAIN}/admin/oauth/token/create", json=_token_answer())
    token, expires_at = create_access_token(DOMAIN, APP_KEY, APP_SECRET, "c0de")
    assert token == "new-token"
    assert expires_at == datetime(2026, 4, 3, 12, tzinfo=UTC)
    call = mocked.calls[0]
    assert call.request.body == b'{"code":"c0de"}'
    _assert_signed(call, '{"code":"c0de"}')


def test_refresh_signs_an_empty_body_on_the_rewritten_origin(mocked: responses.RequestsMock) -> None:
    mocked.post(f"{ORIGIN}/admin/oauth/token/refresh", json=_token_answer(expire=None))
    with requests.Session() as session:
        token, expires_at = refresh_access_token(
            DOMAIN, APP_KEY, APP_SECRET, admin_origin=ORIGIN, session=session
        )
    assert token == "new-token"
    assert abs(expires_at - (datetime.now(UTC) + timedelta(hours=10))) < timedelta(minutes=1)
    call = mocked.calls[0]
    assert not call.request.body
    assert call.request.headers["X-Forwarded-Host"] == DOMAIN
    _assert_signed(call, "")


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (
            {"json": {"code": 400, "i18nCode": "OAUTH_CODE_INVALID", "message": "bad", "data": None}},
            AuthFailed,
        ),
        ({"json": {"code": 200, "i18nCode": "SUCCESS", "data": {}}}, AuthFailed),
        ({"json": {"code": 500, "i18nCode": "REQUEST_FREQUENTLY", "data": None}}, RetryLater),
        ({"status": 401, "json": {"errors": "nope"}}, AuthFailed),
        ({"status": 403, "body": "forbidden"}, AuthFailed),
        ({"status": 429, "json": {}}, RetryLater),
        ({"status": 502, "body": "bad gateway"}, RetryLater),
        ({"status": 200, "body": "not json"}, RetryLater),
        ({"body": requests.ReadTimeout()}, RetryLater),
        ({"body": requests.ConnectionError()}, RetryLater),
    ],
)
def test_token_failures(
    mocked: responses.RequestsMock, answer: dict[str, Any], error: type[Exception]
) -> None:
    mocked.post(f"https://{DOMAIN}/admin/oauth/token/create", **answer)
    with pytest.raises(error) as raised:
        create_access_token(DOMAIN, APP_KEY, APP_SECRET, "secret-code-123")
    assert "secret-code-123" not in str(raised.value)
    assert APP_SECRET not in str(raised.value)


# -- reading every customer ---------------------------------------------------------------------------------


def next_link(base: str, page_info: str) -> dict[str, str]:
    return {"link": f'<{base}/v2/customers.json?limit=250&page_info={page_info}>; rel="next"'}


def test_list_customers_pages_with_updated_at_min_and_follows_the_link(
    mocked: responses.RequestsMock, client: ShoplineClient
) -> None:
    since = datetime(2026, 3, 1, 10, 0, 0, 750000, tzinfo=timezone(timedelta(hours=8)))
    mocked.get(
        f"{BASE}/v2/customers.json",
        json={"customers": [customer(), customer(id="4200000000002", email="bo@example.com")]},
        headers=next_link(BASE, "p2"),
        match=[matchers.query_param_matcher({"limit": "250", "updated_at_min": "2026-03-01T02:00:00+00:00"})],
    )
    first = client.list_customers(updated_since=since)
    assert [c.id for c in first.customers] == ["4200000000001", "4200000000002"]
    assert first.customers[0] == parse_customer(customer())
    assert first.next_cursor == f"{BASE}/v2/customers.json?limit=250&page_info=p2"

    # SHOPLINE ignores filters beside page_info: the link alone carries them, updated_since is not resent.
    mocked.get(
        f"{BASE}/v2/customers.json",
        json={"customers": [customer(id="4200000000003", email="cy@example.com")]},
        match=[matchers.query_param_matcher({"limit": "250", "page_info": "p2"})],
    )
    # A new client (after a restart) goes on from the stored cursor.
    second = make_client().list_customers(cursor=str(first.next_cursor), updated_since=since)
    assert [c.id for c in second.customers] == ["4200000000003"]
    assert second.next_cursor is None
    assert mocked.calls[1].request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_list_customers_without_a_date_sends_only_the_limit(
    mocked: responses.RequestsMock, client: ShoplineClient
) -> None:
    mocked.get(
        f"{BASE}/v2/customers.json",
        json={"customers": []},
        match=[matchers.query_param_matcher({"limit": "250"})],
    )
    assert client.list_customers() == CustomerPage(customers=(), next_cursor=None)


def test_a_cursor_is_shoplines_link_and_goes_to_the_rewritten_origin(mocked: responses.RequestsMock) -> None:
    mocked.get(
        f"{REWRITTEN}/v2/customers.json", json={"customers": [customer()]}, headers=next_link(BASE, "p2")
    )
    mocked.get(
        f"{REWRITTEN}/v2/customers.json",
        json={"customers": []},
        match=[matchers.query_param_matcher({"limit": "250", "page_info": "p2"})],
    )
    client = make_client(admin_origin=ORIGIN)
    first = client.list_customers()
    # Stored as SHOPLINE wrote it, so it does not depend on the development origin.
    assert first.next_cursor == f"{BASE}/v2/customers.json?limit=250&page_info=p2"
    client.list_customers(cursor=first.next_cursor)
    assert mocked.calls[1].request.url == f"{REWRITTEN}/v2/customers.json?limit=250&page_info=p2"
    assert mocked.calls[1].request.headers["X-Forwarded-Host"] == DOMAIN


@pytest.mark.parametrize(
    ("origin", "cursor"),
    [
        (None, "https://evil.example/admin/openapi/v20260301/v2/customers.json?page_info=p2"),
        (
            None,
            "https://demo.myshopline.com.evil.example/admin/openapi/v20260301/v2/customers.json?page_info=p",
        ),
        (None, "http://demo.myshopline.com/admin/openapi/v20260301/v2/customers.json?page_info=p2"),
        (None, "https://other.myshopline.com/admin/openapi/v20260301/v2/customers.json?page_info=p2"),
        # Another API version: the stored cursor outlived an upgrade; start the listing again.
        (None, "https://demo.myshopline.com/admin/openapi/v20250301/v2/customers.json?page_info=p2"),
        (None, "not a link"),
        (ORIGIN, "http://devstore.test.evil.example/admin/openapi/v20260301/v2/customers.json?page_info=p"),
        (ORIGIN, "https://evil.example/admin/openapi/v20260301/v2/customers.json?page_info=p2"),
    ],
)
def test_a_cursor_to_anywhere_else_is_refused_without_sending_the_token(
    mocked: responses.RequestsMock, origin: str | None, cursor: str
) -> None:
    with pytest.raises(FailedForGood) as caught:
        make_client(admin_origin=origin).list_customers(cursor=cursor)
    assert len(mocked.calls) == 0
    assert TOKEN not in str(caught.value)


def test_a_next_link_elsewhere_is_refused_rather_than_handed_out(
    mocked: responses.RequestsMock, client: ShoplineClient
) -> None:
    mocked.get(
        f"{BASE}/v2/customers.json",
        json={"customers": [customer()]},
        headers=next_link("https://evil.example/admin/openapi/v20260301", "p2"),
    )
    with pytest.raises(FailedForGood):
        client.list_customers()


def test_a_listing_takes_one_request_from_the_budget_and_honours_throttling(
    mocked: responses.RequestsMock,
) -> None:
    mocked.get(f"{BASE}/v2/customers.json", status=429, json={"errors": "Too many request"})
    budget = FakeBudget()
    with pytest.raises(RetryLater) as caught:
        make_client(budget).list_customers()
    assert caught.value.throttled
    assert len(budget.calls) == 1
