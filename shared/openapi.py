"""Building blocks both services' OpenAPI 3.0.3 descriptions use, and the operations paths they share."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
OBJ: Schema = {"type": "object", "additionalProperties": True}


def obj(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    """An object schema that allows fields beyond the listed ones, as the protocols do."""
    out: Schema = {"type": "object", "properties": properties, "additionalProperties": True}
    if required:
        out["required"] = required
    return out


def nullable(schema: Schema) -> Schema:
    return {**schema, "nullable": True}


def ref(kind: str, name: str) -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def array(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


def answer(
    description: str,
    schema: Schema | None = None,
    media: str = "application/json",
    headers: dict[str, Schema] | None = None,
) -> Schema:
    """A response: a body of `schema` (none when None), the request id header, and any others."""
    out: Schema = {
        "description": description,
        "headers": {"X-Request-Id": ref("headers", "RequestId"), **(headers or {})},
    }
    if schema is not None:
        out["content"] = {media: {"schema": schema}}
    return out


def _open(operation_id: str, summary: str, responses: dict[str, Schema]) -> Schema:
    return {
        "get": {
            "tags": ["Operations"],
            "operationId": operation_id,
            "summary": summary,
            "security": [],
            "responses": responses,
        }
    }


def operations_paths() -> dict[str, Schema]:
    """`/`, `/healthz`, `/readyz`, `/metrics` and `/openapi.json`: the same on both services."""
    return {
        "/": _open("root", "`{}`", {"200": answer("Always `{}`", {"type": "object", "maxProperties": 0})}),
        "/healthz": _open(
            "healthz",
            "Liveness",
            {"200": answer("Alive", obj({"status": {"type": "string", "enum": ["ok"]}}, ["status"]))},
        ),
        "/readyz": _open(
            "readyz",
            "Readiness (gateway: Redis and the key cache loaded; query: PostgreSQL)",
            {
                "200": answer("Ready", ref("schemas", "Readiness")),
                "503": answer("Something is down", ref("schemas", "Readiness")),
            },
        ),
        "/metrics": _open(
            "metrics", "Prometheus metrics", {"200": answer("Prometheus text format", STR, "text/plain")}
        ),
        "/openapi.json": _open("openapi", "This document", {"200": answer("OpenAPI 3.0", OBJ)}),
    }
