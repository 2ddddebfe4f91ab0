"""`faultline query`: the read API."""

from __future__ import annotations

from aiohttp import web

from services.query.app import create_app
from shared.runtime import load_settings, resolve_urls, setup_logging, use_uvloop


def main() -> None:
    setup_logging("query")
    use_uvloop()
    settings = resolve_urls(load_settings())
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.query_port,
        shutdown_timeout=settings.shutdown_grace,
        access_log=None,
        print=None,
        reuse_port=True,
    )


if __name__ == "__main__":
    main()
