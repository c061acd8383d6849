"""ShopifyClient against canned Admin API answers (``responses``): throttling and errors become the right
PlatformError without sleeping, writes carry Shopify's formats and never replace tags or addresses."""

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

from app.platforms import shopify_documents as documents
from app.platforms.base import AuthFailed
from app.platforms.base import BulkExport
from app.platforms.base import BulkExportStatus
from app.platforms.base import CustomerGone
from app.platforms.base import CustomerWrite
from app.platforms.base import FailedForGood
from app.platforms.base import IdentifierTaken
from app.platforms.base import PlatformCustomer
from app.platforms.base import PlatformError
from app.platforms.base import RetryLater
from app.platforms.shopify import ShopifyClient
from app.platforms.shopify import estimate_cost
from app.platforms.shopify import parse_customer

pytestmark = pytest.mark.nodb

DOMAIN = "demo.myshopify.com"
TOKEN = "shpat_secret_token_0123456789"
ORIGIN = "http://127.0.0.1:9999"
URL = f"https://{DOMAIN}/admin/api/2026-10/graphql.json"
GID = "gid://shopify/Customer/7"
THROTTLE = {"maximumAvailable": 2000.0, "currentlyAvailable": 1990.0, "restoreRate": 100.0}


class FakeBudget:
    """Records what the client takes and observes; ``wait`` is what ``take`` answers."""

    def __init__(self, wait: float = 0.0) -> None:
        self.wait = wait
        self.taken: list[tuple[int, float]] = []
        self.observed: list[dict[str, float]] = []

    def take(self, shop_id: int, cost: float, *, capacity: float, restore_rate: float) -> float:
        self.taken.append((shop_id, cost))
        return self.wait

    def observe(self, shop_id: int, *, available: float, capacity: float, restore_rate: float) -> None:
        self.observed.append(
            {"shop_id": shop_id, "available": available, "capacity": capacity, "restore_rate": restore_rate}
        )


def node(**overrides: Any) -> dict[str, Any]:
    customer: dict[str, Any] = {
        "id": GID,
        "firstName": "Ann",
        "lastName": None,
        "tags": ["popup"],
        "updatedAt": "2026-03-01T10:00:00Z",
        "defaultEmailAddress": {"emailAddress": "ann@example.com", "marketingState": "NOT_SUBSCRIBED"},
        "defaultPhoneNumber": {
            "phoneNumber": "+14155552671",
            "smsMarketingConsent": {"state": "NEVER_SUBSCRIBED"},
        },
        "defaultAddress": None,
        "birthDate": None,
        "gender": None,
    }
    customer.update(overrides)
    return customer


def answer(data: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "data": data,
        "extensions": {"cost": {"requestedQueryCost": 18, "actualQueryCost": 10, "throttleStatus": THROTTLE}},
    }
    body.update(extra)
    return body


def payload(
    root: str, customer: dict[str, Any] | None = None, errors: list[dict[str, Any]] | None = None
) -> dict:
    key = "node" if root == "tagsAdd" else "customer"
    return answer({root: {key: customer, "userErrors": errors or []}})


def sent(mocked: responses.RequestsMock, index: int = -1) -> dict[str, Any]:
    return json.loads(mocked.calls[index].request.body)


def make_client(budget: FakeBudget | None = None, origin: str | None = None, **state: Any) -> ShopifyClient:
    return ShopifyClient(
        domain=DOMAIN,
        access_token=TOKEN,
        api_version="2026-10",
        admin_origin=origin,
        shop_id=3,
        budget=budget,  # type: ignore[arg-type]
        state=dict(state),
        session=requests.Session(),
        timeout=2.0,
    )


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def existing_customer(**overrides: Any) -> PlatformCustomer:
    return parse_customer(node(**overrides))


def assert_no_secrets(error: PlatformError, *private: str) -> None:
    text = f"{error} {error!r} {error.args}"
    for secret in (TOKEN, *private):
        assert secret not in text


# -- throttling and transport errors -----------------------------------------------------------------------


def test_throttled_answer_retries_after_the_computed_wait_and_observes_the_bucket(
    mocked: responses.RequestsMock,
) -> None:
    throttle = {"maximumAvailable": 2000.0, "currentlyAvailable": 4.0, "restoreRate": 50.0}
    mocked.post(
        URL,
        json={
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            "extensions": {
                "cost": {"requestedQueryCost": 254, "actualQueryCost": None, "throttleStatus": throttle}
            },
        },
    )
    budget = FakeBudget()
    with pytest.raises(RetryLater) as caught:
        make_client(budget).find_customer(email="ann@example.com")
    assert caught.value.throttled
    assert caught.value.seconds == pytest.approx((254 - 4) / 50)
    assert budget.observed == [{"shop_id": 3, "available": 4.0, "capacity": 2000.0, "restore_rate": 50.0}]
    assert_no_secrets(caught.value, "ann@example.com")


