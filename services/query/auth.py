"""Who may read: user-scoped tokens see everything; client keys only their client configuration."""

from __future__ import annotations

from aiohttp import web

from services.query.state import KEYS
from shared.keys import Credential
from shared.web import ApiError, credential


def require_user(request: web.Request) -> Credential:
    """401 without a known credential, 403 for a client-scoped key."""
    key = credential(request)
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
