"""The OpenAPI 3.0 document of /api/v1, served at GET /api/v1/openapi.json.

Written by hand next to api.py and checked against the live daemon by schemathesis in the test
suite (tests/test_openapi.py): every documented operation answers as documented, and no input
it can generate gets a 5xx. Errors are `{"error": "..."}` with a 4xx.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from remediator import __version__
from remediator.api import APPROVAL_STATUSES, MAX_PAGE
from remediator.edge import reply
from remediator.schema import INT64_MAX

_ID = {"type": "integer", "minimum": 0, "maximum": INT64_MAX}
_TEXT = {"type": "string"}
_NULLABLE_TEXT = {"type": "string", "nullable": True}
_ANY_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": _TEXT},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(
    summary: str,
    ok: dict[str, Any],
    *,
    status: str = "200",
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {status: _json(ok), "default": _json(_ref("Error"), "an error, named")},
    }
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    return operation


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


_PAGING = [
    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50}),
    _query("before", _ID),
]
_BY = {"by": _TEXT, "reason": _TEXT}


def _page(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "next"],
        "properties": {"items": {"type": "array", "items": _ref(item)}, "next": _NULLABLE_TEXT},
    }


def _items(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref(item)}},
    }


_STATUS = {"type": "object", "required": ["status"], "properties": {"status": _TEXT}}
_KILLSWITCH = {
    "type": "object",
    "required": ["on"],
    "properties": {"on": {"type": "boolean"}, "source": _TEXT, "by": _NULLABLE_TEXT},
    "additionalProperties": True,
}
_INCIDENT = {
    "type": "object",
    "required": ["id", "rule", "status", "key"],
    "properties": {
        "id": _ID,
        "rule": _TEXT,
        "status": {"type": "string", "enum": ["open", "resolved"]},
        "key": {"type": "object", "additionalProperties": _TEXT},
        "value": {"type": "number", "nullable": True},
    },
    "additionalProperties": True,
}


def document() -> dict[str, Any]:
    """The whole document, as served."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "remediator API", "version": __version__},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": ERROR,
                "Incident": _INCIDENT,
                "Action": _ANY_OBJECT,
                "Mute": _ANY_OBJECT,
                "Approval": _ANY_OBJECT,
                "Circuit": _ANY_OBJECT,
                "AuditEntry": _ANY_OBJECT,
                "KillSwitch": _KILLSWITCH,
                "Guardrails": _GUARDRAILS,
            },
        },
    }


_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_GUARDRAILS = {
    "type": "object",
    "required": ["now", "since", "cooldowns", "budgets", "busy_targets", "starts"],
    "properties": {
        "now": _TEXT,
        "since": _TEXT,
        "cooldowns": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["rule", "target", "incident_key", "last_start", "until"],
                "properties": {
                    "rule": _TEXT,
                    "target": _TEXT,
                    "incident_key": _LABELS,
                    "last_start": _TEXT,
                    "until": _TEXT,
                },
            },
        },
        "budgets": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["scope", "max", "per", "used", "left"],
                "properties": {
                    "scope": _TEXT,
                    "max": {"type": "integer"},
                    "per": _TEXT,
                    "used": {"type": "integer"},
                    "left": {"type": "integer"},
                },
            },
        },
        "busy_targets": {"type": "array", "items": _TEXT},
        "starts": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["rule", "action", "target", "key", "incident_key", "started_at"],
                "properties": {
                    "rule": _TEXT,
                    "action": _TEXT,
                    "target": _TEXT,
                    "key": {"type": "array", "items": _TEXT},
                    "incident_key": _LABELS,
                    "started_at": _TEXT,
                },
            },
        },
    },
}


def _paths() -> dict[str, Any]:
    return {
        "/api/v1/incidents": {
            "get": _operation(
                "Incidents, newest first",
                _page("Incident"),
                parameters=[
                    _query("status", {"type": "string", "enum": ["open", "resolved"]}),
                    *_PAGING,
                ],
            )
        },
        "/api/v1/incidents/{id}": {
            "get": _operation(
                "One incident with its claims, attempts and audit",
                _ref("Incident"),
                parameters=[_path("id", _ID)],
            )
        },
        "/api/v1/incidents/{id}/close": {
            "post": _operation(
                "Close an open incident by hand",
                {
                    "type": "object",
                    "required": ["id", "status"],
                    "properties": {"id": _ID, "status": _TEXT},
                },
                parameters=[_path("id", _ID)],
                body={"type": "object", "required": ["reason"], "properties": _BY},
            )
        },
        "/api/v1/incidents/{id}/ack": {
            "post": _operation(
                "Acknowledge an incident: its page is acknowledged and its escalation path stops",
                {
                    "type": "object",
                    "required": ["incident", "status"],
                    "properties": {"incident": _ID, "status": _TEXT},
                },
                parameters=[_path("id", _ID)],
                body={"type": "object", "properties": {"by": _TEXT}},
            )
        },
        "/api/v1/history": {
            "get": _operation(
                "The audit trail, newest first", _page("AuditEntry"), parameters=_PAGING
            )
        },
        "/api/v1/actions": {
            "get": _operation(
                "Claims and their outcome, newest first", _page("Action"), parameters=_PAGING
            )
        },
        "/api/v1/killswitch": {
            "get": _operation("The kill switch", _ref("KillSwitch")),
            "put": _operation(
                "Set the kill switch",
                _ref("KillSwitch"),
                body={
                    "type": "object",
                    "required": ["on"],
                    "properties": {"on": {"type": "boolean"}, **_BY},
                },
            ),
        },
        "/api/v1/mutes": {
            "get": _operation(
                "Mutes",
                _items("Mute"),
                parameters=[_query("all", {"type": "string", "enum": ["1", "true"]})],
            ),
            "post": _operation(
                "Add a mute",
                _ref("Mute"),
                status="201",
                body={
                    "type": "object",
                    "required": ["duration"],
                    "properties": {
                        "rule": _TEXT,
                        "target": _TEXT,
                        "matchers": _TEXT,
                        "duration": _TEXT,
                        **_BY,
                    },
                },
            ),
        },
        "/api/v1/mutes/{id}": {
            "delete": _operation("End a mute", _STATUS, parameters=[_path("id", _ID)])
        },
        "/api/v1/approvals": {
            "get": _operation(
                "Approvals",
                _items("Approval"),
                parameters=[_query("status", {"type": "string", "enum": list(APPROVAL_STATUSES)})],
            )
        },
        "/api/v1/approvals/{id}": {
            "post": _operation(
                "Approve or deny",
                _ref("Approval"),
                parameters=[_path("id", _ID)],
                body={
                    "type": "object",
                    "required": ["decision"],
                    "properties": {
                        "decision": {"type": "string", "enum": ["approve", "deny"]},
                        **_BY,
                    },
                },
            )
        },
        "/api/v1/circuits": {"get": _operation("Circuit breakers", _items("Circuit"))},
        "/api/v1/circuits/{target}/reset": {
            "post": _operation("Close a circuit", _STATUS, parameters=[_path("target", _TEXT)])
        },
        "/api/v1/guardrails": {
            "get": _operation(
                "The guardrails that read the store: cooldowns running, budgets left, busy "
                "targets, and the action starts they count (what `simulate --url` judges with)",
                _ref("Guardrails"),
            )
        },
        "/api/v1/openapi.json": {"get": _operation("This document", _ANY_OBJECT)},
    }


async def serve(request: web.Request) -> web.Response:
    return reply(_DOCUMENT)


_DOCUMENT = document()