def test_throttled_answer_waits_at_least_a_second(mocked: responses.RequestsMock) -> None:
    throttle = {"maximumAvailable": 1000.0, "currentlyAvailable": 15.0, "restoreRate": 100.0}
    mocked.post(
        URL,
        json={
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            "extensions": {"cost": {"requestedQueryCost": 18, "throttleStatus": throttle}},
        },
    )
    with pytest.raises(RetryLater) as caught:
        make_client().fetch_customer(GID)
    assert caught.value.seconds == 1.0
    assert caught.value.throttled


def test_every_answer_aligns_the_shared_budget(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, json=answer({"customer": None}))
    budget = FakeBudget()
    assert make_client(budget).fetch_customer(GID) is None
    assert budget.taken == [(3, estimate_cost(documents.CUSTOMER_BY_ID))]
    assert budget.observed == [{"shop_id": 3, "available": 1990.0, "capacity": 2000.0, "restore_rate": 100.0}]


def test_a_spent_budget_refuses_before_calling(mocked: responses.RequestsMock) -> None:
    with pytest.raises(RetryLater) as caught:
        make_client(FakeBudget(wait=2.5)).fetch_customer(GID)
    assert caught.value.seconds == 2.5
    assert caught.value.throttled
    assert len(mocked.calls) == 0


@pytest.mark.parametrize(("header", "seconds"), [("2.5", 2.5), ("0.25", 0.25), (None, 1.0), ("soon", 1.0)])
def test_http_429_retries_after_retry_after(
    mocked: responses.RequestsMock, header: str | None, seconds: float
) -> None:
    mocked.post(URL, status=429, headers={"Retry-After": header} if header else {}, body="Too Many Requests")
    with pytest.raises(RetryLater) as caught:
        make_client().fetch_customer(GID)
    assert caught.value.seconds == seconds
    assert caught.value.throttled


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_retry_after_a_second(mocked: responses.RequestsMock, status: int) -> None:
    mocked.post(URL, status=status, body="oops")
    with pytest.raises(RetryLater) as caught:
        make_client().fetch_customer(GID)
    assert caught.value.seconds == 1.0
    assert not caught.value.throttled
    assert_no_secrets(caught.value)


