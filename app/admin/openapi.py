"""The OpenAPI 3.1 description of the merchant admin API and the storefront routes, served at
``GET /api/v1/openapi.json``. A test checks it is valid, that every such route the app serves is in it,
and that real responses match it."""

from __future__ import annotations

from typing import Any

CONSENT = {"type": "string", "enum": ["subscribed", "unsubscribed", "not_subscribed", "pending"]}
NULLABLE_STRING = {"type": ["string", "null"]}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


UNAUTHORIZED = _error("missing or bad credentials")
NOT_FOUND = _error("no such resource in the authenticated shop")
FIELD_ERRORS = {
    "description": "a parameter or field has a bad value; the message names it",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FieldErrors"}}},
}
ID_PARAMETER = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["ok", "error"],
        "properties": {"ok": {"const": False}, "error": {"type": "string"}},
    },
    "FieldErrors": {
        "type": "object",
        "required": ["ok", "errors"],
        "properties": {
            "ok": {"const": False},
            "errors": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "Contact": {
        "type": "object",
        "required": [
            "id",
            "email",
            "phone",
            "first_name",
            "last_name",
            "name",
            "birthday",
            "gender",
            "country",
            "email_consent",
            "sms_consent",
            "tags",
            "source",
            "platform_customer_id",
            "sync_status",
            "sync_detail",
            "created_at",
            "updated_at",
        ],
        "properties": {
            "id": {"type": "integer"},
            "email": {"type": ["string", "null"], "description": "trimmed and lower-cased"},
            "phone": {"type": ["string", "null"], "description": "E.164"},
            "first_name": NULLABLE_STRING,
            "last_name": NULLABLE_STRING,
            "name": {
                "type": ["string", "null"],
                "description": "the collected names, else the email's prefix",
            },
            "birthday": {"type": ["string", "null"], "format": "date"},
            "gender": {"type": ["string", "null"], "enum": ["female", "male", "other", "unspecified", None]},
            "country": {"type": ["string", "null"], "description": "ISO 3166-1 alpha-2"},
            "email_consent": CONSENT,
            "sms_consent": CONSENT,
            "tags": {"type": "array", "items": {"type": "string"}},
            "source": {"type": "string", "enum": ["form", "open", "click", "import", "platform", "merchant"]},
            "platform_customer_id": {"type": ["string", "null"]},
            "sync_status": {"type": "string", "enum": ["pending", "synced", "conflict", "failed", "local"]},
            "sync_detail": NULLABLE_STRING,
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
    "Event": {
        "type": "object",
        "required": ["id", "kind", "occurred_at"],
        "properties": {
            "id": {"type": "integer"},
            "kind": {
                "type": "string",
                "enum": ["submitted", "opened", "clicked", "imported", "mirrored", "edited", "unsubscribed"],
            },
            "occurred_at": {"type": "string", "format": "date-time"},
        },
        "additionalProperties": True,
    },
    "Submission": {
        "type": "object",
        "required": ["shop"],
        "properties": {
            "shop": {"type": "string", "description": "name.myshopify.com or handle.myshopline.com"},
            "form_id": {"type": "string"},
            "email": {"type": "string"},
            "phone": {"type": "string", "description": "E.164, or national in the shop's region"},
            "first_name": {"type": "string"},
            "last_name": {"type": "string"},
            "birthday": {"type": "string", "format": "date"},
            "gender": {"type": "string", "enum": ["female", "male", "other", "unspecified"]},
            "country": {"type": "string", "description": "ISO 3166-1 alpha-2"},
            "email_consent": {"type": "boolean"},
            "sms_consent": {"type": "boolean"},
            "locale": {"type": "string", "description": "the locale the texts were shown in"},
            "page_url": {"type": "string", "description": "the page submitted from (consent evidence)"},
            "email_consent_text": {"type": "string", "description": "the text next to the ticked box"},
            "sms_consent_text": {"type": "string", "description": "the text next to the ticked box"},
            "website": {"type": "string", "description": "the honeypot: filled means a bot (answered ok)"},
            "elapsed_ms": {
                "type": "number",
                "description": "ms from shown to submitted; under 1,500 means a bot (answered ok)",
            },
        },
        "additionalProperties": True,
        "examples": [
            {
                "shop": "demo.myshopify.com",
                "email": "ann@example.com",
                "phone": "+14155552671",
                "first_name": "Ann",
                "last_name": "Lee",
                "birthday": "1990-04-01",
                "gender": "female",
                "country": "US",
                "email_consent": True,
                "sms_consent": False,
            }
        ],
    },
    "Ok": {"type": "object", "required": ["ok"], "properties": {"ok": {"const": True}}},
    "CustomerPull": {
        "type": "object",
        "description": "A backfill (every platform customer) or reconciliation (those updated since the last "
        "pull) and its progress; see docs/platform-reads.md.",
        "required": ["id", "kind", "status", "total", "processed", "created", "updated", "error"],
        "properties": {
            "id": {"type": "integer"},
            "kind": {"enum": ["backfill", "reconcile"]},
            "status": {"enum": ["queued", "running", "done", "failed"]},
            "updated_since": {"type": ["string", "null"], "format": "date-time"},
            "total": {"type": ["integer", "null"], "description": "known for Shopify's bulk export"},
            "processed": {"type": "integer"},
            "created": {"type": "integer"},
            "updated": {"type": "integer"},
            "error": {"type": ["string", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": {"type": ["string", "null"], "format": "date-time"},
            "finished_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
}

ADMIN = {"security": [{"apiKey": []}, {"sessionToken": []}]}


def build_description(app_url: str) -> dict[str, Any]:
    contact_ref = {"$ref": "#/components/schemas/Contact"}
    pull_ref = {"$ref": "#/components/schemas/CustomerPull"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "popsync",
            "version": "1",
            "description": "The merchant admin API (authenticated, one shop at a time) and the storefront.",
        },
        "servers": [{"url": app_url}],
        "components": {
            "schemas": {**SCHEMAS, **FORM_SCHEMAS, **TRACKING_SCHEMAS, **CONTACT_EDIT_SCHEMAS},
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a shop's admin API key, psk_…",
                },
                "sessionToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "a Shopify App Bridge session token",
                },
                "metricsToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the METRICS_TOKEN setting (GET /metrics only)",
                },
            },
        },
        "paths": {
            "/api/v1/contacts": {
                "get": {
                    **ADMIN,
                    "summary": "The shop's contacts, most recently updated first",
                    "parameters": [
                        {
                            "name": "q",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "part of a first or last name or the email, or phone digits",
                        },
                        {
                            "name": "channel",
                            "in": "query",
                            "schema": {"type": "string", "enum": ["email", "sms"]},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                        },
                        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                        SEGMENT_PARAMETER,
                    ],
                    "responses": {
                        "200": _json(
                            "a page of contacts",
                            {
                                "type": "object",
                                "required": ["contacts", "next_cursor"],
                                "properties": {
                                    "contacts": {"type": "array", "items": contact_ref},
                                    "next_cursor": NULLABLE_STRING,
                                },
                            },
                        ),
                        "401": UNAUTHORIZED,
                        "404": _error("segment is not one of the shop's segments"),
                        "422": FIELD_ERRORS,
                    },
                }
            },
            "/api/v1/contacts/{id}": {
                "get": {
                    **ADMIN,
                    "summary": "One contact with its events, newest first",
                    "parameters": [ID_PARAMETER],
                    "responses": {
                        "200": _json(
                            "the contact",
                            {
                                "allOf": [
                                    contact_ref,
                                    {
                                        "type": "object",
                                        "required": ["events"],
                                        "properties": {
                                            "events": {
                                                "type": "array",
                                                "description": (
                                                    "the 200 newest events, newest first; after them, when"
                                                    " older, the latest submission that gave each channel's"
                                                    " consent (its evidence)"
                                                ),
                                                "items": {"$ref": "#/components/schemas/Event"},
                                            }
                                        },
                                    },
                                ],
                            },
                        ),
                        "401": UNAUTHORIZED,
                        "404": NOT_FOUND,
                    },
                },
                **contact_item_operations(),
            },
            "/api/v1/contacts/{id}/retry-sync": {
                "post": {
                    **ADMIN,
                    "summary": "Queue this contact's failed or conflicting platform write again",
                    "parameters": [ID_PARAMETER],
                    "responses": {
                        "202": _json("queued", {"$ref": "#/components/schemas/Ok"}),
                        "401": UNAUTHORIZED,
                        "404": NOT_FOUND,
                    },
                }
            },
            "/api/v1/contacts/retry-sync": {
                "post": {
                    **ADMIN,
                    "summary": "Queue every failed platform write of the shop again",
                    "responses": {
                        "202": _json("queued", {"$ref": "#/components/schemas/Ok"}),
                        "401": UNAUTHORIZED,
                    },
                }
            },
            "/api/v1/data-requests": {
                "get": {
                    **ADMIN,
                    "summary": "The shop's privacy data requests, newest first",
                    "responses": {
                        "200": _json("the requests", {"type": "object", "required": ["data_requests"]}),
                        "401": UNAUTHORIZED,
                    },
                }
            },
            "/api/v1/data-requests/{id}": {
                "get": {
                    **ADMIN,
                    "summary": "One data request's export, as a JSON file",
                    "parameters": [ID_PARAMETER],
                    "responses": {
                        "200": _json("the export", {"type": "object", "required": ["contacts"]}),
                        "401": UNAUTHORIZED,
                        "404": NOT_FOUND,
                    },
                }
            },
            "/api/v1/customer-pulls": {
                "get": {
                    **ADMIN,
                    "summary": "The shop's backfills and reconciliations (the last 50), newest first",
                    "responses": {
                        "200": _json(
                            "the pulls",
                            {
                                "type": "object",
                                "required": ["pulls"],
                                "properties": {"pulls": {"type": "array", "items": pull_ref}},
                            },
                        ),
                        "401": UNAUTHORIZED,
                    },
                },
                "post": {
                    **ADMIN,
                    "summary": "Read the platform's customers again now",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["kind"],
                                    "properties": {"kind": {"enum": ["backfill", "reconcile"]}},
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": _json("queued", pull_ref),
                        "401": UNAUTHORIZED,
                        "409": _error("a pull of this shop is already under way"),
                        "422": {**FIELD_ERRORS, "description": "kind is not backfill or reconcile"},
                    },
                },
            },
            "/api/v1/shop": {
                "get": {
                    **ADMIN,
                    "summary": "The authenticated shop, and whether popsync must be authorised again",
                    "responses": {
                        "200": _json(
                            "the shop (never a token); needs_reauth is true after the platform refused the "
                            "token and it could not be refreshed: platform writes wait until a new token is "
                            "stored (reauthorize_url, detail)",
                            {
                                "type": "object",
                                "required": [
                                    "id",
                                    "platform",
                                    "domain",
                                    "installed",
                                    "needs_reauth",
                                    "reauthorize_url",
                                    "detail",
                                ],
                                "properties": {
                                    "id": {"type": "integer"},
                                    "platform": {"enum": ["shopify", "shopline"]},
                                    "domain": {"type": "string"},
                                    "installed": {"type": "boolean"},
                                    "has_token": {"type": "boolean"},
                                    "needs_reauth": {"type": "boolean"},
                                    "reauthorize_url": {"type": ["string", "null"], "format": "uri"},
                                    "detail": {"type": "string"},
                                },
                            },
                        ),
                        "401": UNAUTHORIZED,
                    },
                }
            },
            "/api/v1/storefront-embed": {
                "get": {
                    **ADMIN,
                    "summary": "Is the app embed on in the live theme? With the link that turns it on",
                    "responses": {
                        "200": _json(
                            "the embed's state; enabled is null when it cannot be known (SHOPLINE, no "
                            "read_themes permission, the platform unreachable)",
                            {
                                "type": "object",
                                "required": ["platform", "enabled", "activate_url", "detail"],
                                "properties": {
                                    "platform": {"enum": ["shopify", "shopline"]},
                                    "enabled": {"type": ["boolean", "null"]},
                                    "activate_url": {"type": "string", "format": "uri"},
                                    "detail": {"type": "string"},
                                },
                            },
                        ),
                        "401": UNAUTHORIZED,
                    },
                }
            },
            "/api/v1/customer-pulls/{id}": {
                "get": {
                    **ADMIN,
                    "summary": "One pull and its progress",
                    "parameters": [ID_PARAMETER],
                    "responses": {"200": _json("the pull", pull_ref), "401": UNAUTHORIZED, "404": NOT_FOUND},
                }
            },
            "/api/v1/openapi.json": {
                "get": {
                    "summary": "This description",
                    "responses": {"200": _json("OpenAPI 3.1", {"type": "object"})},
                }
            },
            "/storefront/submissions": {
                "post": {
                    "summary": "A popup submission (CORS for the shop's storefront origins)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Submission"}}
                        },
                    },
                    "responses": {
                        "200": _json(
                            "accepted (whether or not anything was synced)",
                            {"$ref": "#/components/schemas/Ok"},
                        ),
                        "400": _error("the body is not a JSON object"),
                        "403": _error("the Origin is not one of the shop's storefronts"),
                        "404": _error("unknown or uninstalled shop"),
                        "413": _error("the body is over 64 KB"),
                        "422": FIELD_ERRORS,
                        "429": _RATE_LIMITED,
                    },
                },
                "options": {
                    "summary": "CORS preflight",
                    "responses": {"204": {"description": "allowed or not"}},
                },
            },
            **form_paths(),
            **tracking_paths(),
            **contact_paths(),
            **segment_paths(),
            **import_paths(),
            "/healthz": {
                "get": {
                    "summary": "The process answers",
                    "responses": {"200": _json("alive", {"$ref": "#/components/schemas/Ok"})},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "The database answers",
                    "responses": {
                        "200": _json("ready", {"$ref": "#/components/schemas/Ok"}),
                        "503": _error("the database does not answer"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (docs/deploy.md); off unless METRICS_TOKEN is set",
                    "security": [{"metricsToken": []}],
                    "responses": {
                        "200": {
                            "description": "Prometheus text format 0.0.4",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "401": _error("a missing or wrong METRICS_TOKEN"),
                        "404": _error("metrics are off: METRICS_TOKEN is not set"),
                    },
                }
            },
        },
    }


# --- popup forms and the storefront's form routes ----------------------------------------------------

_FORM_FIELD = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {
            "type": "string",
            "enum": ["email", "phone", "first_name", "last_name", "birthday", "gender", "country"],
        },
        "required": {"type": "boolean"},
        "format": {"type": "string", "enum": ["date", "month_day"], "description": "birthday only"},
    },
}
_FORM_PROPERTIES: dict[str, Any] = {
    "name": {"type": "string", "maxLength": 255},
    "template": {"type": "string", "enum": ["newsletter", "email_sms", "profile"]},
    "fields": {
        "type": "array",
        "items": _FORM_FIELD,
        "description": "newsletter: email; email_sms: email and phone; profile: email and any of the names, "
        "birthday, gender, country. Email or phone must be required.",
    },
    "trigger": {
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": ["delay", "scroll", "exit_intent"]},
            "delay_seconds": {"type": "integer", "minimum": 0, "maximum": 600},
            "scroll_percent": {"type": "integer", "minimum": 0, "maximum": 100},
            "frequency_days": {"type": "integer", "minimum": 0, "maximum": 365},
        },
    },
    "targeting": {
        "type": "object",
        "properties": {
            "match": {"type": "string", "enum": ["all", "equals", "contains"]},
            "paths": {"type": "array", "maxItems": 50, "items": {"type": "string", "pattern": "^/"}},
        },
    },
    "default_locale": {"type": "string", "description": "a locale like en or fr-CA; texts must include it"},
    "texts": {
        "type": "object",
        "description": "per locale, the popup's texts (title, body, labels, consent texts, submit, …), "
        "each at most 1,000 characters",
        "additionalProperties": {
            "type": "object",
            "additionalProperties": {"type": "string", "maxLength": 1000},
        },
    },
    "discount_code": {"type": ["string", "null"], "maxLength": 64},
    "tag": {
        "type": ["string", "null"],
        "maxLength": 255,
        "description": "added to the contacts the form collects and to their platform customers; no commas",
    },
}
FORM_SCHEMAS: dict[str, Any] = {
    "StorefrontForm": {
        "type": "object",
        "required": ["id", "name", "template", "fields", "trigger", "targeting", "default_locale", "texts"],
        "properties": {"id": {"type": "string"}, **_FORM_PROPERTIES},
    },
    "Form": {
        "allOf": [
            {"$ref": "#/components/schemas/StorefrontForm"},
            {
                "type": "object",
                "required": ["active", "created_at", "updated_at", "stats"],
                "properties": {
                    "active": {"type": "boolean"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "updated_at": {"type": "string", "format": "date-time"},
                    "stats": {
                        "type": "object",
                        "required": ["days", "views", "submissions", "conversion_rate"],
                        "description": "the last 30 days (UTC)",
                        "properties": {
                            "days": {"type": "integer"},
                            "views": {"type": "integer"},
                            "submissions": {"type": "integer"},
                            "conversion_rate": {
                                "type": ["number", "null"],
                                "description": "submissions / views; null without views",
                            },
                        },
                    },
                },
            },
        ]
    },
    "FormInput": {
        "type": "object",
        "description": "POST needs name; PATCH changes only the fields given (a template change without "
        "fields takes that template's default fields)",
        "properties": {**_FORM_PROPERTIES, "active": {"type": "boolean"}},
        "examples": [{"name": "Newsletter", "template": "newsletter", "active": True}],
    },
    "Country": {
        "type": "object",
        "required": ["code", "name", "dial"],
        "properties": {
            "code": {"type": "string", "description": "ISO 3166-1 alpha-2"},
            "name": {"type": "string"},
            "dial": {"type": ["string", "null"], "description": "the dialling code, e.g. +1"},
        },
    },
}
_RATE_LIMITED = {
    "description": "the client or the shop is over its rate limit",
    "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds until it resets"}},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_FORM_REF = {"$ref": "#/components/schemas/Form"}
