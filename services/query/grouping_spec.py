"""OpenAPI description of merge and split (services/query/grouping.py), merged into
services/query/openapi.py's document."""

from __future__ import annotations

from services.query.openapi import ENCODING, answer, errors, json_body, op, path_id
from shared.openapi import INT, STR, Schema, array, nullable, obj, ref

MERGE_BODY = obj(
    {"ids": array(INT, minItems=1, maxItems=100, description="Errors to fold into this one")}, ["ids"]
)
SPLIT_BODY: Schema = {
    "type": "object",
    "description": "Exactly one of the two",
    "properties": {
        "fingerprint": {**STR, "description": "A fingerprint of this error (not its own)"},
        "notice_id": {"type": "string", "format": "uuid", "description": "A notice whose fingerprint leaves"},
    },
}
SCHEMAS: dict[str, Schema] = {
    "MergeErrors": MERGE_BODY,
    "SplitError": SPLIT_BODY,
    "SplitResult": obj(
        {
            "id": INT,
            "from": INT,
            "fingerprint": STR,
            "notices_moved": INT,
            "error": nullable(ref("schemas", "ErrorDetail")),
        },
        ["id", "from", "fingerprint", "notices_moved", "error"],
    ),
}


def paths() -> dict[str, Schema]:
    error_id = path_id("id", "Error id (one merged into another names that one)")
    return {
        "/v1/errors/{id}/merge": {
            "post": op(
                "mergeErrors",
                "Fold other errors into this one: counts, hours, notices and their fingerprints' future notices",
                {
                    "200": answer("The merged error", ref("schemas", "ErrorDetail")),
                    **errors(400, 401, 403, 404, 409, 413, 415, 422),
                },
                tag="Errors",
                params=[error_id, ENCODING],
                body=json_body(ref("schemas", "MergeErrors"), {"ids": [12, 34]}),
                read=False,
            )
        },
        "/v1/errors/{id}/split": {
            "post": op(
                "splitError",
                "A fingerprint leaves this error: its stored and future notices form an error of their own",
                {
                    "200": answer("The error split out", ref("schemas", "SplitResult")),
                    **errors(400, 401, 403, 404, 409, 413, 415, 422),
                },
                tag="Errors",
                params=[error_id, ENCODING],
                body=json_body(
                    ref("schemas", "SplitError"), {"notice_id": "0190a8b2-5f3e-7c1d-8a9b-0c1d2e3f4a5b"}
                ),
                read=False,
            )
        },
    }