@pytest.mark.parametrize(
    "failure",
    [
        requests.exceptions.ReadTimeout(f"timed out {TOKEN}"),
        requests.exceptions.ConnectionError(f"refused {TOKEN}"),
    ],
)
def test_timeouts_and_lost_connections_retry(mocked: responses.RequestsMock, failure: Exception) -> None:
    mocked.post(URL, body=failure)
    with pytest.raises(RetryLater) as caught:
        make_client().fetch_customer(GID)
    assert caught.value.seconds == 1.0
    assert_no_secrets(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_is_auth_failed(mocked: responses.RequestsMock, status: int) -> None:
    mocked.post(URL, status=status, json={"errors": "[API] Invalid API key or access token"})
    with pytest.raises(AuthFailed) as caught:
        make_client().fetch_customer(GID)
    assert_no_secrets(caught.value)


@pytest.mark.parametrize("status", [400, 402, 404, 422])
def test_other_client_errors_fail_for_good(mocked: responses.RequestsMock, status: int) -> None:
    mocked.post(URL, status=status, json={"errors": "nope"})
    with pytest.raises(FailedForGood):
        make_client().fetch_customer(GID)


def test_graphql_errors_fail_for_good_without_quoting_them(mocked: responses.RequestsMock) -> None:
    mocked.post(
        URL,
        json={
            "errors": [
                {
                    "message": 'Variable $email of type String! was provided invalid value "ann@example.com"',
                    "extensions": {"code": "INVALID_VARIABLE"},
                }
            ]
        },
    )
    with pytest.raises(FailedForGood) as caught:
        make_client().find_customer(email="ann@example.com")
    assert "INVALID_VARIABLE" in str(caught.value)
    assert_no_secrets(caught.value, "ann@example.com")


def test_a_redirect_is_not_followed(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=302, headers={"Location": "https://evil.example/steal"})
    with pytest.raises(FailedForGood):
        make_client().fetch_customer(GID)
    assert len(mocked.calls) == 1


# -- where requests go -------------------------------------------------------------------------------------


def test_requests_go_to_the_shop_with_the_token_header(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, json=answer({"customer": None}))
    make_client().fetch_customer(GID)
    request = mocked.calls[0].request
    assert request.headers["X-Shopify-Access-Token"] == TOKEN
    assert "X-Forwarded-Host" not in request.headers
    assert sent(mocked) == {"query": documents.CUSTOMER_BY_ID, "variables": {"id": GID}}


def test_origin_rewrite_sends_the_same_path_and_names_the_shop(mocked: responses.RequestsMock) -> None:
    mocked.post(f"{ORIGIN}/admin/api/2026-10/graphql.json", json=answer({"customer": None}))
    make_client(origin=ORIGIN).fetch_customer(GID)
    request = mocked.calls[0].request
    assert request.url == f"{ORIGIN}/admin/api/2026-10/graphql.json"
    assert request.headers["X-Forwarded-Host"] == DOMAIN
    assert request.headers["X-Shopify-Access-Token"] == TOKEN


def test_token_is_not_in_the_client_repr() -> None:
    assert TOKEN not in repr(make_client())


# -- reading customers -------------------------------------------------------------------------------------


def test_find_looks_up_by_email_then_by_phone(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, json=answer({"customer": None}))
    mocked.post(URL, json=answer({"customer": node()}))
    found = make_client().find_customer(email="ann@example.com", phone="+14155552671")
    assert found is not None
    assert found.id == GID
    assert sent(mocked, 0) == {
        "query": documents.CUSTOMER_BY_EMAIL,
        "variables": {"email": "ann@example.com"},
    }
    assert sent(mocked, 1) == {"query": documents.CUSTOMER_BY_PHONE, "variables": {"phone": "+14155552671"}}


def test_parse_customer_maps_shopify_values_to_popsync_values() -> None:
    customer = parse_customer(
        node(
            lastName="  ",
            updatedAt="2026-03-01T10:00:00-04:00",
            defaultEmailAddress={"emailAddress": "Ann@Example.com", "marketingState": "SUBSCRIBED"},
            defaultPhoneNumber={
                "phoneNumber": "+1 415-555-2671",
                "smsMarketingConsent": {"state": "PENDING"},
            },
            defaultAddress={"countryCodeV2": "CA"},
            birthDate={"value": "1990-04-01"},
            gender={"value": "Female"},
        )
    )
    assert customer == PlatformCustomer(
        id=GID,
        email="ann@example.com",
        phone="+14155552671",
        first_name="Ann",
        last_name=None,
        birthday=date(1990, 4, 1),
        gender="female",
        country="CA",
        has_address=True,
        email_consent="subscribed",
        sms_consent="pending",
        tags=("popup",),
        updated_at=datetime(2026, 3, 1, 10, tzinfo=timezone(timedelta(hours=-4))),
    )
    assert customer.updated_at is not None
    assert customer.updated_at.tzinfo is not None


@pytest.mark.parametrize(
    ("email_state", "sms_state", "expected"),
    [
        ("SUBSCRIBED", "SUBSCRIBED", ("subscribed", "subscribed")),
        ("UNSUBSCRIBED", "UNSUBSCRIBED", ("unsubscribed", "unsubscribed")),
        ("PENDING", "PENDING", ("pending", "pending")),
        ("NOT_SUBSCRIBED", "NEVER_SUBSCRIBED", ("not_subscribed", "not_subscribed")),
        ("INVALID", "REDACTED", ("not_subscribed", "not_subscribed")),
    ],
)
def test_consent_states_are_read_in_popsync_words(
    email_state: str, sms_state: str, expected: tuple[str, str]
) -> None:
    customer = parse_customer(
        node(
            defaultEmailAddress={"emailAddress": "ann@example.com", "marketingState": email_state},
            defaultPhoneNumber={"phoneNumber": "+14155552671", "smsMarketingConsent": {"state": sms_state}},
        )
    )
    assert (customer.email_consent, customer.sms_consent) == expected


def test_a_customer_without_identifiers_has_no_consent_and_no_address() -> None:
    customer = parse_customer(
        node(defaultEmailAddress=None, defaultPhoneNumber=None, updatedAt="2026-03-01T10:00:00Z")
    )
    assert (customer.email, customer.phone, customer.email_consent, customer.sms_consent) == (None,) * 4
    assert customer.has_address is False
    assert customer.updated_at == datetime(2026, 3, 1, 10, tzinfo=UTC)


# -- creating ----------------------------------------------------------------------------------------------


def test_create_sends_values_consent_and_tags_in_shopifys_formats(mocked: responses.RequestsMock) -> None:
    mocked.post(
        URL,
        json=answer(
            {"standardMetafieldDefinitionEnable": {"createdDefinition": {"id": "x"}, "userErrors": []}}
        ),
    )
    mocked.post(URL, json=payload("customerCreate", node()))
    client = make_client()
    consent_time = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    write = CustomerWrite(
        values={
            "email": "ann@example.com",
            "phone": "+14155552671",
            "first_name": "Ann",
            "last_name": "Lee",
            "birthday": date(1990, 4, 1),
            "gender": "female",
            "country": "us",
            "email_consent": "subscribed",
            "sms_consent": "pending",
        },
        consent_updated_at=consent_time,
        consent_source="form 1",
    )
    created = client.create_customer(write, ["popup", "spring"])
    assert created.id == GID
    assert sent(mocked, 0)["query"] == documents.BIRTH_DATE_DEFINITION_ENABLE
    assert client.state == {"birth_date_definition": True}
    body = sent(mocked, 1)
    assert body["query"] == documents.CUSTOMER_CREATE
    consent = {"marketingOptInLevel": "SINGLE_OPT_IN", "consentUpdatedAt": "2026-03-01T09:30:00+00:00"}
    assert body["variables"]["input"] == {
        "email": "ann@example.com",
        "phone": "+14155552671",
        "firstName": "Ann",
        "lastName": "Lee",
        "metafields": [
            {"namespace": "facts", "key": "birth_date", "type": "date", "value": "1990-04-01"},
            {"namespace": "$app", "key": "gender", "type": "single_line_text_field", "value": "female"},
        ],
        "addresses": [{"countryCode": "US"}],
        "tags": ["popup", "spring"],
        "emailMarketingConsent": {"marketingState": "SUBSCRIBED", **consent},
        "smsMarketingConsent": {"marketingState": "PENDING", **consent},
    }


def test_the_birthday_definition_is_enabled_once_per_shop(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, json=payload("customerCreate", node()))
    client = make_client(birth_date_definition=True)
    client.create_customer(CustomerWrite(values={"email": "ann@example.com", "birthday": "1990-04-01"}), [])
    assert len(mocked.calls) == 1
    assert sent(mocked)["variables"]["input"]["metafields"][0]["value"] == "1990-04-01"


def test_an_already_enabled_birthday_definition_is_fine(mocked: responses.RequestsMock) -> None:
    taken = {"field": ["key"], "message": "Key is in use", "code": "TAKEN"}
    mocked.post(
        URL,
        json=answer(
            {"standardMetafieldDefinitionEnable": {"createdDefinition": None, "userErrors": [taken]}}
        ),
    )
    mocked.post(URL, json=payload("customerCreate", node()))
    client = make_client()
    client.create_customer(
        CustomerWrite(values={"email": "ann@example.com", "birthday": date(1990, 4, 1)}), []
    )
    assert client.state["birth_date_definition"] is True


def test_a_refused_birthday_definition_fails_for_good(mocked: responses.RequestsMock) -> None:
    refused = {"field": ["namespace"], "message": "nope", "code": "TEMPLATE_NOT_FOUND"}
    mocked.post(
        URL,
        json=answer(
            {"standardMetafieldDefinitionEnable": {"createdDefinition": None, "userErrors": [refused]}}
        ),
    )
    with pytest.raises(FailedForGood, match="TEMPLATE_NOT_FOUND"):
        make_client().create_customer(
            CustomerWrite(values={"email": "a@b.co", "birthday": date(1990, 4, 1)}), []
        )
    assert len(mocked.calls) == 1


@pytest.mark.parametrize("consent", ["not_subscribed", None])
def test_not_subscribed_is_never_sent(mocked: responses.RequestsMock, consent: str | None) -> None:
    mocked.post(URL, json=payload("customerCreate", node()))
    write = CustomerWrite(
        values={"email": "ann@example.com", "email_consent": consent, "sms_consent": consent}
    )
    make_client().create_customer(write, [])
    assert sent(mocked)["variables"]["input"] == {"email": "ann@example.com"}


def test_consent_goes_only_with_its_identifier_on_create(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, json=payload("customerCreate", node()))
    write = CustomerWrite(
        values={"phone": "+14155552671", "email_consent": "subscribed", "sms_consent": "subscribed"}
    )
    make_client().create_customer(write, [])
    sent_input = sent(mocked)["variables"]["input"]
    assert "emailMarketingConsent" not in sent_input
    assert sent_input["smsMarketingConsent"]["marketingState"] == "SUBSCRIBED"
    assert "consentUpdatedAt" not in sent_input["smsMarketingConsent"]


@pytest.mark.parametrize(
    ("errors", "fields"),
    [
        ([{"field": ["email"], "message": "Email has already been taken"}], ("email",)),
        ([{"field": ["phone"], "message": "Phone has already been taken"}], ("phone",)),
        ([{"field": ["input", "email"], "message": "Email has already been taken"}], ("email",)),
        (
            [
                {"field": ["phone"], "message": "Phone has already been taken"},
                {"field": ["email"], "message": "Email has already been taken"},
            ],
            ("email", "phone"),
        ),
    ],
)
def test_identifiers_held_by_others_are_named(
    mocked: responses.RequestsMock, errors: list[dict[str, Any]], fields: tuple[str, ...]
) -> None:
    mocked.post(URL, json=payload("customerCreate", None, errors))
    write = CustomerWrite(values={"email": "ann@example.com", "phone": "+14155552671"})
    with pytest.raises(IdentifierTaken) as caught:
        make_client().create_customer(write, [])
    assert caught.value.fields == fields
    assert_no_secrets(caught.value, "ann@example.com", "+14155552671")


def test_other_user_errors_fail_for_good_without_personal_data(mocked: responses.RequestsMock) -> None:
    errors = [{"field": ["phone"], "message": "Phone +1 415 555 2671 is invalid for ann@example.com"}]
    mocked.post(URL, json=payload("customerCreate", None, errors))
    with pytest.raises(FailedForGood) as caught:
        make_client().create_customer(CustomerWrite(values={"phone": "+14155552671"}), [])
    assert "phone" in str(caught.value)
    assert_no_secrets(caught.value, "ann@example.com", "415 555 2671")


# -- updating ----------------------------------------------------------------------------------------------


def test_update_never_sends_tags_or_addresses_to_a_customer_with_an_address(
    mocked: responses.RequestsMock,
) -> None:
    existing = existing_customer(defaultAddress={"countryCodeV2": "CA"})
    mocked.post(URL, json=payload("customerUpdate", node(lastName="Lee", updatedAt="2026-03-02T00:00:00Z")))
    write = CustomerWrite(values={"last_name": "Lee", "country": "US", "first_name": "Ann"})
    updated = make_client().update_customer(existing, write)
    body = sent(mocked)
    assert body["query"] == documents.CUSTOMER_UPDATE
    assert body["variables"]["input"] == {"id": GID, "lastName": "Lee"}
    assert updated.updated_at == datetime(2026, 3, 2, tzinfo=UTC)


def test_update_gives_a_country_to_a_customer_without_an_address(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, json=payload("customerUpdate", node(defaultAddress={"countryCodeV2": "US"})))
    make_client().update_customer(existing_customer(), CustomerWrite(values={"country": "US"}))
    assert sent(mocked)["variables"]["input"] == {"id": GID, "addresses": [{"countryCode": "US"}]}


def test_update_with_nothing_new_sends_nothing(mocked: responses.RequestsMock) -> None:
    existing = existing_customer()
    write = CustomerWrite(
        values={"email": "ann@example.com", "first_name": "Ann", "email_consent": "not_subscribed"}
    )
    assert make_client().update_customer(existing, write) is existing
    assert len(mocked.calls) == 0


def test_consent_changes_go_through_the_consent_mutations(mocked: responses.RequestsMock) -> None:
    email_done = node(
        defaultEmailAddress={"emailAddress": "ann@example.com", "marketingState": "SUBSCRIBED"},
        updatedAt="2026-03-02T00:00:01Z",
    )
    both_done = node(
        defaultEmailAddress={"emailAddress": "ann@example.com", "marketingState": "SUBSCRIBED"},
        defaultPhoneNumber={"phoneNumber": "+14155552671", "smsMarketingConsent": {"state": "UNSUBSCRIBED"}},
        updatedAt="2026-03-02T00:00:02Z",
    )
    mocked.post(URL, json=payload("customerEmailMarketingConsentUpdate", email_done))
    mocked.post(URL, json=payload("customerSmsMarketingConsentUpdate", both_done))
    when = datetime(2026, 3, 2, tzinfo=UTC)
    write = CustomerWrite(
        values={"email_consent": "subscribed", "sms_consent": "unsubscribed"}, consent_updated_at=when
    )
    updated = make_client().update_customer(existing_customer(), write)
    email_call, sms_call = sent(mocked, 0), sent(mocked, 1)
    assert email_call["query"] == documents.EMAIL_CONSENT_UPDATE
    assert email_call["variables"]["input"] == {
        "customerId": GID,
        "emailMarketingConsent": {
            "marketingState": "SUBSCRIBED",
            "marketingOptInLevel": "SINGLE_OPT_IN",
            "consentUpdatedAt": "2026-03-02T00:00:00+00:00",
        },
    }
    assert sms_call["query"] == documents.SMS_CONSENT_UPDATE
    assert sms_call["variables"]["input"]["smsMarketingConsent"]["marketingState"] == "UNSUBSCRIBED"
    assert (updated.email_consent, updated.sms_consent) == ("subscribed", "unsubscribed")
    assert updated.updated_at == datetime(2026, 3, 2, 0, 0, 2, tzinfo=UTC)


def test_consent_for_a_channel_without_its_identifier_is_left_out(mocked: responses.RequestsMock) -> None:
    existing = existing_customer(defaultPhoneNumber=None)
    assert (
        make_client().update_customer(existing, CustomerWrite(values={"sms_consent": "subscribed"}))
        is existing
    )
    assert len(mocked.calls) == 0


def test_profile_then_consent_for_a_new_email(mocked: responses.RequestsMock) -> None:
    existing = existing_customer(defaultEmailAddress=None)
    with_email = node(
        defaultEmailAddress={"emailAddress": "new@example.com", "marketingState": "NOT_SUBSCRIBED"}
    )
    subscribed = node(defaultEmailAddress={"emailAddress": "new@example.com", "marketingState": "SUBSCRIBED"})
    mocked.post(URL, json=payload("customerUpdate", with_email))
    mocked.post(URL, json=payload("customerEmailMarketingConsentUpdate", subscribed))
    write = CustomerWrite(values={"email": "new@example.com", "email_consent": "subscribed"})
    updated = make_client().update_customer(existing, write)
    assert sent(mocked, 0)["variables"]["input"] == {"id": GID, "email": "new@example.com"}
    assert sent(mocked, 1)["query"] == documents.EMAIL_CONSENT_UPDATE
    assert updated.email_consent == "subscribed"


@pytest.mark.parametrize(
    ("root", "field"),
    [("customerUpdate", ["id"]), ("customerEmailMarketingConsentUpdate", ["customerId"])],
)
def test_a_deleted_customer_is_gone(mocked: responses.RequestsMock, root: str, field: list[str]) -> None:
    message = "Customer does not exist" if root == "customerUpdate" else "Customer not found"
    mocked.post(URL, json=payload(root, None, [{"field": field, "message": message}]))
    values = {"last_name": "Lee"} if root == "customerUpdate" else {"email_consent": "subscribed"}
    with pytest.raises(CustomerGone):
        make_client().update_customer(existing_customer(), CustomerWrite(values=values))


def test_a_metafield_error_forgets_the_birthday_definition(mocked: responses.RequestsMock) -> None:
    errors = [{"field": ["metafields", "0", "namespace"], "message": "The facts namespace is reserved"}]
    mocked.post(URL, json=payload("customerUpdate", None, errors))
    client = make_client(birth_date_definition=True)
    with pytest.raises(FailedForGood):
        client.update_customer(existing_customer(), CustomerWrite(values={"birthday": date(1990, 4, 1)}))
    assert client.state["birth_date_definition"] is False


# -- tags --------------------------------------------------------------------------------------------------


def test_tags_are_added_never_replaced(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, json=payload("tagsAdd", node(tags=["popup", "vip"], updatedAt="2026-03-03T00:00:00Z")))
    updated = make_client().add_tags(existing_customer(), ["vip", "Popup"])
    body = sent(mocked)
    assert body["query"] == documents.TAGS_ADD
    assert body["variables"] == {"id": GID, "tags": ["vip"]}
    assert updated.tags == ("popup", "vip")
    assert updated.updated_at == datetime(2026, 3, 3, tzinfo=UTC)


def test_tags_already_held_send_nothing(mocked: responses.RequestsMock) -> None:
    existing = existing_customer()
    assert make_client().add_tags(existing, ["popup"]) is existing
    assert len(mocked.calls) == 0


def test_estimated_costs_follow_shopifys_rules() -> None:
    assert estimate_cost(documents.CUSTOMER_BY_ID) == 7
    assert estimate_cost(documents.CUSTOMER_CREATE) == 10 + 7 + 1
    assert estimate_cost("{ customers(first: 10) { nodes { id } } }") == 2 + 10 * 1
    assert estimate_cost("{ customers(first: 10) { nodes { id defaultAddress { id } } } }") == 2 + 10 * 2


# -- reading every customer --------------------------------------------------------------------------------

STORAGE_URL = (
    "https://storage.googleapis.com/shopify-tiers-assets-prod-us-east1/bulk-1.jsonl?X-Goog-Signature=f00d"
)
OPERATION_GID = "gid://shopify/BulkOperation/720918"


def page_answer(nodes: list[dict[str, Any]], *, more: bool, end: str | None = None) -> dict[str, Any]:
    page_info = {"hasNextPage": more, "endCursor": end}
    return answer({"customers": {"nodes": nodes, "pageInfo": page_info}})


def test_list_customers_pages_with_the_search_carried_in_the_cursor(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, json=page_answer([node(), node(id="gid://shopify/Customer/8")], more=True, end="c-2"))
    mocked.post(URL, json=page_answer([node(id="gid://shopify/Customer/9")], more=False, end="c-3"))
    client = make_client()
    # 10:00:00.5 at +02:00 is 08:00:00.5 UTC, floored to the second (Shopify's updatedAt has whole seconds).
    since = datetime(2026, 3, 1, 10, 0, 0, 500000, tzinfo=timezone(timedelta(hours=2)))

    first = client.list_customers(updated_since=since)
    assert [c.id for c in first.customers] == [GID, "gid://shopify/Customer/8"]
    assert first.customers[0] == existing_customer()
    assert sent(mocked, 0) == {
        "query": documents.CUSTOMERS_PAGE,
        "variables": {"after": None, "query": "updated_at:>='2026-03-01T08:00:00Z'"},
    }
    assert isinstance(first.next_cursor, str)

    # The cursor is a plain string: kept in a database, handed to a new client after a restart.
    last = make_client().list_customers(cursor=str(first.next_cursor), updated_since=datetime(2020, 1, 1))
    assert [c.id for c in last.customers] == ["gid://shopify/Customer/9"]
    assert last.next_cursor is None
    assert sent(mocked, 1)["variables"] == {"after": "c-2", "query": "updated_at:>='2026-03-01T08:00:00Z'"}
    assert "sortKey: UPDATED_AT" in documents.CUSTOMERS_PAGE


def test_list_customers_without_a_date_lists_everyone(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, json=page_answer([], more=False))
    page = make_client().list_customers()
    assert page.customers == ()
    assert page.next_cursor is None
    assert sent(mocked)["variables"] == {"after": None, "query": None}


def test_a_naive_updated_since_is_utc(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, json=page_answer([], more=False))
    make_client().list_customers(updated_since=datetime(2026, 3, 1, 8, 0, 59, 999999))
    assert sent(mocked)["variables"]["query"] == "updated_at:>='2026-03-01T08:00:59Z'"


@pytest.mark.parametrize("cursor", ["", "c-2", "[1]", '{"query": null}', '{"after": 5, "query": null}'])
def test_a_cursor_this_client_did_not_make_is_refused_before_calling(
    mocked: responses.RequestsMock, cursor: str
) -> None:
    with pytest.raises(FailedForGood):
        make_client().list_customers(cursor=cursor)
    assert len(mocked.calls) == 0


def test_a_page_fits_shopifys_single_query_cost_limit() -> None:
    # Shopify refuses, unexecuted, a query asking for more than 1,000 points.
    assert estimate_cost(documents.CUSTOMERS_PAGE) <= 1000
    assert f"customers(first: {documents.CUSTOMERS_PAGE_SIZE}," in documents.CUSTOMERS_PAGE


def test_a_page_goes_through_the_shared_budget(mocked: responses.RequestsMock) -> None:
    budget = FakeBudget(wait=4.0)
    with pytest.raises(RetryLater) as caught:
        make_client(budget).list_customers()
    assert caught.value.throttled
    assert budget.taken == [(3, estimate_cost(documents.CUSTOMERS_PAGE))]
    assert len(mocked.calls) == 0


def bulk_operation(status: str, **fields: Any) -> dict[str, Any]:
    operation = {"id": OPERATION_GID, "status": status, "errorCode": None, "objectCount": "0", "url": None}
    operation.update(fields)
    return operation


def test_start_bulk_export_runs_the_customers_query_without_grouping(mocked: responses.RequestsMock) -> None:
    run = {"bulkOperation": bulk_operation("CREATED"), "userErrors": []}
    mocked.post(URL, json=answer({"bulkOperationRunQuery": run}))
    export = make_client().start_bulk_export()
    assert export == BulkExport(id=OPERATION_GID, status=BulkExportStatus.RUNNING)
    assert sent(mocked) == {
        "query": documents.BULK_CUSTOMERS_RUN,
        "variables": {"query": documents.BULK_CUSTOMERS_QUERY},
    }
    assert "groupObjects: false" in documents.BULK_CUSTOMERS_RUN


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("OPERATION_IN_PROGRESS", "A bulk query operation for this app and shop is already in progress"),
        ("LIMIT_REACHED", "A maximum of 5 bulk query operations can run at a time"),
        (None, "A bulk query operation for this app and shop is already in progress: gid://shopify/Bulk/1"),
    ],
)
def test_a_bulk_export_already_running_is_retry_later(
    mocked: responses.RequestsMock, code: str | None, message: str
) -> None:
    error = {"field": None, "message": message, "code": code}
    mocked.post(URL, json=answer({"bulkOperationRunQuery": {"bulkOperation": None, "userErrors": [error]}}))
    with pytest.raises(RetryLater) as caught:
        make_client().start_bulk_export()
    assert caught.value.seconds >= 1


