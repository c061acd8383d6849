"""Every GraphQL document popsync sends is valid against Shopify's schema: the trimmed SDL the development
store runs (always), and the full official 2026-10 introspection when ../shared has it; the committed SDL is
what the script makes of it."""

from __future__ import annotations

import importlib.util
from importlib import resources
from pathlib import Path
from types import ModuleType

import graphql
import pytest
from graphql.validation import NoDeprecatedCustomRule

from app.platforms.shopify_documents import ALL_DOCUMENTS

pytestmark = pytest.mark.nodb

REPO_ROOT = Path(__file__).resolve().parents[2]
OFFICIAL_SCHEMA = REPO_ROOT.parent / "shared" / "shopify" / "admin_2026-10.json.gz"
SCRIPT = REPO_ROOT / "scripts" / "trim_admin_schema.py"
NO_OFFICIAL_SCHEMA = f"Shopify's official schema is not at {OFFICIAL_SCHEMA} (it ships beside the repository)"
DOCUMENT_NAMES = [name for name, _ in ALL_DOCUMENTS]


def committed_sdl() -> str:
    return resources.files("app.platforms.devstore").joinpath("shopify_admin_2026-10.graphql").read_text()


def trim_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("trim_admin_schema", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trimmed_schema() -> graphql.GraphQLSchema:
    schema = graphql.build_schema(committed_sdl())
    assert graphql.validate_schema(schema) == []
    return schema


@pytest.fixture(scope="module")
def official_introspection() -> dict:
    if not OFFICIAL_SCHEMA.exists():
        pytest.skip(NO_OFFICIAL_SCHEMA)
    return trim_script().load_introspection(OFFICIAL_SCHEMA)


@pytest.mark.parametrize(("name", "document"), ALL_DOCUMENTS, ids=DOCUMENT_NAMES)
def test_document_is_valid_against_the_trimmed_sdl(
    trimmed_schema: graphql.GraphQLSchema, name: str, document: str
) -> None:
    errors = graphql.validate(trimmed_schema, graphql.parse(document))
    assert errors == [], f"{name}: {[e.message for e in errors]}"


@pytest.mark.parametrize(("name", "document"), ALL_DOCUMENTS, ids=DOCUMENT_NAMES)
def test_document_selects_nothing_deprecated(
    trimmed_schema: graphql.GraphQLSchema, name: str, document: str
) -> None:
    errors = graphql.validate(trimmed_schema, graphql.parse(document), [NoDeprecatedCustomRule])
    assert errors == [], f"{name}: {[e.message for e in errors]}"


@pytest.fixture(scope="module")
def official_schema(official_introspection: dict) -> graphql.GraphQLSchema:
    return graphql.build_client_schema({"__schema": official_introspection})


@pytest.mark.parametrize(("name", "document"), ALL_DOCUMENTS, ids=DOCUMENT_NAMES)
def test_document_is_valid_against_the_official_schema(
    official_schema: graphql.GraphQLSchema, name: str, document: str
) -> None:
    errors = graphql.validate(official_schema, graphql.parse(document))
    assert errors == [], f"{name}: {[e.message for e in errors]}"


def test_committed_sdl_is_what_the_script_generates(official_introspection: dict) -> None:
    script = trim_script()
    generated = script.trimmed_sdl(official_introspection, [document for _, document in ALL_DOCUMENTS])
    assert generated == committed_sdl(), "run `.venv/bin/python scripts/trim_admin_schema.py` and commit"


def test_trimmed_sdl_says_where_it_comes_from() -> None:
    header = committed_sdl().splitlines()[:4]
    assert "official Admin GraphQL schema 2026-10" in header[0]
    assert any("Do not edit" in line for line in header)


def test_trimmed_sdl_rejects_what_shopify_rejects(trimmed_schema: graphql.GraphQLSchema) -> None:
    unknown_field = '{ customer(id: "gid://shopify/Customer/1") { email_address } }'
    two_identifiers = (
        '{ customerByIdentifier(identifier: {emailAddress: "a@b.co", phoneNumber: "+1"}) { id } }'
    )
    unknown_root = "{ orders(first: 5) { nodes { id } } }"
    for document in (unknown_field, two_identifiers, unknown_root):
        assert graphql.validate(trimmed_schema, graphql.parse(document)), document


def test_trimming_keeps_only_what_documents_use(official_introspection: dict) -> None:
    script = trim_script()
    trimmed = script.trim_introspection(official_introspection, [ALL_DOCUMENTS[0][1]])
    kept = {t["name"]: t for t in trimmed["types"]}
    assert [f["name"] for f in kept["QueryRoot"]["fields"]] == ["customerByIdentifier"]
    assert "Mutation" not in kept
    assert trimmed["mutationType"] is None
    customer_fields = {f["name"] for f in kept["Customer"]["fields"]}
    assert "email" not in customer_fields
    assert "defaultEmailAddress" in customer_fields
    # Input objects are kept whole.
    identifier = {f["name"] for f in kept["CustomerIdentifierInput"]["inputFields"]}
    assert identifier == {"customId", "emailAddress", "id", "phoneNumber"}


def test_the_bulk_query_keeps_to_shopifys_bulk_rules(trimmed_schema: graphql.GraphQLSchema) -> None:
    """One top-level connection and no nested one: every JSONL line is then a customer (no ``__parentId``
    lines), which is what lets a resumed read skip as many lines as customers were read."""
    from app.platforms.shopify_documents import BULK_CUSTOMERS_QUERY

    document = graphql.parse(BULK_CUSTOMERS_QUERY)
    [operation] = document.definitions
    assert isinstance(operation, graphql.OperationDefinitionNode)
    assert operation.operation == graphql.OperationType.QUERY
    assert [s.name.value for s in operation.selection_set.selections] == ["customers"]  # type: ignore[attr-defined]
    connections: list[str] = []
    type_info = graphql.TypeInfo(trimmed_schema)

    class Connections(graphql.Visitor):
        def enter_field(self, node: graphql.FieldNode, *_: object) -> None:
            named = graphql.get_named_type(type_info.get_type())
            if named is not None and named.name.endswith("Connection"):
                connections.append(node.name.value)

    graphql.visit(document, graphql.TypeInfoVisitor(type_info, Connections()))
    assert connections == ["customers"]
