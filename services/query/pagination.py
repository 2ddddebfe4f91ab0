"""`page` / `per_page` parameters and the `Link` header."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web

from services.query.state import SETTINGS
from shared.web import ApiError

DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
MAX_INT = (1 << 31) - 1  # project ids are PostgreSQL integers; no page number gets near it either
# Rows an OFFSET may skip: deeper pages answer 422 naming `page` (notices go deeper with the `next`
# link's keyset cursor). Counts behind the `Link` header stop there too, so no list reads unbounded.
MAX_OFFSET = 10_000
# Every Link URL repeats the query, four times in one header line: past this many characters of
# query a list answers 414, so the header stays under the 8 KiB line that clients and proxies read.
MAX_QUERY = 1500
# Per-project lists (`/v1/projects`, `/v1/stats`) answer every project up to this many, then page.
PROJECTS_PER_PAGE = 1000


def invalid(resource: str, field: str) -> ApiError:
    return ApiError(
        422,
        "Validation failed",
        {
            "message": "Validation failed",
            "errors": [{"resource": resource, "field": field, "code": "invalid"}],
        },
    )


def int_param(
    request: web.Request, name: str, default: int | None, lo: int = 1, resource: str = "Query"
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(resource, name) from None
    if not lo <= value <= MAX_INT:
        raise invalid(resource, name)
    return value


def text_param(request: web.Request, name: str) -> str | None:
    """A free-text filter; NUL, which PostgreSQL text refuses (and no stored value holds), is invalid."""
    value = request.query.get(name)
    if value and "\x00" in value:
        raise invalid("Query", name)
    return value or None


def bool_param(request: web.Request, name: str, default: bool | None) -> bool | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.lower()
    if lowered in ("true", "1", "yes", "t"):
        return True
    if lowered in ("false", "0", "no", "f"):
        return False
    raise invalid("Query", name)


@dataclass(frozen=True, slots=True)
class Page:
    page: int
    per_page: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    @property
    def max_page(self) -> int:
        """The deepest page an OFFSET may reach."""
        return MAX_OFFSET // self.per_page + 1

    @property
    def count_cap(self) -> int:
        """How far a list's total needs counting: beyond it every link is already at max_page."""
        return MAX_OFFSET + self.per_page

    @classmethod
    def from_request(
        cls,
        request: web.Request,
        *,
        keyset: bool = False,
        default: int = DEFAULT_PER_PAGE,
        maximum: int = MAX_PER_PAGE,
    ) -> Page:
        """`page` / `per_page`; a page past MAX_OFFSET rows is 422 unless a keyset cursor replaces it."""
        if len(urlencode(list(request.query.items()))) > MAX_QUERY:
            raise ApiError(414, f"Query string over {MAX_QUERY} characters: narrow the filters")
        page = int_param(request, "page", 1, resource="Pagination") or 1
        per_page = int_param(request, "per_page", default, resource="Pagination") or 1
        out = cls(page, min(per_page, maximum))
        if not keyset and out.page > out.max_page:
            raise invalid("Pagination", "page")
        return out

    def link_header(self, request: web.Request, total: int, next_cursor: str | None = None) -> str:
        """RFC 8288 links: first, prev, next, last (prev/next only where they exist).

        With `next_cursor` the next link also carries a keyset cursor, so deep pages stay fast.
        """
        real_last = max(1, -(-total // self.per_page))
        last = min(real_last, self.max_page)  # the deepest page an offset reaches
        links = []

        def url(page: int) -> str:
            query = {
                k: v
                for k, v in request.query.items()
                if k not in ("page", "per_page", "cursor")
                and k not in ("api_key", "access_token", "auth_token", "key", "apikey")
            }
            query.update(page=str(page), per_page=str(self.per_page))
            return f"{request.app[SETTINGS].public_url}{request.path}?{urlencode(query)}"

        links.append(f'<{url(1)}>; rel="first"')
        if self.page > 1:
            links.append(f'<{url(min(self.page - 1, last))}>; rel="prev"')
        if self.page < last or next_cursor and self.page < real_last:
            nxt = url(self.page + 1) + (f"&cursor={next_cursor}" if next_cursor else "")
            links.append(f'<{nxt}>; rel="next"')
        links.append(f'<{url(last)}>; rel="last"')
        return ", ".join(links)
