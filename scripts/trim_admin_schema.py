"""Trim Shopify's official Admin GraphQL schema to the part popsync's documents use, as SDL.

The development store executes requests against the output with graphql-core, so a document Shopify would
reject is rejected there too, and it ships inside the package (no network, no 900 KB introspection file at
run time). Kept: the root fields the documents select; for object and interface types only the fields the
documents select (plus the fields of the interfaces they keep implementing), each with all its arguments;
input objects complete and transitively; the enums and scalars referenced. Output is sorted, so running it
twice gives the same file.

    .venv/bin/python scripts/trim_admin_schema.py [--schema PATH] [--output PATH]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import graphql
from graphql import GraphQLSchema
from graphql import TypeInfo
from graphql import TypeInfoVisitor
from graphql import Visitor
from graphql.language import FieldNode
from graphql.language import FragmentDefinitionNode
from graphql.language import InlineFragmentNode
from graphql.language import VariableDefinitionNode

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCHEMA = REPO_ROOT.parent / "shared" / "shopify" / "admin_2026-10.json.gz"
DEFAULT_OUTPUT = REPO_ROOT / "app" / "platforms" / "devstore" / "shopify_admin_2026-10.graphql"
API_VERSION = "2026-10"
HEADER = (
    f"# Generated from Shopify's official Admin GraphQL schema {API_VERSION} by\n"
    "# scripts/trim_admin_schema.py: only the types and fields the documents in\n"
    "# app/platforms/shopify_documents.py use. Do not edit; regenerate with\n"
    "# `.venv/bin/python scripts/trim_admin_schema.py`.\n"
)
# Shopify's own directives (@idempotent, @oneOf) are left out: no document uses them, and graphql-core 3.2
# does not know @oneOf. The standard ones stay (graphql-core expects their argument types).
STANDARD_DIRECTIVES = ("include", "skip", "deprecated", "specifiedBy")
ALWAYS_KEPT = ("Boolean", "String")


class SchemaTrimError(ValueError):
    """The documents do not fit the schema, or the trimmed schema would be invalid."""


def load_introspection(path: Path) -> dict[str, Any]:
    """The ``__schema`` introspection object from a (gzipped) JSON introspection result."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        data = json.load(handle)
    data = data.get("data", data)
    return data["__schema"]


def _named(type_ref: dict[str, Any]) -> str:
    while type_ref.get("ofType") is not None:
        type_ref = type_ref["ofType"]
    return type_ref["name"]


class _Usage:
    """What the documents touch: the fields selected per type and the types named directly."""

    def __init__(self) -> None:
        self.fields: dict[str, set[str]] = {}
        self.types: set[str] = set()


def _collect_usage(schema: GraphQLSchema, documents: Iterable[str]) -> _Usage:
    usage = _Usage()

    class Collector(Visitor):
        def __init__(self, type_info: TypeInfo) -> None:
            super().__init__()
            self.type_info = type_info

        def enter_field(self, node: FieldNode, *_: Any) -> None:
            parent = self.type_info.get_parent_type()
            if parent is not None and not node.name.value.startswith("__"):
                usage.fields.setdefault(parent.name, set()).add(node.name.value)

        def enter_inline_fragment(self, node: InlineFragmentNode, *_: Any) -> None:
            if node.type_condition is not None:
                usage.types.add(node.type_condition.name.value)

        def enter_fragment_definition(self, node: FragmentDefinitionNode, *_: Any) -> None:
            usage.types.add(node.type_condition.name.value)

        def enter_variable_definition(self, node: VariableDefinitionNode, *_: Any) -> None:
            type_node: Any = node.type
            while not hasattr(type_node, "name"):
                type_node = type_node.type
            usage.types.add(type_node.name.value)

    for document in documents:
        ast = graphql.parse(document)
        errors = graphql.validate(schema, ast)
        if errors:
            raise SchemaTrimError("; ".join(error.message for error in errors))
        type_info = TypeInfo(schema)
        graphql.visit(ast, TypeInfoVisitor(type_info, Collector(type_info)))
    return usage


