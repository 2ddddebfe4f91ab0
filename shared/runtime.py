"""Process start-up shared by every command: settings, logging, event loop, server URLs."""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from shared.settings import Settings, SettingsError

SERVERS_FILE = "servers.json"


def load_settings() -> Settings:
    """Settings from the environment; a malformed one ends the process with one line naming it."""
    try:
        return Settings.from_env()
    except SettingsError as e:
        print(f"faultline: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def resolve_urls(settings: Settings) -> Settings:
    """Fill unset URLs from the embedded servers `faultline up` started (recorded in the data dir)."""
    if settings.database_url and settings.redis_url:
        return settings
    path = settings.data_dir / SERVERS_FILE
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        print(
            "faultline: FAULTLINE_DATABASE_URL / FAULTLINE_REDIS_URL are unset and no embedded servers are"
            f" running (no {path}); start `faultline up` or set the URLs",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    return settings.with_urls(
        settings.database_url or known["database_url"], settings.redis_url or known["redis_url"]
    )


def setup_logging(service: str, level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format=f"%(asctime)s level=%(levelname)s service={service} logger=%(name)s %(message)s",
    )


def use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional on platforms without it
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
