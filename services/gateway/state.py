"""Typed application keys of the gateway (the ones protocol handlers use live in shared.protocols.ingest)."""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from shared.protocols.ingest import KEYS, PUBLISHER, SETTINGS

__all__ = ["KEYS", "POOL", "PUBLISHER", "REDIS", "SETTINGS"]

REDIS = web.AppKey("redis", aioredis.Redis)
POOL = web.AppKey("pool", asyncpg.Pool)
