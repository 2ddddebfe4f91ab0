"""Typed application keys of the query service."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from shared.keys import KeyCache
from shared.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)  # the primary: writes, the key cache, reads that must be fresh
READ_POOL = web.AppKey("read_pool", asyncpg.Pool)  # FAULTLINE_QUERY_DATABASE_URL's pool, or POOL itself
KEYS = web.AppKey("keys", KeyCache)