def test_a_refused_bulk_export_fails_for_good_without_personal_data(mocked: responses.RequestsMock) -> None:
    error = {"field": ["query"], "message": "Invalid bulk query: ann@example.com", "code": "INVALID"}
    mocked.post(URL, json=answer({"bulkOperationRunQuery": {"bulkOperation": None, "userErrors": [error]}}))
    with pytest.raises(FailedForGood) as caught:
        make_client().start_bulk_export()
    assert_no_secrets(caught.value, "ann@example.com")
    assert "Invalid bulk query" in str(caught.value)


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        (bulk_operation("CREATED"), BulkExport(OPERATION_GID, BulkExportStatus.RUNNING)),
        (
            bulk_operation("RUNNING", objectCount="120"),
            BulkExport(OPERATION_GID, BulkExportStatus.RUNNING, None, 120),
        ),
        (bulk_operation("CANCELING"), BulkExport(OPERATION_GID, BulkExportStatus.RUNNING)),
        (
            bulk_operation("COMPLETED", objectCount="42", url=STORAGE_URL),
            BulkExport(OPERATION_GID, BulkExportStatus.COMPLETED, STORAGE_URL, 42),
        ),
        # No customer at all: Shopify gives no file.
        (bulk_operation("COMPLETED", objectCount="0"), BulkExport(OPERATION_GID, BulkExportStatus.COMPLETED)),
        (
            bulk_operation("FAILED", errorCode="ACCESS_DENIED", objectCount=7),
            BulkExport(OPERATION_GID, BulkExportStatus.FAILED, None, 7, "ACCESS_DENIED"),
        ),
        (bulk_operation("CANCELED"), BulkExport(OPERATION_GID, BulkExportStatus.FAILED, error="CANCELED")),
        (bulk_operation("EXPIRED"), BulkExport(OPERATION_GID, BulkExportStatus.FAILED, error="EXPIRED")),
    ],
    ids=["created", "running", "canceling", "completed", "completed-empty", "failed", "canceled", "expired"],
)
def test_bulk_export_maps_shopifys_statuses(
    mocked: responses.RequestsMock, operation: dict[str, Any], expected: BulkExport
) -> None:
    mocked.post(URL, json=answer({"bulkOperation": operation}))
    assert make_client().bulk_export(OPERATION_GID) == expected
    assert sent(mocked) == {"query": documents.BULK_OPERATION, "variables": {"id": OPERATION_GID}}
    assert "currentBulkOperation" not in documents.BULK_OPERATION


