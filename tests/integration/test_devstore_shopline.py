"""The development store's SHOPLINE side on a real HTTP port, driven by popsync's ShoplineClient."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta

import pytest
import requests
from werkzeug.serving import make_server

from app.platforms.base import AuthFailed
from app.platforms.base import CustomerGone
from app.platforms.base import CustomerWrite
from app.platforms.base import FailedForGood
from app.platforms.base import IdentifierTaken
from app.platforms.base import RetryLater
from app.platforms.devstore import DevStore
from app.platforms.devstore import create_devstore
from app.platforms.devstore import shopline_api
from app.platforms.http import rewrite_link
from app.platforms.shopline import ShoplineClient
from app.platforms.shopline import create_access_token
from app.platforms.shopline import parse_customer
from app.platforms.shopline import refresh_access_token
from app.platforms.shopline_signing import verify_webhook

pytestmark = pytest.mark.nodb

SECRET = "shopline-app-secret-for-tests"
APP_KEY = "shopline-app-key"
VERSION = "v20260301"
DOMAIN = "demo.myshopline.com"
OTHER = "other.myshopline.com"
TOKEN = "demo-shopline-token"
OTHER_TOKEN = "other-shopline-token"


class FrozenClock:
    """The store's rate-limit clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def store(clock: FrozenClock) -> Iterator[DevStore]:
    store = DevStore(webhook_secrets={"shopline": SECRET}, clock=clock)
    store.add_shop("shopline", DOMAIN, TOKEN)
    store.add_shop("shopline", OTHER, OTHER_TOKEN)
    yield store
    store.engine.dispose()


@pytest.fixture
def origin(store: DevStore) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, create_devstore(store), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="devstore-shopline", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def make_client(
    origin: str, session: requests.Session, domain: str = DOMAIN, token: str = TOKEN
) -> ShoplineClient:
    return ShoplineClient(
        domain=domain,
        access_token=token,
        api_version=VERSION,
        admin_origin=origin,
        shop_id=1,
        budget=None,
        session=session,
        timeout=5,
    )


@pytest.fixture
def client(origin: str, session: requests.Session) -> ShoplineClient:
    return make_client(origin, session)


def ann(**values: object) -> CustomerWrite:
    return CustomerWrite(
        values={"email": "ann@example.com", "phone": "+14155552671", **values},
        consent_updated_at=datetime(2026, 3, 1, 12, 0).astimezone(),
        consent_source="form 1",
    )


def test_create_find_update_consent_and_tags_round_trip(client: ShoplineClient, store: DevStore) -> None:
    created = client.create_customer(
        ann(
            first_name="Ann",
            birthday=date(1990, 4, 1),
            gender="female",
            country="US",
            email_consent="subscribed",
            sms_consent="unsubscribed",
        ),
        ["popup"],
    )
    assert created.id.isdigit()
    assert (created.email, created.phone, created.first_name) == ("ann@example.com", "+14155552671", "Ann")
    assert (created.birthday, created.gender, created.country) == (date(1990, 4, 1), "female", "US")
    assert (created.email_consent, created.sms_consent) == ("subscribed", "unsubscribed")
    assert created.tags == ("popup",)
    assert created.has_address
    assert created.updated_at is not None
    assert created.updated_at.tzinfo is not None

    assert client.find_customer(email="ANN@example.com") == created
    assert client.find_customer(phone="+14155552671") == created
    assert client.find_customer(email="nobody@example.com", phone="+14155552671") == created
    assert client.find_customer(email="nobody@example.com") is None
    assert client.find_customer(phone="+14155552672") is None
    assert client.fetch_customer(created.id) == created

    updated = client.update_customer(
        created, CustomerWrite(values={"last_name": "Lee", "country": "FR", "email_consent": "unsubscribed"})
    )
    assert (updated.first_name, updated.last_name) == ("Ann", "Lee")
    assert updated.country == "US"  # a customer with an address keeps it
    assert updated.email_consent == "unsubscribed"
    assert updated.sms_consent == "unsubscribed"
    assert updated.updated_at is not None
    assert created.updated_at is not None
    assert updated.updated_at > created.updated_at

    tagged = client.add_tags(updated, ["vip", "POPUP"])
    assert tagged.tags == ("popup", "vip")

    shop_id = next(i for i, d in store.shop_domains("shopline") if d == DOMAIN)
    assert shopline_api.list_customers(store, shop_id) == [
        {
            "id": created.id,
            "name": "Ann Lee",
            "email": "ann@example.com",
            "phone": "+14155552671",
            "email_consent": "unsubscribed",
            "sms_consent": "unsubscribed",
            "tags": ["popup", "vip"],
            "updated_at": tagged.updated_at.isoformat(timespec="milliseconds") if tagged.updated_at else None,
        }
    ]