_FORM_INPUT = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FormInput"}}},
}
_NEW_FORM_INPUT = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"allOf": [{"$ref": "#/components/schemas/FormInput"}, {"required": ["name"]}]}
        }
    },
}
_SUBMISSION_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Submission"}}},
}
_SUBMISSION_ANSWERS = {
    "200": _json("accepted (whether or not anything was synced)", {"$ref": "#/components/schemas/Ok"}),
    "400": _error("the body is not a JSON object"),
    "404": _error("unknown or uninstalled shop"),
    "413": _error("the body is over 64 KB"),
    "422": FIELD_ERRORS,
    "429": _RATE_LIMITED,
}


def form_paths() -> dict[str, Any]:
    """The admin form routes and the storefront routes the popup script calls."""
    return {
        "/api/v1/forms": {
            "get": {
                **ADMIN,
                "summary": "The shop's popup forms, each with its last 30 days' figures",
                "responses": {
                    "200": _json(
                        "the forms",
                        {
                            "type": "object",
                            "required": ["forms"],
                            "properties": {"forms": {"type": "array", "items": _FORM_REF}},
                        },
                    ),
                    "401": UNAUTHORIZED,
                },
            },
            "post": {
                **ADMIN,
                "summary": "Create a popup form",
                "requestBody": _NEW_FORM_INPUT,
                "responses": {
                    "201": _json("the new form", _FORM_REF),
                    "400": _error("the body is not a JSON object"),
                    "401": UNAUTHORIZED,
                    "422": FIELD_ERRORS,
                },
            },
        },
        "/api/v1/forms/{id}": {
            "get": {
                **ADMIN,
                "summary": "One popup form",
                "parameters": [ID_PARAMETER],
                "responses": {"200": _json("the form", _FORM_REF), "401": UNAUTHORIZED, "404": NOT_FOUND},
            },
            "patch": {
                **ADMIN,
                "summary": "Change some of a form's fields",
                "parameters": [ID_PARAMETER],
                "requestBody": _FORM_INPUT,
                "responses": {
                    "200": _json("the form", _FORM_REF),
                    "400": _error("the body is not a JSON object"),
                    "401": UNAUTHORIZED,
                    "404": NOT_FOUND,
                    "422": FIELD_ERRORS,
                },
            },
            "delete": {
                **ADMIN,
                "summary": "Delete a form and its figures (contacts keep its tag)",
                "parameters": [ID_PARAMETER],
                "responses": {"204": {"description": "deleted"}, "401": UNAUTHORIZED, "404": NOT_FOUND},
            },
        },
        "/storefront/popup.js": {
            "get": {
                "summary": "The popup script (ETag; Cache-Control public, max-age=300; CORS *)",
                "responses": {
                    "200": {
                        "description": "the script",
                        "content": {"application/javascript": {"schema": {"type": "string"}}},
                    },
                    "304": {"description": "not modified (If-None-Match)"},
                },
            }
        },
        "/storefront/forms": {
            "get": {
                "summary": "The shop's active forms and the country list (ETag; public, max-age=60)",
                "parameters": [
                    {
                        "name": "shop",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "the shop's platform domain",
                    }
                ],
                "responses": {
                    "200": _json(
                        "the forms",
                        {
                            "type": "object",
                            "required": ["forms", "countries"],
                            "properties": {
                                "forms": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/StorefrontForm"},
                                },
                                "countries": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Country"},
                                },
                            },
                        },
                    ),
                    "304": {"description": "not modified (If-None-Match)"},
                    "404": _error("unknown or uninstalled shop"),
                },
            }
        },
        "/storefront/forms/{id}/views": {
            "post": {
                "summary": "Count a view of the form for today (the popup's beacon)",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["shop"],
                                "properties": {"shop": {"type": "string"}},
                            }
                        }
                    },
                },
                "responses": {
                    "204": {"description": "counted"},
                    "400": _error("the body is not a JSON object"),
                    "404": _error("unknown shop or form"),
                    "429": _RATE_LIMITED,
                },
            },
            "options": {
                "summary": "CORS preflight",
                "parameters": [ID_PARAMETER],
                "responses": {
                    "204": {"description": "allowed or not"},
                    "404": _error("the id is not a number"),
                },
            },
        },
        "/proxy/submissions": {
            "post": {
                "summary": "A popup submission through the Shopify app proxy (signed query; shop from it)",
                "parameters": [
                    {"name": "signature", "in": "query", "required": True, "schema": {"type": "string"}},
                    {"name": "timestamp", "in": "query", "required": True, "schema": {"type": "integer"}},
                    {"name": "shop", "in": "query", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "logged_in_customer_id",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "identifies the shopper when no email or phone is collected (rule 1)",
                    },
                ],
                "requestBody": _SUBMISSION_BODY,
                "responses": {**_SUBMISSION_ANSWERS, "401": _error("not signed by Shopify, or stale")},
            }
        },
    }