def test_an_unknown_bulk_export_fails_for_good(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, json=answer({"bulkOperation": None}))
    with pytest.raises(FailedForGood):
        make_client().bulk_export(OPERATION_GID)


def jsonl(*objects: dict[str, Any]) -> str:
    return "".join(json.dumps(item) + "\n" for item in objects)


def test_read_bulk_export_streams_customers_after_skip_without_the_token(
    mocked: responses.RequestsMock,
) -> None:
    body = jsonl(
        node(id="gid://shopify/Customer/1"),
        node(id="gid://shopify/Customer/2"),
        {"id": "gid://shopify/Metafield/5", "__parentId": "gid://shopify/Customer/2"},
        node(id="gid://shopify/Customer/3", firstName="Cy"),
    )
    mocked.get(STORAGE_URL, body=body + "\n", content_type="application/jsonl")
    session = requests.Session()
    # Even a session that somehow carries the token must not take it to the storage host.
    session.headers["X-Shopify-Access-Token"] = TOKEN
    client = ShopifyClient(
        domain=DOMAIN,
        access_token=TOKEN,
        api_version="2026-10",
        admin_origin=None,
        shop_id=3,
        budget=None,
        state={},
        session=session,
    )
    customers = list(client.read_bulk_export(STORAGE_URL, skip=1))
    assert [c.id for c in customers] == ["gid://shopify/Customer/2", "gid://shopify/Customer/3"]
    assert customers[1] == existing_customer(id="gid://shopify/Customer/3", firstName="Cy")
    request = mocked.calls[0].request
    assert request.url == STORAGE_URL
    assert "X-Shopify-Access-Token" not in request.headers
    assert TOKEN not in str(request.headers)