def test_a_country_goes_to_a_customer_without_an_address(client: ShoplineClient) -> None:
    created = client.create_customer(ann(), [])
    assert not created.has_address
    assert client.update_customer(created, CustomerWrite(values={"country": "FR"})).country == "FR"


def test_one_customer_per_email_and_per_phone(client: ShoplineClient) -> None:
    first = client.create_customer(ann(), [])
    with pytest.raises(IdentifierTaken) as email_taken:
        client.create_customer(
            CustomerWrite(values={"email": "ann@example.com", "phone": "+14155550000"}), []
        )
    assert email_taken.value.fields == ("email",)
    with pytest.raises(IdentifierTaken) as phone_taken:
        client.create_customer(CustomerWrite(values={"email": "bo@example.com", "phone": "+14155552671"}), [])
    assert phone_taken.value.fields == ("phone",)
    with pytest.raises(IdentifierTaken) as both_taken:
        client.create_customer(ann(), [])
    assert both_taken.value.fields == ("email", "phone")

    second = client.create_customer(CustomerWrite(values={"phone": "0014155550000"}), [])
    assert second.phone == "+14155550000"
    with pytest.raises(IdentifierTaken) as update_taken:
        client.update_customer(second, CustomerWrite(values={"email": "ann@example.com"}))
    assert update_taken.value.fields == ("email",)
    assert client.update_customer(first, CustomerWrite(values={"email": "ann@example.com"})).id == first.id


def test_another_shop_has_its_own_customers(origin: str, session: requests.Session) -> None:
    make_client(origin, session).create_customer(ann(), [])
    other = make_client(origin, session, OTHER, OTHER_TOKEN)
    assert other.find_customer(email="ann@example.com") is None
    assert other.create_customer(ann(), []).email == "ann@example.com"


@pytest.mark.parametrize(
    "values",
    [
        {"email": "not-an-email"},
        {"phone": "+1415"},
        {"email": "a" * 40 + "@example.com"},  # SHOPLINE keeps at most 50 characters
        {"first_name": "A" * 129, "email": "a@example.com"},
        {},  # neither email nor phone
    ],
)
def test_invalid_values_are_refused(client: ShoplineClient, values: dict[str, str]) -> None:
    with pytest.raises(FailedForGood) as refused:
        client.create_customer(CustomerWrite(values=values), [])
    assert "422" in str(refused.value)


@pytest.mark.parametrize(
    "customer",
    [
        {"email": "a@example.com", "email_marketing_consent": {"opt_in_level": 1}},
        {"email": "a@example.com", "sms_marketing_consent": {"state": 4}},
        {"email": "a@example.com", "gender": "female"},
        {"email": "a@example.com", "birthday": "1990-04-01"},
        {"email": "a@example.com", "tags": ",".join(f"t{i}" for i in range(101))},
        {"email": "a@example.com", "addresses": [{"country_code": "USA"}]},
    ],
)
def test_the_store_refuses_values_in_other_formats(
    origin: str, session: requests.Session, customer: dict[str, object]
) -> None:
    answer = session.post(
        f"{origin}/admin/openapi/{VERSION}/customers.json",
        json={"customer": customer},
        headers={"Authorization": f"Bearer {TOKEN}", "X-Forwarded-Host": DOMAIN},
    )
    assert answer.status_code == 422
    assert isinstance(answer.json()["errors"], str)