# --- tracking links (app/admin/tracking.py) and the public tracking routes (app/tracking/views.py) ------

_RECIPIENT_PROPERTIES: dict[str, Any] = {
    "channel": {"type": "string", "enum": ["email", "sms"]},
    "email": {"type": "string", "description": "required for the email channel"},
    "phone": {
        "type": "string",
        "description": "required for the sms channel; E.164, or national in the shop's region",
    },
    "first_name": {"type": "string", "description": "fills the contact's first name only when empty"},
    "last_name": {"type": "string", "description": "fills the contact's last name only when empty"},
    "message_id": {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "description": "opens sync once per message",
    },
    "url": {"type": "string", "format": "uri", "description": "http(s): where the click link leads"},
}
TRACKING_SCHEMAS: dict[str, Any] = {
    "TrackingRecipient": {
        "type": "object",
        "required": ["channel", "message_id"],
        "properties": _RECIPIENT_PROPERTIES,
        "examples": [
            {
                "channel": "email",
                "email": "ann@example.com",
                "first_name": "Ann",
                "message_id": "2026-12-newsletter",
                "url": "https://demo.myshopify.com/collections/sale",
            }
        ],
        # The channel's own identifier is required: the email for email, the phone for SMS.
        "if": {"properties": {"channel": {"const": "sms"}}},
        "then": {"required": ["phone"]},
        "else": {"required": ["email"]},
    },
    "TrackingLinks": {
        "type": "object",
        "required": ["open_url", "unsubscribe_url"],
        "properties": {
            "open_url": {"type": "string", "description": "the 1x1 open pixel: <img src=… width=1 height=1>"},
            "click_url": {"type": "string", "description": "only with a url: redirects there"},
            "unsubscribe_url": {
                "type": "string",
                "description": "for the message and the List-Unsubscribe header (RFC 8058 one-click)",
            },
        },
    },
}
_TOKEN = {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}


