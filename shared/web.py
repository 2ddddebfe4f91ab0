"""aiohttp pieces both HTTP services use: JSON answers, the error middleware, credentials, bodies."""

from __future__ import annotations

import asyncio
import base64
import contextvars
import functools
import logging
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import asyncpg
import brotli
import orjson
from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler

from shared import ids
from shared.metrics import Metrics

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """A 4xx/5xx answer with a body in the protocol's own shape."""

    def __init__(
        self,
        status: int,
        message: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"message": message} if body is None else body
        self.headers = dict(headers or {})


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(e: ApiError) -> web.Response:
    if e.body == b"":
        return web.Response(status=e.status, headers=e.headers)
    return json_response(e.body, e.status, e.headers)


METRICS = web.AppKey("metrics", Metrics)
REJECT_REASONS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    411: "length_required",
    413: "too_large",
    415: "unsupported_media",
    422: "invalid",
    429: "rate_limited",
    499: "client_closed",  # the client went away mid-request: no answer was delivered
    500: "internal_error",
    503: "unavailable",
}
CLIENT_CLOSED = 499
RETRY_AFTER = "5"  # seconds a client is told to wait while the database is unavailable
# What a database that is down, restarting, overloaded or too slow raises (pool acquire included):
# the service is unavailable for a moment, not broken.
DATABASE_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # cannot connect now, shutdown, statement timeout
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections
    asyncpg.InterfaceError,
)
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, status counts, and the error mapping; no traceback ever reaches a client."""
    return await _around(request, handler, None)


class UnknownKey(Exception):
    """A handler met a credential its process has not heard of yet (its notification may still be on
    the way). A route `guard`ed with a resolver looks it up and runs the handler once more; anywhere
    else it is a 401."""

    def __init__(self, key: str) -> None:
        super().__init__("unknown key")
        self.key = key


KEY_RESOLVED = web.RequestKey("key_resolved", bool)  # set on a request once its unknown key was looked up
UNKNOWN_KEY = "Bad credentials: unknown or revoked API key"
Resolver = Callable[[str], Awaitable[None]]


Finish = Callable[[web.Request, web.StreamResponse], None]


def guard(
    routes: Iterable[web.RouteDef],
    resolver_of: Callable[[web.Application], Resolver | None] | None = None,
    finish: Finish | None = None,
) -> list[web.RouteDef]:
    """`error_middleware`'s work as a wrapper of each route's handler, for an app with no middleware
    at all (the gateway: aiohttp's middleware chain cost ~1.5 us a request there, a tenth of the
    margin it has over the bare-aiohttp ceiling). Add `not_matched_route()` last, so unknown paths
    and methods get the same JSON 404 / 405 the middleware gives.

    Handlers may raise UnknownKey: the key is looked up with `resolver_of(app)`'s resolver and the
    handler runs again, so a key works on its first request while known keys cost no look-up. A
    handler must be safe to run twice up to its first side effect (the gateway's read the body once:
    `shared.protocols.ingest.body`). `finish(request, response)` sees every answer before it is sent
    (the gateway's CORS headers): a plain call, cheaper than an `on_response_prepare` signal."""
    return [
        web.RouteDef(
            r.method,
            r.path,
            # A partial, not a closure: one coroutine frame per request fewer.
            functools.partial(_around, handler=r.handler, resolver_of=resolver_of, finish=finish),
            r.kwargs,
        )
        for r in routes
    ]


async def _not_matched(request: web.Request) -> web.StreamResponse:
    """405 with `Allow` where another route has this path, else 404: what aiohttp's router answers."""
    allowed: set[str] = set()
    this = request.match_info.route.resource
    for resource in request.app.router.resources():
        if resource is not this:
            _, methods = await resource.resolve(request)
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def not_matched_route() -> web.RouteDef:
    """The catch-all route of an app that `guard`s its routes instead of a middleware (add it last)."""
    return web.route("*", "/{unmatched:.*}", _not_matched)


async def _around(
    request: web.Request,
    handler: Handler,
    resolver_of: Callable[[web.Application], Resolver | None] | None = None,
    finish: Finish | None = None,
) -> web.StreamResponse:
    """The handler's answer, or the answer to what it raised; with its request id and counted."""
    rid = request.headers.get("X-Request-Id", "")[:64] or ids.request_id()
    request_id.set(rid)
    try:
        try:
            response = await handler(request)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            response = await _recover(request, handler, resolver_of, e)
    except asyncio.CancelledError:
        metrics = request.app.get(METRICS)
        if metrics is not None and _client_gone(request):
            metrics.inc("http_responses_total", status=str(CLIENT_CLOSED))
            metrics.inc("requests_rejected_total", reason=REJECT_REASONS[CLIENT_CLOSED])
        raise
    response.headers["X-Request-Id"] = rid
    metrics = request.app.get(METRICS)
    if metrics is not None:
        status = response.status
        metrics.inc_series("http_responses_total", _STATUS_SERIES.get(status) or (("status", str(status)),))
        if status >= 400:
            metrics.inc("requests_rejected_total", reason=REJECT_REASONS.get(status, str(status)))
    if finish is not None:
        finish(request, response)
    return response


_STATUS_SERIES = {status: (("status", str(status)),) for status in (200, 201, 202, 204)}
ERROR_SHAPE = "faultline_error_shape"  # the attribute `error_shape` sets on a handler


def error_shape(shape: Callable[[ApiError], ApiError]) -> Callable[[Handler], Handler]:
    """Mark a handler whose errors answer in its protocol's own shape (Sentry's `{"detail"}`, ...):
    the error mapping (`guard`, `error_middleware`) passes each of its ApiErrors through `shape`. An attribute, not a wrapper
    coroutine, so the handler's successful requests pay nothing for it."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, ERROR_SHAPE, shape)
        return handler

    return mark


def _shaped(handler: Handler, e: ApiError) -> web.Response:
    shape: Callable[[ApiError], ApiError] | None = getattr(handler, ERROR_SHAPE, None)
    return error_response(e if shape is None else shape(e))


async def _recover(
    request: web.Request,
    handler: Handler,
    resolver_of: Callable[[web.Application], Resolver | None] | None,
    error: Exception,
) -> web.StreamResponse:
    """The answer to what a handler raised: an unheard-of key is looked up and the handler run once
    more; anything else maps to its status (a redirect is raised on); never a traceback."""
    try:
        try:
            raise error
        except UnknownKey as e:
            resolve = None if resolver_of is None else resolver_of(request.app)
            if resolve is None:
                raise ApiError(401, UNKNOWN_KEY) from None
            await resolve(e.key)
            request[KEY_RESOLVED] = True
            return await handler(request)
    except UnknownKey:  # still unknown after its look-up
        return _shaped(handler, ApiError(401, UNKNOWN_KEY))
    except ApiError as e:
        return _shaped(handler, e)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        reason = e.reason or "Error"
        if e.status == 405:
            reason = f"Method {request.method} not allowed on {request.path}"
        elif e.status == 404:
            reason = "Not Found"
        elif e.status == 413:
            reason = "Request body too large"
        return json_response(
            {"message": reason},
            e.status,
            {k: v for k, v in e.headers.items() if k.lower() in ("allow", "retry-after")},
        )
    except (ConnectionResetError, web.RequestPayloadError) as e:
        if _client_gone(request):
            # Nothing can be answered any more: not an error of ours, not a 500.
            logger.info("client closed the connection method=%s path=%s", request.method, request.path)
            return web.Response(status=CLIENT_CLOSED)
        if isinstance(e, web.RequestPayloadError):
            return json_response({"message": "Malformed request body"}, 400)
        return _unavailable(request, e)
    except DATABASE_UNAVAILABLE as e:
        return _unavailable(request, e)
    except Exception as e:
        return _unexpected(request, e)


def _unavailable(request: web.Request, e: BaseException) -> web.Response:
    logger.warning(
        "database unavailable method=%s path=%s error=%s", request.method, request.path, type(e).__name__
    )
    message = (
        "Service unavailable: the query ran past its time limit; narrow it or retry later"
        if isinstance(e, asyncpg.QueryCanceledError)
        else "Service unavailable: the database is not answering; retry later"
    )
    return json_response({"message": message}, 503, {"Retry-After": RETRY_AFTER})


def _unexpected(request: web.Request, e: BaseException) -> web.Response:
    logger.error("unhandled error method=%s path=%s", request.method, request.path, exc_info=e)
    return json_response({"message": "Internal server error"}, 500)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


_aiohttp_handle_error = RequestHandler.handle_error


def _quiet_handle_error(
    self: RequestHandler,
    request: Any,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> web.StreamResponse:
    """A request aiohttp cannot parse: answer its status with a fixed body, never the offending bytes.

    aiohttp's own answer and its ERROR log line quote the malformed line, credential and all.
    """
    if not isinstance(exc, http_exceptions.HttpProcessingError) or status >= 500:
        return _aiohttp_handle_error(self, request, status, exc, message)
    logger.info(
        "malformed HTTP request remote=%s status=%s error=%s", request.remote, status, type(exc).__name__
    )
    resp = json_response({"message": "Malformed HTTP request"}, status)
    resp.force_close()
    return resp


RequestHandler.handle_error = _quiet_handle_error  # type: ignore[method-assign]


# ---- credentials -----------------------------------------------------------------------------

_PARAM_NAMES = ("api_key", "access_token", "auth_token", "key", "apikey")


def credential_from_headers(request: web.Request) -> str | None:
    """The key from `Api-Key`, `X-Airbrake-Token`, or `Authorization` (Bearer, Token, Basic)."""
    key = request.headers.get("Api-Key") or request.headers.get("X-Airbrake-Token")
    if key:
        return key.strip()
    auth = request.headers.get("Authorization")
    if not auth:
        return None
    scheme, _, value = auth.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme in ("bearer", "token"):
        return value or None
    if scheme == "basic":
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        # Exceptionless: the key as user (password empty or x-oauth-basic), or user "client".
        if user.lower() == "client" and password:
            return password
        return user or password or None
    return None


def credential_from_params(params: Mapping[str, str]) -> str | None:
    for name in _PARAM_NAMES:
        value = params.get(name)
        if value:
            return value.strip()
    return None


def credential(request: web.Request, form: Mapping[str, str] | None = None) -> str | None:
    """The credential in any form the protocols use: headers first, then query, then form."""
    return (
        credential_from_headers(request)
        or credential_from_params(request.query)
        or (credential_from_params(form) if form else None)
    )


# ---- bodies ----------------------------------------------------------------------------------

_CHUNK = 64 * 1024


class _Inflater:
    """Streaming decompressor with a hard cap on output, so a bomb costs almost nothing."""

    def __init__(self, encoding: str, cap: int) -> None:
        self.encoding = encoding
        self.cap = cap
        self.out = bytearray()
        self._zlib: Any = None
        self._br: Any = None
        if encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "br":
            self._br = brotli.Decompressor()
        self._pending = b""

    def _too_big(self) -> ApiError:
        return ApiError(413, f"Decompressed body exceeds {self.cap} bytes")

    def feed(self, data: bytes) -> None:
        if self.encoding == "deflate" and self._zlib is None:
            # "deflate" is zlib-wrapped per the RFC, raw in some clients: sniff the header.
            self._pending += data
            if len(self._pending) < 2:
                return
            data, self._pending = self._pending, b""
            zlib_header = (data[0] & 0x0F) == 8 and (data[0] * 256 + data[1]) % 31 == 0
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        try:
            if self._zlib is not None:
                chunk = self._zlib.decompress(data, self.cap + 1 - len(self.out))
                if self._zlib.unconsumed_tail:
                    raise self._too_big()
                self.out += chunk
            elif self._br is not None:
                self.out += self._br.process(data, output_buffer_limit=self.cap + 1 - len(self.out))
                if not self._br.can_accept_more_data():
                    raise self._too_big()
        except (zlib.error, brotli.error) as e:
            raise ApiError(400, f"Body is not valid {self.encoding} data") from e
        if len(self.out) > self.cap:
            raise self._too_big()

    def finish(self) -> bytes:
        if self._pending:
            raise ApiError(400, f"Body is not valid {self.encoding} data")
        if self._zlib is not None:
            self.out += self._zlib.flush()
            if not self._zlib.eof:
                raise ApiError(400, f"Body is truncated {self.encoding} data")
        if len(self.out) > self.cap:
            raise self._too_big()
        return bytes(self.out)


SUPPORTED_ENCODINGS = ("identity", "gzip", "x-gzip", "deflate", "br")
BODY_TIMEOUT = 30.0  # seconds a client gets to send a whole body (a slow upload holds a connection)


async def read_body(request: web.Request, max_body: int, max_decompressed: int) -> bytes:
    """The request body, decompressed, within both caps (413 above them, 415 for unknown codings) and
    within BODY_TIMEOUT seconds (408 after it)."""
    content = request.content
    if content.is_eof():  # the whole body came with the headers: no read can wait
        if "Content-Encoding" not in request.headers:
            raw = content.read_nowait()
            if len(raw) > max_body:
                raise _too_large(len(raw), max_body)
            return raw
        return await _read_body(request, max_body, max_decompressed)
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            return await _read_body(request, max_body, max_decompressed)
    except TimeoutError:
        raise ApiError(
            408, f"Request body not received within {BODY_TIMEOUT:g} seconds", headers={"Connection": "close"}
        ) from None


def _too_large(size: int, max_body: int) -> ApiError:
    return ApiError(413, f"Request body of {size} bytes exceeds the {max_body}-byte limit")


async def _read_body(request: web.Request, max_body: int, max_decompressed: int) -> bytes:
    encoding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding not in SUPPORTED_ENCODINGS:
        raise ApiError(415, f"Unsupported Content-Encoding {encoding!r}; use gzip, deflate or br")
    length = request.content_length
    if length is not None and length > max_body:
        raise _too_large(length, max_body)
    inflater = None if encoding == "identity" else _Inflater(encoding, max_decompressed)
    raw = bytearray()
    received = 0
    while True:
        chunk = await request.content.read(_CHUNK)
        if not chunk:
            break
        received += len(chunk)
        if received > max_body:
            raise ApiError(413, f"Request body exceeds the {max_body}-byte limit")
        if inflater is None:
            raw += chunk
        else:
            inflater.feed(chunk)
    return bytes(raw) if inflater is None else inflater.finish()


async def health(_: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def root(_: web.Request) -> web.Response:
    return json_response({})


def json_object(
    raw: bytes, invalid: str = "Problems parsing JSON", not_object: str = "Body should be a JSON Hash"
) -> dict[str, Any]:
    """The body as a JSON object; 400 otherwise (Exceptioner's wording unless a protocol has its own)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ApiError(400, invalid) from e
    if not isinstance(data, dict):
        raise ApiError(400, not_object)
    return data


def validation_failed(errors: list[dict[str, str]]) -> ApiError:
    """422 in the Exceptioner shape: every bad field with its resource and code."""
    return ApiError(422, "Validation failed", {"message": "Validation failed", "errors": errors})


def checked_field(
    errors: list[dict[str, str]],
    resource: str,
    obj: dict[str, Any],
    name: str,
    kind: type,
    required: bool = False,
) -> Any:
    """obj[name] when it is a `kind`; else None, with a `missing_field` / `invalid` entry in errors."""
    value = obj.get(name)
    if value is None or value == "":
        if required:
            errors.append({"resource": resource, "field": name, "code": "missing_field"})
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        errors.append({"resource": resource, "field": name, "code": "invalid"})
        return None
    return value
