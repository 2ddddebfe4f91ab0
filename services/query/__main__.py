"""`faultline query`: the read API."""

from __future__ import annotations

from services.query.app import create_app
from shared.runtime import serve_http


def main() -> None:
    serve_http("query", create_app, lambda s: s.query_port)


if __name__ == "__main__":
    main()