def trim_introspection(introspection: dict[str, Any], documents: Iterable[str]) -> dict[str, Any]:
    """A copy of ``introspection`` keeping only what ``documents`` use (see the module docstring)."""
    schema = graphql.build_client_schema({"__schema": introspection})
    usage = _collect_usage(schema, documents)
    by_name = {t["name"]: t for t in introspection["types"] if not t["name"].startswith("__")}
    # A schema needs a query root; the mutation root stays only when a document mutates.
    query_root = introspection["queryType"]["name"]

    kept: set[str] = set()
    fields: dict[str, set[str]] = {}
    pending: list[str] = [query_root, *usage.types, *ALWAYS_KEPT]
    for type_name, names in usage.fields.items():
        fields.setdefault(type_name, set()).update(names)
        pending.append(type_name)

    def field_defs(type_name: str) -> dict[str, dict[str, Any]]:
        return {f["name"]: f for f in by_name[type_name].get("fields") or []}

    changed = True
    while changed:
        changed = False
        while pending:
            name = pending.pop()
            if name in kept:
                continue
            kept.add(name)
            changed = True
            definition = by_name[name]
            if definition["kind"] == "INPUT_OBJECT":
                pending.extend(_named(f["type"]) for f in definition["inputFields"])
        # Selected fields pull in their return types and every argument's type.
        for type_name in sorted(kept):
            definitions = (
                field_defs(type_name) if by_name[type_name]["kind"] in ("OBJECT", "INTERFACE") else {}
            )
            for field_name in fields.get(type_name, ()):
                field = definitions[field_name]
                for candidate in (_named(field["type"]), *(_named(a["type"]) for a in field["args"])):
                    if candidate not in kept:
                        pending.append(candidate)
        # An interface only used as a fragment's parent (``node { ... on Customer }``) still needs a field:
        # it keeps its scalar and enum fields (Node: ``id``).
        for type_name in sorted(kept):
            definition = by_name[type_name]
            if definition["kind"] == "INTERFACE" and not fields.get(type_name):
                leaves = {
                    f["name"]
                    for f in definition["fields"]
                    if by_name[_named(f["type"])]["kind"] in ("SCALAR", "ENUM") and not f["args"]
                }
                if leaves:
                    fields[type_name] = leaves
                    changed = True
        # An object keeps implementing a kept interface, so it must keep that interface's fields.
        for type_name in sorted(kept):
            definition = by_name[type_name]
            if definition["kind"] not in ("OBJECT", "INTERFACE"):
                continue
            for interface in definition.get("interfaces") or []:
                if interface["name"] in kept:
                    missing = fields.get(interface["name"], set()) - fields.get(type_name, set())
                    if missing:
                        fields.setdefault(type_name, set()).update(missing)
                        changed = True
        changed = changed or bool(pending)

    types = []
    for name in sorted(kept):
        definition = dict(by_name[name])
        if definition["kind"] in ("OBJECT", "INTERFACE"):
            selected = fields.get(name, set())
            if not selected:
                raise SchemaTrimError(f"{name} would keep no field")
            definition["fields"] = [f for f in definition["fields"] if f["name"] in selected]
            definition["interfaces"] = [i for i in definition.get("interfaces") or [] if i["name"] in kept]
        if definition["kind"] in ("INTERFACE", "UNION"):
            definition["possibleTypes"] = [p for p in definition["possibleTypes"] or [] if p["name"] in kept]
        types.append(definition)
    directives = [d for d in introspection["directives"] if d["name"] in STANDARD_DIRECTIVES]
    mutation_root = introspection["mutationType"]
    return {
        **introspection,
        "mutationType": mutation_root if mutation_root and mutation_root["name"] in kept else None,
        "types": types,
        "directives": directives,
    }


def trimmed_sdl(introspection: dict[str, Any], documents: Iterable[str]) -> str:
    """The trimmed schema as sorted SDL with the generated-file header."""
    trimmed = graphql.build_client_schema({"__schema": trim_introspection(introspection, documents)})
    errors = graphql.validate_schema(trimmed)
    if errors:
        raise SchemaTrimError("; ".join(error.message for error in errors))
    return HEADER + "\n" + graphql.print_schema(graphql.lexicographic_sort_schema(trimmed)) + "\n"


def popsync_documents() -> list[str]:
    """The documents the app sends (``ALL_DOCUMENTS``)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from app.platforms.shopify_documents import ALL_DOCUMENTS

    return [document for _, document in ALL_DOCUMENTS]


def main(argv: list[str] | None = None) -> int:
    """Write the trimmed SDL; exit status 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--schema", type=Path, default=DEFAULT_SCHEMA, help="introspection JSON (.json or .gz)"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the SDL")
    options = parser.parse_args(argv)
    sdl = trimmed_sdl(load_introspection(options.schema), popsync_documents())
    options.output.write_text(sdl, encoding="utf-8")
    print(f"wrote {options.output} ({len(sdl.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