def test_tokens_are_checked_per_shop(origin: str, session: requests.Session) -> None:
    with pytest.raises(AuthFailed):
        make_client(origin, session, DOMAIN, OTHER_TOKEN).find_customer(email="ann@example.com")
    with pytest.raises(AuthFailed):
        make_client(origin, session, DOMAIN, "made-up").find_customer(email="ann@example.com")
    answer = session.get(f"{origin}/admin/openapi/{VERSION}/customers/v2/1.json")
    assert answer.status_code == 401
    assert "errors" in answer.json()


def test_the_leaky_bucket_answers_429_beyond_forty_requests(
    client: ShoplineClient, clock: FrozenClock
) -> None:
    for _ in range(40):
        assert client.fetch_customer("4200000000999") is None
    with pytest.raises(RetryLater) as throttled:
        client.fetch_customer("4200000000999")
    assert throttled.value.throttled
    clock.now += 0.25  # one request leaks out at 4 per second
    assert client.fetch_customer("4200000000999") is None
    with pytest.raises(RetryLater):
        client.fetch_customer("4200000000999")


def test_writes_send_signed_webhooks_with_increasing_updated_at(
    client: ShoplineClient, store: DevStore
) -> None:
    created = client.create_customer(ann(country="US", sms_consent="subscribed"), ["popup"])
    client.update_customer(created, CustomerWrite(values={"first_name": "Ann"}))
    client.update_customer(created, CustomerWrite(values={"last_name": "Lee"}))
    sent = store.webhooks.sent
    assert [w["topic"] for w in sent] == ["customers/create", "customers/update", "customers/update"]
    assert {w["platform"] for w in sent} == {"shopline"}
    assert {w["shop"] for w in sent} == {DOMAIN}
    payload = sent[0]["payload"]
    assert payload["default_address"]["country_code"] == "US"
    assert payload["sms_marketing_consent"]["state"] == 1
    assert payload["email_marketing_consent"]["state"] == 2
    assert payload["tags"] == "popup"
    assert parse_customer(payload) == created
    stamps = [parse_customer(w["payload"]).updated_at for w in sent]
    assert all(a is not None and b is not None and a < b for a, b in itertools.pairwise(stamps))
    body = json.dumps(sent[-1]["payload"], separators=(",", ":"), default=str).encode()
    assert verify_webhook(body, sent[-1]["headers"]["X-Shopline-Hmac-Sha256"], SECRET)


def test_a_lost_answer_still_wrote(client: ShoplineClient, store: DevStore) -> None:
    store.faults.configure(lost_answer=1.0)
    with pytest.raises(RetryLater):
        client.create_customer(ann(), [])
    store.faults.configure(lost_answer=0.0)
    found = client.find_customer(email="ann@example.com")
    assert found is not None
    store.faults.configure(lost_answer=1.0)
    with pytest.raises(RetryLater):
        client.update_customer(found, CustomerWrite(values={"first_name": "Ann"}))
    store.faults.configure(lost_answer=0.0)
    again = client.fetch_customer(found.id)
    assert again is not None
    assert again.first_name == "Ann"
    assert [w["topic"] for w in store.webhooks.sent] == ["customers/create", "customers/update"]


def test_injected_errors_and_throttles_are_retries(client: ShoplineClient, store: DevStore) -> None:
    store.faults.configure(error=1.0)
    with pytest.raises(RetryLater) as error:
        client.find_customer(email="ann@example.com")
    assert not error.value.throttled
    store.faults.configure(error=0.0, throttle=1.0)
    with pytest.raises(RetryLater) as throttle:
        client.find_customer(email="ann@example.com")
    assert throttle.value.throttled


def test_updating_a_missing_customer_is_gone(client: ShoplineClient) -> None:
    created = client.create_customer(ann(), [])
    ghost = parse_customer({"id": "4200000009999", "email": "ghost@example.com"})
    with pytest.raises(CustomerGone):
        client.update_customer(ghost, CustomerWrite(values={"first_name": "G"}))
    with pytest.raises(CustomerGone):
        client.add_tags(ghost, ["x"])
    assert client.fetch_customer(created.id) is not None


