"""Sentry: envelopes and the legacy store endpoint (http.py), events into notices (wire.py)."""

from shared.protocols.base import Protocol
from shared.protocols.sentry import http, wire

PROTOCOL = Protocol(http.NAME, http.routes, wire.decode)
