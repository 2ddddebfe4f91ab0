"""Request bodies of the management writes: a JSON object within the size caps."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.query.state import SETTINGS
from shared.web import json_object, read_body


async def json_hash(request: web.Request) -> dict[str, Any]:
    s = request.app[SETTINGS]
    return json_object(await read_body(request, s.max_body, s.max_decompressed))
