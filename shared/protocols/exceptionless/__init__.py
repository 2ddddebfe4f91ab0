"""Exceptionless v2: routes and answers (http.py), events into notices (wire.py)."""

from shared.protocols.base import Protocol
from shared.protocols.exceptionless import http, wire

PROTOCOL = Protocol(wire.PROTOCOL, http.routes, wire.decode)
