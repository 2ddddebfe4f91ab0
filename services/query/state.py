"""Typed application keys of the query service."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from shared.keys import KeyCache
from shared.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
KEYS = web.AppKey("keys", KeyCache)
