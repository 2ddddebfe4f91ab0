"""OpenAPI description of `/v1/projects/{id}/webhooks` (services/query/webhooks.py), merged into
services/query/openapi.py's document."""

from __future__ import annotations

from services.query.openapi import (
    BOOL,
    ENCODING,
    LINK,
    PAGING,
    TIME,
    answer,
    errors,
    json_body,
    op,
    path_id,
    query,
)
from shared.openapi import INT, STR, Schema, array, nullable, obj, ref
from shared.webhooks import EVENTS, FORMATS, MAX_URL

EVENT: Schema = {"type": "string", "enum": list(EVENTS)}
HOOK_FIELDS: dict[str, Schema] = {
    "id": INT,
    "project_id": INT,
    "url": STR,
    "events": array(EVENT),
    "format": {"type": "string", "enum": list(FORMATS)},
    "spike_threshold": nullable(INT),
    "enabled": BOOL,
    "secret_hint": STR,
    "created_at": TIME,
    "updated_at": TIME,
}
SETTABLE: dict[str, Schema] = {
    "url": {"type": "string", "maxLength": MAX_URL, "description": "http:// or https://"},
    "events": array(EVENT, minItems=1),
    "format": {"type": "string", "enum": list(FORMATS), "default": "json"},
    "spike_threshold": nullable(
        {
            "type": "integer",
            "minimum": 1,
            "maximum": 1_000_000_000,
            "description": "Notices in the last hour that make an error.spike (needed with that event)",
        }
    ),
    "enabled": BOOL,
    "secret": {
        "type": "string",
        "minLength": 16,
        "maxLength": 200,
        "description": "Signs every delivery; made for you when absent; never shown after creation",
    },
}
DELIVERY_FIELDS: dict[str, Schema] = {
    "id": {**STR, "format": "uuid", "description": "The delivery id (Faultline-Delivery): every attempt's"},
    "hook_id": INT,
    "event": {"type": "string", "enum": [*EVENTS, "webhook.test"]},
    "status": {"type": "string", "enum": ["pending", "sending", "delivered", "failed"]},
    "attempts": INT,
    "last_status": nullable(INT),
    "last_error": nullable(STR),
    "next_attempt_at": nullable(TIME),
    "created_at": TIME,
    "delivered_at": nullable(TIME),
    "error_id": nullable(INT),
    "notice_id": nullable({**STR, "format": "uuid"}),
    "deploy_id": nullable(INT),
}

SCHEMAS: dict[str, Schema] = {
    "Webhook": obj(HOOK_FIELDS, list(HOOK_FIELDS)),
    "CreatedWebhook": obj({**HOOK_FIELDS, "secret": STR}, [*HOOK_FIELDS, "secret"]),
    "NewWebhook": {**obj(SETTABLE, ["url", "events"]), "additionalProperties": False},
    "WebhookUpdate": {**obj(SETTABLE), "additionalProperties": False},
    "WebhookDelivery": obj(DELIVERY_FIELDS, list(DELIVERY_FIELDS)),
}


def paths() -> dict[str, Schema]:
    project = path_id("id", "Project id", {"type": "integer", "minimum": 1, "maximum": (1 << 31) - 1})
    hook = path_id("hook", "Webhook id")
    hook_answer = answer("The webhook", ref("schemas", "Webhook"))
    body_errors = errors(400, 401, 403, 404, 413, 415, 422)
    return {
        "/v1/projects/{id}/webhooks": {
            "get": op(
                "listWebhooks",
                "A project's webhooks (secrets masked)",
                {"200": answer("The webhooks", array(ref("schemas", "Webhook"))), **errors(401, 403, 404)},
                tag="Webhooks",
                params=[project],
                read=False,
            ),
            "post": op(
                "createWebhook",
                "Add a webhook; its secret is in this answer only",
                {
                    "201": answer(
                        "The webhook, with its secret",
                        ref("schemas", "CreatedWebhook"),
                        headers={"Location": ref("headers", "Location")},
                    ),
                    **body_errors,
                },
                tag="Webhooks",
                params=[project, ENCODING],
                read=False,
                body=json_body(
                    ref("schemas", "NewWebhook"),
                    {
                        "url": "https://hooks.example.com/faultline",
                        "events": ["error.new", "error.regressed"],
                    },
                ),
            ),
        },
        "/v1/projects/{id}/webhooks/{hook}": {
            "get": op(
                "getWebhook",
                "One webhook (secret masked)",
                {"200": hook_answer, **errors(401, 403, 404)},
                tag="Webhooks",
                params=[project, hook],
                read=False,
            ),
            "patch": op(
                "updateWebhook",
                "Change a webhook's URL, events, secret, format, threshold or enabled",
                {"200": hook_answer, **body_errors},
                tag="Webhooks",
                params=[project, hook, ENCODING],
                read=False,
                body=json_body(ref("schemas", "WebhookUpdate"), {"enabled": False}),
            ),
            "delete": op(
                "deleteWebhook",
                "Delete a webhook and its deliveries",
                {"204": answer("Deleted"), **errors(401, 403, 404)},
                tag="Webhooks",
                params=[project, hook],
                read=False,
            ),
        },
        "/v1/projects/{id}/webhooks/{hook}/deliveries": {
            "get": op(
                "listWebhookDeliveries",
                "A webhook's deliveries, newest first: status, attempts, last answer, next try",
                {
                    "200": answer("The deliveries", array(ref("schemas", "WebhookDelivery")), headers=LINK),
                    **errors(401, 403, 404, 414, 422),
                },
                tag="Webhooks",
                params=[
                    project,
                    hook,
                    *PAGING,
                    query(
                        "status",
                        "Only deliveries in this state",
                        {"type": "string", "enum": ["pending", "sending", "delivered", "failed"]},
                    ),
                ],
                read=False,
            )
        },
        "/v1/projects/{id}/webhooks/{hook}/test": {
            "post": op(
                "testWebhook",
                "Queue a webhook.test delivery (the deliveries listing shows its outcome)",
                {
                    "202": answer("The queued delivery", ref("schemas", "WebhookDelivery")),
                    **errors(401, 403, 404),
                },
                tag="Webhooks",
                params=[project, hook],
                read=False,
            )
        },
    }
