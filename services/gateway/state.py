"""Typed application keys of the gateway."""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from services.gateway.publisher import Publisher
from services.gateway.ratelimit import RateLimiter
from shared.keys import KeyCache
from shared.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", aioredis.Redis)
KEYS = web.AppKey("keys", KeyCache)
PUBLISHER = web.AppKey("publisher", Publisher)
LIMITER = web.AppKey("limiter", RateLimiter)
POOL = web.AppKey("pool", asyncpg.Pool)