def test_search_and_list_pages_link_to_the_shop(origin: str, session: requests.Session) -> None:
    client = make_client(origin, session)
    ids = [
        client.create_customer(CustomerWrite(values={"email": f"person{i}@example.com"}), []).id
        for i in range(3)
    ]
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Forwarded-Host": DOMAIN}
    for endpoint, params in (
        ("customers/v2/search.json", {"query_param": "example", "limit": "2"}),
        ("v2/customers.json", {"limit": "2"}),
    ):
        seen: list[str] = []
        url: str | None = f"{origin}/admin/openapi/{VERSION}/{endpoint}"
        query: dict[str, str] | None = params
        while url:
            answer = session.get(url, params=query, headers=headers)
            assert answer.status_code == 200
            seen += [c["id"] for c in answer.json()["customers"]]
            link = answer.links.get("next", {}).get("url")
            if link:
                assert link.startswith(f"https://{DOMAIN}/admin/openapi/{VERSION}/{endpoint}?")
                assert "page_info=" in link
            url, query = (rewrite_link(link, DOMAIN, origin), None) if link else (None, None)
        assert seen == ids
    nothing = session.get(
        f"{origin}/admin/openapi/{VERSION}/customers/v2/search.json",
        params={"query_param": "nobody"},
        headers=headers,
    )
    assert nothing.json() == {"customers": []}
    assert "link" not in nothing.headers


def test_the_store_customers_page_lists_shopline_customers(client: ShoplineClient, origin: str) -> None:
    created = client.create_customer(ann(first_name="Ann"), ["popup"])
    page = requests.get(f"{origin}/devstore/customers", headers={"Accept": "application/json"}, timeout=5)
    shops = {shop["domain"]: shop for shop in page.json()["shops"] if shop["platform"] == "shopline"}
    assert [c["id"] for c in shops[DOMAIN]["customers"]] == [created.id]
    assert shops[OTHER]["customers"] == []
    html = requests.get(f"{origin}/devstore/customers", timeout=5).text
    assert "ann@example.com" in html


def test_an_unknown_version_is_not_found(origin: str, session: requests.Session) -> None:
    answer = session.get(
        f"{origin}/admin/openapi/latest/customers/v2/1.json", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert answer.status_code == 404


def test_token_create_and_refresh(origin: str, session: requests.Session, store: DevStore) -> None:
    domain = "fresh.myshopline.com"
    token, expires_at = create_access_token(
        domain, APP_KEY, SECRET, "any-code", admin_origin=origin, session=session
    )
    assert abs(expires_at - (datetime.now(expires_at.tzinfo) + timedelta(hours=10))) < timedelta(minutes=1)
    fresh = make_client(origin, session, domain, token)
    assert fresh.find_customer(email="ann@example.com") is None

    refreshed, _ = refresh_access_token(domain, APP_KEY, SECRET, admin_origin=origin, session=session)
    assert refreshed != token
    assert make_client(origin, session, domain, refreshed).find_customer(email="ann@example.com") is None
    with pytest.raises(AuthFailed):
        fresh.find_customer(email="ann@example.com")

    with pytest.raises(AuthFailed):
        create_access_token(domain, APP_KEY, "wrong-secret", "any-code", admin_origin=origin, session=session)
    with pytest.raises(AuthFailed):
        create_access_token(domain, APP_KEY, SECRET, "", admin_origin=origin, session=session)
    with pytest.raises(AuthFailed):
        refresh_access_token("unknown.myshopline.com", APP_KEY, SECRET, admin_origin=origin, session=session)


def test_an_expired_token_is_refused(origin: str, session: requests.Session, store: DevStore) -> None:
    token, _ = create_access_token(DOMAIN, APP_KEY, SECRET, "code", admin_origin=origin, session=session)
    client = make_client(origin, session, DOMAIN, token)
    assert client.find_customer(email="ann@example.com") is None
    with store.engine.begin() as connection:
        connection.execute(
            shopline_api.tokens.update()
            .where(shopline_api.tokens.c.access_token == token)
            .values(expires_at=datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1))
        )
    with pytest.raises(AuthFailed):
        client.find_customer(email="ann@example.com")
