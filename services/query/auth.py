"""Who may read: user-scoped tokens see everything; client keys only their client configuration."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Any

from aiohttp import web

from services.query.state import KEYS
from shared.keys import Credential
from shared.web import ApiError, credential_from_headers, credential_from_params

# Runs of characters a key or token is made of (client keys are 32 hex, tokens flt_ + urlsafe).
_KEYISH = re.compile(r"[A-Za-z0-9_\-]{16,}")


def request_credential(request: web.Request, own_params: Collection[str] = ()) -> str | None:
    """The credential of a request; a query parameter the route itself takes is never one.

    (`key` is the Exceptionless configuration route's setting name and a credential name too.)
    """
    query = {k: v for k, v in request.query.items() if k not in own_params}
    return credential_from_headers(request) or credential_from_params(query)


def require_user(request: web.Request, own_params: Collection[str] = ()) -> Credential:
    """401 without a known credential, 403 for a client-scoped key."""
    key = request_credential(request, own_params)
    if not key and request.method in ("GET", "HEAD"):
        # The browser pages' login cookie counts for reads only: a cross-site form cannot use it
        # to resolve errors or post deploys (SameSite=Lax ignores ports, so don't rely on it alone).
        key = request.cookies.get("faultline_token")
    if not key:
        raise ApiError(401, "Requires authentication: send a user-scoped token")
    cred = request.app[KEYS].lookup(key)
    if cred is None:
        raise ApiError(401, "Bad credentials: unknown or revoked token")
    if not cred.is_user:
        raise ApiError(403, "A client-scoped key cannot read this; use a user-scoped token")
    return cred


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def holds_credential(request: web.Request, value: Any) -> bool:
    """Whether a value about to be stored is, or contains, a live key or token (any scope)."""
    keys = request.app[KEYS]
    for text in _strings(value):
        if keys.lookup(text.strip()) is not None:
            return True
        if any(keys.lookup(m) is not None for m in _KEYISH.findall(text)):
            return True
    return False