def test_skipped_lines_are_not_parsed(mocked: responses.RequestsMock) -> None:
    mocked.get(STORAGE_URL, body="not json\n[1]\n" + jsonl(node()))
    assert [c.id for c in make_client().read_bulk_export(STORAGE_URL, skip=2)] == [GID]
    with pytest.raises(FailedForGood) as caught:
        list(make_client().read_bulk_export(STORAGE_URL))
    assert "line 1" in str(caught.value)


def test_the_development_stores_link_is_used_as_given(mocked: responses.RequestsMock) -> None:
    link = f"{ORIGIN}/devstore/bulk/abc.jsonl"
    mocked.get(link, body=jsonl(node()))
    assert [c.id for c in make_client(origin=ORIGIN).read_bulk_export(link)] == [GID]
    assert mocked.calls[0].request.url == link
    assert "X-Shopify-Access-Token" not in mocked.calls[0].request.headers
    assert "X-Forwarded-Host" not in mocked.calls[0].request.headers


def test_a_plain_http_link_is_refused_outside_development(mocked: responses.RequestsMock) -> None:
    with pytest.raises(FailedForGood):
        make_client().read_bulk_export("http://storage.example/bulk.jsonl")
    assert len(mocked.calls) == 0


@pytest.mark.parametrize("status", [403, 404, 410])
def test_an_expired_link_fails_for_good(mocked: responses.RequestsMock, status: int) -> None:
    mocked.get(STORAGE_URL, status=status, body="<Error><Code>ExpiredToken</Code></Error>")
    with pytest.raises(FailedForGood) as caught:
        make_client().read_bulk_export(STORAGE_URL)
    assert "X-Goog-Signature" not in str(caught.value)


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 500},
        {"status": 503},
        {"status": 429},
        {"body": requests.ConnectionError("storage.googleapis.com X-Goog-Signature=f00d")},
        {"body": requests.Timeout("read timed out")},
    ],
)
def test_network_errors_and_5xx_retry_later(mocked: responses.RequestsMock, failure: dict[str, Any]) -> None:
    mocked.get(STORAGE_URL, **failure)
    with pytest.raises(RetryLater) as caught:
        make_client().read_bulk_export(STORAGE_URL)
    assert "f00d" not in f"{caught.value} {caught.value.args}"
    assert caught.value.__cause__ is None


class BrokenDownload:
    """A streamed answer whose connection breaks after two lines."""

    def __init__(self) -> None:
        self.closed = False

    def iter_lines(self, chunk_size: int = 512) -> Iterator[bytes]:
        yield json.dumps(node(id="gid://shopify/Customer/1")).encode()
        yield json.dumps(node(id="gid://shopify/Customer/2")).encode()
        raise requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead")

    def __enter__(self) -> BrokenDownload:
        return self

    def __exit__(self, *_: object) -> None:
        self.closed = True


def test_a_download_broken_midway_retries_later_after_the_lines_read() -> None:
    download = BrokenDownload()
    customers = ShopifyClient._bulk_lines(download, 0)  # type: ignore[arg-type]
    assert [next(customers).id, next(customers).id] == [
        "gid://shopify/Customer/1",
        "gid://shopify/Customer/2",
    ]
    with pytest.raises(RetryLater) as caught:
        next(customers)
    # The caller resumes with skip=2.
    assert "after line 2" in str(caught.value)
    assert download.closed
