"""`faultline gateway`: the ingest HTTP service."""

from __future__ import annotations

from services.gateway.app import create_app
from shared.runtime import serve_http


def main() -> None:
    serve_http("gateway", create_app, lambda s: s.gateway_port)


if __name__ == "__main__":
    main()