def tracking_paths() -> dict[str, Any]:
    """Minting tracking links (admin) and the public routes the links lead to. See docs/tracking.md."""
    links_ref = {"$ref": "#/components/schemas/TrackingLinks"}
    html = {"text/html": {"schema": {"type": "string"}}}
    return {
        "/api/v1/tracking-links": {
            "post": {
                **ADMIN,
                "summary": "Make one recipient's tracking links, or up to 1,000 recipients' in one call",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/TrackingRecipient"},
                                    {
                                        "type": "object",
                                        "required": ["recipients"],
                                        "properties": {
                                            "recipients": {
                                                "type": "array",
                                                "minItems": 1,
                                                "maxItems": 1000,
                                                "items": {"$ref": "#/components/schemas/TrackingRecipient"},
                                            }
                                        },
                                    },
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "201": _json(
                        "the links (for recipients: in the same order)",
                        {
                            "oneOf": [
                                links_ref,
                                {
                                    "type": "object",
                                    "required": ["links"],
                                    "properties": {"links": {"type": "array", "items": links_ref}},
                                },
                            ]
                        },
                    ),
                    "400": _error("the body is not a JSON object"),
                    "401": UNAUTHORIZED,
                    "422": {
                        **FIELD_ERRORS,
                        "description": "a bad field (recipients[3].email in a batch); nothing is made",
                    },
                },
            }
        },
        "/api/v1/tracking-links.csv": {
            "post": {
                **ADMIN,
                "summary": "CSV in; the same rows with open_url, click_url, unsubscribe_url out",
                "description": "Columns (any order, case-insensitive): email, phone, first_name, last_name, "
                "message_id, url, channel; other columns are passed through. Form fields message_id and url "
                "fill rows that leave them empty; channel defaults to email when the row has one, else sms. "
                "Cells starting with = + - @ tab or carriage return are prefixed with '.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file"],
                                "properties": {
                                    "file": {
                                        "type": "string",
                                        "format": "binary",
                                        "contentMediaType": "text/csv",
                                    },
                                    "message_id": {"type": "string"},
                                    "url": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "201": {
                        "description": "the rows with their URLs",
                        "content": {"text/csv": {"schema": {"type": "string"}}},
                    },
                    "401": UNAUTHORIZED,
                    "422": {
                        **FIELD_ERRORS,
                        "description": "a bad file, or bad rows named like rows[3].email (header: row 1)",
                    },
                },
            }
        },
        "/t/o/{token}.gif": {
            "get": {
                "summary": "The open pixel: always 200 and a 1x1 GIF (Cache-Control: no-store)",
                "parameters": [_TOKEN],
                "responses": {
                    "200": {
                        "description": "the GIF",
                        "content": {"image/gif": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/t/c/{token}": {
            "get": {
                "summary": "A tracked link: 302 to the URL sealed in the token; records the click",
                "parameters": [_TOKEN],
                "responses": {
                    "302": {"description": "to the sealed URL, never anywhere else"},
                    "404": _error("not a valid link (no Location)"),
                },
            }
        },
        "/u/{token}": {
            "get": {
                "summary": "The unsubscribe page; changes nothing",
                "parameters": [_TOKEN],
                "responses": {
                    "200": {"description": "the page", "content": html},
                    "404": {"description": "bad link"},
                },
            },
            "post": {
                "summary": "Unsubscribe the link's email or phone everywhere (any body; RFC 8058 one-click)",
                "parameters": [_TOKEN],
                "responses": {
                    "200": {"description": "unsubscribed", "content": html},
                    "404": {"description": "bad link"},
                    "503": {"description": "the database is unavailable: try again"},
                },
            },
        },
    }


# --- the merchant's contact changes (app/admin/api.py) and segments (app/admin/segments.py) ---------------

SEGMENT_PARAMETER = {
    "name": "segment",
    "in": "query",
    "schema": {"type": "integer"},
    "description": "only the contacts of this segment (combined with q and channel); another shop's: 404",
}
_CONSENT_INPUT = {"type": "string", "enum": ["subscribed", "unsubscribed", "not_subscribed"]}
_NULLABLE_INPUT = {"type": ["string", "null"]}
_IDS = {
    "type": "array",
    "maxItems": 10000,
    "items": {"type": "integer"},
    "description": "contact ids; other shops' ids are ignored",
}
_SEGMENT_FIELDS = [
    "email",
    "phone",
    "email_consent",
    "sms_consent",
    "country",
    "gender",
    "birthday_month",
    "created_at",
    "updated_at",
    "source",
    "form",
    "tag",
    "opened",
    "clicked",
    "sync_status",
]
CONTACT_EDIT_SCHEMAS: dict[str, Any] = {
    "ContactEdit": {
        "type": "object",
        "description": "Only the fields given change. Values are validated as a submission's; null or blank "
        "clears a field (a cleared value is not erased on the platform customer). Other Contact fields "
        "(id, name, source, …) are ignored. An erased person's email or phone (rule 11) is refused (422). "
        "An email or phone another contact holds is allowed: the two contacts stay apart (rule 4). "
        "unsubscribed reaches every contact holding the email or phone (rule 8); subscribed needs the "
        "channel's identifier. Changes are written to the platform customer (rule 9) unless the contact is "
        "local; removed tags stay on the platform customer (tags are only ever added there).",
        "properties": {
            "email": _NULLABLE_INPUT,
            "phone": {"type": ["string", "null"], "description": "E.164, or national in the shop's region"},
            "first_name": _NULLABLE_INPUT,
            "last_name": _NULLABLE_INPUT,
            "birthday": {"type": ["string", "null"], "format": "date"},
            "gender": {"type": ["string", "null"], "enum": ["female", "male", "other", "unspecified", None]},
            "country": {"type": ["string", "null"], "description": "ISO 3166-1 alpha-2"},
            "email_consent": _CONSENT_INPUT,
            "sms_consent": _CONSENT_INPUT,
            "tags": {
                "type": "array",
                "maxItems": 250,
                "items": {"type": "string", "maxLength": 255},
                "description": "the whole list; no commas",
            },
        },
        "examples": [{"first_name": "Ann", "country": "US", "email_consent": "subscribed", "tags": ["vip"]}],
        "additionalProperties": True,
    },
    "SegmentCondition": {
        "type": "object",
        "required": ["field", "op"],
        "description": "email, phone: present | absent (value null). email_consent, sms_consent: is | is_not "
        "a consent state. country: in | not_in a list of ISO codes. gender: is | is_not. birthday_month: is "
        "1-12. created_at, updated_at: within_days | not_within_days N. source, sync_status: is | is_not. "
        "form: submitted | not_submitted a form id. tag: has | has_not. opened, clicked: within_days | "
        "not_within_days N (an opened/clicked event in the last N days). is_not and not_in include contacts "
        "without a value.",
        "properties": {
            "field": {"type": "string", "enum": _SEGMENT_FIELDS},
            "op": {
                "type": "string",
                "enum": [
                    "present",
                    "absent",
                    "is",
                    "is_not",
                    "in",
                    "not_in",
                    "within_days",
                    "not_within_days",
                    "submitted",
                    "not_submitted",
                    "has",
                    "has_not",
                ],
            },
            "value": {"type": ["string", "integer", "array", "null"], "items": {"type": "string"}},
        },
    },
    "Segment": {
        "type": "object",
        "required": ["id", "name", "match", "conditions", "count"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "match": {"type": "string", "enum": ["all", "any"]},
            "conditions": {"type": "array", "items": {"$ref": "#/components/schemas/SegmentCondition"}},
            "count": {"type": "integer", "description": "the contacts in it now"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
    "SegmentInput": {
        "type": "object",
        "description": "POST needs name (match defaults to all); PATCH changes only what is given, and "
        "conditions replaces the whole list. No conditions: every contact. At most 50 conditions.",
        "properties": {
            "name": {"type": "string", "maxLength": 255},
            "match": {"type": "string", "enum": ["all", "any"]},
            "conditions": {
                "type": "array",
                "maxItems": 50,
                "items": {"$ref": "#/components/schemas/SegmentCondition"},
            },
        },
        "examples": [
            {"name": "VIPs", "match": "all", "conditions": [{"field": "tag", "op": "has", "value": "vip"}]}
        ],
    },
}


def _body_of(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _counted(name: str, description: str) -> dict[str, Any]:
    return _json(
        description,
        {"type": "object", "required": [name], "properties": {name: {"type": "integer", "minimum": 0}}},
    )


def contact_item_operations() -> dict[str, Any]:
    """PATCH and DELETE of ``/api/v1/contacts/{id}`` (merged beside its GET)."""
    contact_ref = {"$ref": "#/components/schemas/Contact"}
    return {
        "patch": {
            **ADMIN,
            "summary": "Edit a contact's fields and consent",
            "parameters": [ID_PARAMETER],
            "requestBody": _body_of({"$ref": "#/components/schemas/ContactEdit"}),
            "responses": {
                "200": _json("the contact", contact_ref),
                "400": _error("the body is not a JSON object"),
                "401": UNAUTHORIZED,
                "404": NOT_FOUND,
                "422": FIELD_ERRORS,
            },
        },
        "delete": {
            **ADMIN,
            "summary": "Delete a contact and its events (the platform customer is left alone; audit-logged)",
            "parameters": [ID_PARAMETER],
            "responses": {"204": {"description": "deleted"}, "401": UNAUTHORIZED, "404": NOT_FOUND},
        },
    }


def contact_paths() -> dict[str, Any]:
    """Bulk consent and bulk delete."""
    return {
        "/api/v1/contacts/consent": {
            "post": {
                **ADMIN,
                "summary": "Subscribe or unsubscribe one channel of many contacts",
                "description": "An unsubscribe also reaches every contact holding the email or phone "
                "(rule 8). Subscribing needs the channel's identifier. updated counts the listed contacts "
                "that changed.",
                "requestBody": _body_of(
                    {
                        "type": "object",
                        "required": ["ids", "channel", "state"],
                        "properties": {
                            "ids": _IDS,
                            "channel": {"type": "string", "enum": ["email", "sms"]},
                            "state": {"type": "string", "enum": ["subscribed", "unsubscribed"]},
                        },
                    }
                ),
                "responses": {
                    "200": _counted("updated", "how many of the listed contacts changed"),
                    "400": _error("the body is not a JSON object"),
                    "401": UNAUTHORIZED,
                    "422": FIELD_ERRORS,
                },
            }
        },
        "/api/v1/contacts/delete": {
            "post": {
                **ADMIN,
                "summary": "Delete many contacts (platform customers are left alone; audit-logged)",
                "requestBody": _body_of({"type": "object", "required": ["ids"], "properties": {"ids": _IDS}}),
                "responses": {
                    "200": _counted("deleted", "how many were deleted"),
                    "400": _error("the body is not a JSON object"),
                    "401": UNAUTHORIZED,
                    "422": FIELD_ERRORS,
                },
            }
        },
    }


def segment_paths() -> dict[str, Any]:
    segment_ref = {"$ref": "#/components/schemas/Segment"}
    segment_input = _body_of({"$ref": "#/components/schemas/SegmentInput"})
    new_segment_input = _body_of(
        {"allOf": [{"$ref": "#/components/schemas/SegmentInput"}, {"required": ["name"]}]}
    )
    return {
        "/api/v1/segments": {
            "get": {
                **ADMIN,
                "summary": "The shop's segments, oldest first, each with its live count",
                "responses": {
                    "200": _json(
                        "the segments",
                        {
                            "type": "object",
                            "required": ["segments"],
                            "properties": {"segments": {"type": "array", "items": segment_ref}},
                        },
                    ),
                    "401": UNAUTHORIZED,
                },
            },
            "post": {
                **ADMIN,
                "summary": "Create a segment",
                "requestBody": new_segment_input,
                "responses": {
                    "201": _json("the new segment", segment_ref),
                    "400": _error("the body is not a JSON object"),
                    "401": UNAUTHORIZED,
                    "422": {**FIELD_ERRORS, "description": "bad parts, named like conditions[2].value"},
                },
            },
        },
        "/api/v1/segments/{id}": {
            "get": {
                **ADMIN,
                "summary": "One segment with its live count",
                "parameters": [ID_PARAMETER],
                "responses": {
                    "200": _json("the segment", segment_ref),
                    "401": UNAUTHORIZED,
                    "404": NOT_FOUND,
                },
            },
            "patch": {
                **ADMIN,
                "summary": "Change a segment's name, match or conditions",
                "parameters": [ID_PARAMETER],
                "requestBody": segment_input,
                "responses": {
                    "200": _json("the segment", segment_ref),
                    "400": _error("the body is not a JSON object"),
                    "401": UNAUTHORIZED,
                    "404": NOT_FOUND,
                    "422": {**FIELD_ERRORS, "description": "bad parts, named like conditions[2].value"},
                },
            },
            "delete": {
                **ADMIN,
                "summary": "Delete a segment (its contacts stay)",
                "parameters": [ID_PARAMETER],
                "responses": {"204": {"description": "deleted"}, "401": UNAUTHORIZED, "404": NOT_FOUND},
            },
        },
    }


# --- CSV imports and the contacts export (app/admin/imports.py) -----------------------------------------

_IMPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "status", "total", "processed", "created", "updated", "skipped", "errors"],
    "properties": {
        "id": {"type": "integer"},
        "status": {"enum": ["queued", "running", "done", "failed"]},
        "filename": NULLABLE_STRING,
        "write_platform": {"type": "boolean"},
        "total": {"type": "integer", "description": "data rows in the file (the header is not one)"},
        "processed": {"type": "integer", "description": "equals total when done"},
        "created": {"type": "integer"},
        "updated": {"type": "integer"},
        "skipped": {
            "type": "integer",
            "description": "valid rows that changed nothing or had no email or phone",
        },
        "error_count": {"type": "integer"},
        "errors": {
            "type": "array",
            "description": "the first 100 errors; report.csv lists every row",
            "items": {
                "type": "object",
                "required": ["row", "message"],
                "properties": {
                    "row": {
                        "type": "integer",
                        "description": "as a spreadsheet numbers it: the header is row 1",
                    },
                    "message": {"type": "string"},
                },
            },
        },
        "detail": NULLABLE_STRING,
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": NULLABLE_STRING,
        "finished_at": NULLABLE_STRING,
        "estimated_platform_seconds": {
            "type": "integer",
            "description": "with write_platform only: total rows x the budget one push takes (Shopify 40 "
            "points, SHOPLINE 4 requests) / the shop's platform rate (points or requests restored per "
            "second: what the platform last reported, else 100 for Shopify and 4 for SHOPLINE)",
        },
    },
}


def import_paths() -> dict[str, Any]:
    """CSV in (imports, two passes: checked in the request, imported by the worker) and out (export)."""
    admin = ADMIN
    csv_body = {"text/csv": {"schema": {"type": "string"}}}
    return {
        "/api/v1/imports": {
            "post": {
                **admin,
                "summary": "Import a CSV of contacts (popsync's, Shopify's or Smartpush's columns)",
                "description": "UTF-8 (with or without BOM), comma or semicolon, headers matched "
                "case-insensitively. The file is checked and counted before anything changes; the worker "
                "then syncs its rows by the rules (source import) in batches of 1,000.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file"],
                                "properties": {
                                    "file": {"type": "string", "format": "binary"},
                                    "write_platform": {"enum": ["true", "false"]},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "202": _json("queued", _IMPORT_SCHEMA),
                    "401": UNAUTHORIZED,
                    "422": FIELD_ERRORS,
                },
            }
        },
        "/api/v1/imports/{id}": {
            "get": {
                **admin,
                "summary": "An import's progress, counts and first errors",
                "parameters": [ID_PARAMETER],
                "responses": {
                    "200": _json("the import", _IMPORT_SCHEMA),
                    "401": UNAUTHORIZED,
                    "404": NOT_FOUND,
                },
            }
        },
        "/api/v1/imports/{id}/report.csv": {
            "get": {
                **admin,
                "summary": "Every row's outcome: row, outcome (created, updated, skipped, error), message",
                "parameters": [ID_PARAMETER],
                "responses": {
                    "200": {"description": "the report (streamed)", "content": csv_body},
                    "401": UNAUTHORIZED,
                    "404": NOT_FOUND,
                },
            }
        },
        "/api/v1/contacts/export.csv": {
            "get": {
                **admin,
                "summary": "The contacts as CSV (the list's filters); formula-like cells start with '",
                "parameters": [
                    {"name": "q", "in": "query", "schema": {"type": "string"}},
                    {"name": "channel", "in": "query", "schema": {"enum": ["email", "sms"]}},
                    {"name": "segment", "in": "query", "schema": {"type": "integer"}},
                ],
                "responses": {
                    "200": {"description": "the contacts (streamed)", "content": csv_body},
                    "401": UNAUTHORIZED,
                    "404": NOT_FOUND,
                    "422": FIELD_ERRORS,
                },
            }
        },
    }
