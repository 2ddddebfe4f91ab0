"""Grouping: which notices are the same error. docs/grouping.md explains the choices.

Version 1 rules, in order:

1. A client-sent fingerprint wins (Sentry's ``fingerprint`` list, Exceptionless ``@stack`` signature
   data). ``{{ default }}`` in it stands for what rules 2-3 produce, so ``["{{ default }}"]`` alone is
   the default group; ``{{ type }}`` / ``{{ error.type }}``, ``{{ error.value }}`` / ``{{ message }}``,
   ``{{ level }}`` and ``{{ function }}`` are filled in too. Anything else is taken literally.
2. With a usable stack: for every exception of the chain (outermost first), its class name without
   package/module/namespace qualification (``builtins.ValueError``, ``java.lang.X``, ``Foo$Bar`` ->
   ``ValueError``, ``X``, ``Bar``; Ruby ``A::B`` and PHP ``A\\B`` stay whole), then the keys
   (``frames.frame_key``) of its app frames, innermost first:
   - JVM/.NET frames: class + method, generated parts removed (CGLIB/Hibernate proxies, ``$$Lambda``
     classes, lambda and anonymous-class ordinals: ``lambda$main$0`` and ``lambda$main$1`` are the
     same lambda, as compilers renumber them whenever one is added; ``<>c__DisplayClass5_0``; an async
     state machine's ``<Run>d__5.MoveNext`` is ``Run``);
   - every other frame: the last two parts of the normalised path (``blog/views.py``; deploy, release,
     ``[PROJECT_ROOT]``, asset-hash and version directories removed) + the function name (receiver,
     class and namespace dropped for Python, Ruby, JavaScript and PHP; Go closure ordinals dropped).
   Line and column numbers never count. Library frames (frames.in_app) count only when no exception
   of the chain has an app frame. Consecutive repeats (recursion, also cycles of 2-3 frames) count
   once, so recursion depth does not split an error.
3. Without a usable stack (no frame names a file, class or function): the chain's class names and the
   outermost message with its variable parts replaced (``parameterize``).
4. Non-error events (logs, feature usage, 404s, sessions): type + source + (for logs) message.

Version 2 (``VERSIONS``) is version 1 with one more rule in ``parameterize``: a run of two or more
digits glued to the end of a word is a number too (``worker42``, ``shard17``, ``sha256`` ->
``worker<num>``, ...), where version 1 keeps it (it only replaces numbers that stand alone or follow
``_``). A message-grouped error that named a host, shard or job by number splits into one error per
number under version 1 and is one error under version 2.

Every version stays here as it was: ``VERSION`` is the one a project without a ``grouping_version``
setting is grouped with (what every error was grouped with before versions were chosen per project),
``LATEST`` the newest. Rules that would regroup existing errors get a new version instead of changing
what an existing one produces; a project moves to it through a transition window (docs/grouping.md).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson

from shared.frames import grouping_facts, in_app
from shared.model import ExceptionInfo, Notice, stack_key

VERSION = 1  # a project without a grouping_version setting
LATEST = 2
VERSIONS = (1, 2)

_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_CLOCK = r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:\s?[ap]m)?"
_ZONE = r"(?:\s?(?:z|utc|gmt)?[+-]\d{2}:?\d{2}\b|\s?(?:z|utc|gmt)\b)?"
_PARAMS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p, re.IGNORECASE), r)
    for p, r in (
        (r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>`]+", "<url>"),
        (r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b", "<email>"),
        (r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", "<uuid>"),
        # ISO 8601 / SQL / Ruby Time#to_s: 2024-01-05T12:30:45.123Z, 2024-01-05 12:30:45 +0100
        (rf"\b\d{{4}}-\d{{2}}-\d{{2}}(?:[t ]{_CLOCK})?{_ZONE}", "<date>"),
        # RFC 2822 / JS Date / syslog: Tue, 14 Nov 2023 12:00:00 GMT; Nov 14 2023; Nov 14 12:00:01
        (
            rf"\b(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*,?\s+)?"
            rf"(?:\d{{1,2}}\s+{_MONTH}(?:\s+\d{{4}})?|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?)"
            rf"(?:,?\s+{_CLOCK})?{_ZONE}",
            "<date>",
        ),
        (rf"(?<![\w:.]){_CLOCK}(?![\w:])", "<time>"),  # not x.rb:12:30 (a line and column)
        (r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b", "<ip>"),
        (  # IPv6, full or with "::": 2001:db8::1, ::1, fe80::1 -- not Ruby's Foo::Bar (no digit)
            r"(?<![\w:])(?=[0-9a-f:]*\d)(?=[0-9a-f:]*::|(?:[0-9a-f]{1,4}:){7})"
            r"[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?![\w:])",
            "<ip>",
        ),
        (r"\b0x[0-9a-f]+\b", "<hex>"),
        (r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{6,}\b", "<hex>"),  # digests, object ids
        (r"(?<!\w)'[^'\n]{0,200}'(?!\w)", "<str>"),  # not the apostrophe in "can't"
        (
            r"\"[^\"\n]{0,200}\"|`[^`'\n]{0,200}[`']|\u2018[^\u2019\n]{0,200}\u2019|\u201c[^\u201d\n]{0,200}\u201d",
            "<str>",
        ),
        (r"(?<![a-z\d])\d+(?:\.\d+)?", "<num>"),  # 42, 3.14, order_1234 -- not utf8 or sha256
    )
)
# Version 2's addition: digits at the end of a word (worker42), not one digit (utf8, md5, ipv6).
_GLUED_NUMBER = re.compile(r"(?<=[a-z])\d{2,}(?![a-z\d])", re.IGNORECASE)
_VARIABLE = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")
_MAX_PERIOD = 3  # longest repeated cycle of frames collapsed (mutual recursion a->b->a->b)


def parameterize(message: str | None, version: int = VERSION) -> str:
    """The message's first line with numbers, ids, addresses, quoted values, ... replaced by placeholders."""
    if not message:
        return ""
    text = message.strip()
    if not text:
        return ""
    text = text.splitlines()[0][:1000]
    for pattern, repl in _PARAMS:
        text = pattern.sub(repl, text)
    if version >= 2:
        text = _GLUED_NUMBER.sub("<num>", text)
    return text


def short_type(name: str | None) -> str:
    """An exception class without its package/module: clients disagree on qualifying it."""
    if not name:
        return ""
    name = name.strip()
    cut = max(name.rfind("."), name.rfind("$"), name.rfind("+"))
    return name[cut + 1 :] if 0 <= cut < len(name) - 1 else name


def _collapse(keys: list[str]) -> list[str]:
    """Fold recursion: repeated keys, or repeated cycles of up to 3 keys (mutual recursion), count once.

    Walked from the outermost frame in, where recursion is entered the same way every time; a partial
    cycle left at the innermost end (where the overflow happened to strike) is dropped, and a stack
    that is nothing but one cycle (V8 keeps 10 frames) is rotated to a fixed starting point.
    """
    out: list[str] = []
    cycle: list[str] = []
    cycle_end = 0
    for key in reversed(keys):
        out.append(key)
        n = len(out)
        for period in range(1, _MAX_PERIOD + 1):
            if n >= 2 * period and out[n - period :] == out[n - 2 * period : n - period]:
                del out[n - period :]
                cycle, cycle_end = out[-period:], len(out)
                break
    if cycle:
        residue = out[cycle_end:]
        if residue and len(residue) < len(cycle) and residue == cycle[: len(residue)]:
            del out[cycle_end:]
        if len(cycle) > 1 and len(out) == len(cycle):
            i = cycle.index(min(cycle))
            out = cycle[i:] + cycle[:i]
    out.reverse()
    return out


def _stack_parts(
    chain: Sequence[ExceptionInfo], app: tuple[str, ...], lib: tuple[str, ...]
) -> list[str] | None:
    """Rule 2's parts, or None when no frame of the chain names anything."""
    keyed: list[list[tuple[str, bool]]] = []
    any_key = any_app = False
    for exc in chain:
        keys: list[tuple[str, bool]] = []
        for f in exc.get("frames") or ():
            key, mine = grouping_facts(f, app, lib)
            if key is not None:
                any_app = any_app or mine
                keys.append((key, mine))
        any_key = any_key or bool(keys)
        keyed.append(keys)
    if not any_key:
        return None
    parts: list[str] = []
    for exc, keys in zip(chain, keyed, strict=True):
        parts.append(short_type(exc.get("type")))
        parts.extend(_collapse([k for k, mine in keys if mine or not any_app]))
    return parts


@functools.lru_cache(maxsize=1024)
def _stack_parts_of(chain_json: bytes, app: tuple[str, ...], lib: tuple[str, ...]) -> tuple[str, ...] | None:
    parts = _stack_parts(orjson.loads(chain_json), app, lib)
    return None if parts is None else tuple(parts)


def _chain_stack_parts(
    chain: Sequence[ExceptionInfo], app: tuple[str, ...], lib: tuple[str, ...]
) -> list[str] | None:
    """`_stack_parts`, remembered per distinct chain of types and frames (`stack_key`): clients
    send the same few stacks again and again. A chain without a key is walked."""
    try:
        named = stack_key([{"type": exc.get("type"), "frames": exc.get("frames")} for exc in chain])
    except AttributeError:  # not the canonical shape
        named = None
    if named is None:
        return _stack_parts(chain, app, lib)
    parts = _stack_parts_of(named, app, lib)
    return None if parts is None else list(parts)


def has_stack_parts(chain: Sequence[ExceptionInfo], app: tuple[str, ...], lib: tuple[str, ...]) -> bool:
    """Whether rule 2 groups this chain by its frames (then no message enters the fingerprint)."""
    return _chain_stack_parts(chain, app, lib) is not None


def default_parts(
    notice: Notice,
    app_patterns: tuple[str, ...] = (),
    library_patterns: tuple[str, ...] = (),
    version: int = VERSION,
) -> list[str]:
    """The components rules 2-4 of `version` produce for a notice."""
    kind = notice.get("type") or "error"
    if kind != "error":
        parts = [kind, notice.get("source") or ""]
        if kind == "log" or not parts[1]:
            parts.append(parameterize(notice.get("message"), version))
        return parts
    chain = notice.get("exceptions") or []
    stack = _chain_stack_parts(chain, app_patterns, library_patterns)
    if stack is not None:
        return stack
    types = [short_type(e.get("type")) for e in chain if e.get("type")] or [
        short_type(notice.get("exception"))
    ]
    first = chain[0] if chain else None
    message = (first and first.get("message")) or notice.get("message")
    return ["message", *types, parameterize(message, version)]


def _digest(parts: Iterable[str]) -> str:
    return hashlib.sha1("\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _variable(name: str, notice: Notice, default: Callable[[], list[str]]) -> list[str] | None:
    """What a Sentry fingerprint variable stands for; None for one this server does not know."""
    chain = notice.get("exceptions") or []
    first = chain[0] if chain else None
    if name == "default":
        return default()
    if name in ("type", "error.type"):
        return [(first and first.get("type")) or notice.get("exception") or ""]
    if name in ("error.value", "message"):
        return [(first and first.get("message")) or notice.get("message") or ""]
    if name == "level":
        return [notice.get("level") or ""]
    if name == "function":
        frames = first["frames"] if first else []
        return [next((f.get("function") or "" for f in frames if in_app(f)), "")]
    return None


def fingerprint(
    notice: Notice,
    app_patterns: tuple[str, ...] = (),
    library_patterns: tuple[str, ...] = (),
    version: int = VERSION,
) -> str:
    """The 40-hex SHA-1 that decides which error a notice belongs to under the rules of `version`."""
    if version not in VERSIONS:
        raise ValueError(f"unknown grouping version {version}")
    client = notice.get("client_fingerprint")

    def default() -> list[str]:
        return default_parts(notice, app_patterns, library_patterns, version)

    if not client:
        return _digest(default())
    expanded: list[str] = []
    only_default = True
    for item in client:
        text = str(item)
        m = _VARIABLE.fullmatch(text.strip())
        value = _variable(m[1].lower(), notice, default) if m else None
        only_default = only_default and m is not None and m[1].lower() == "default"
        expanded.extend(value if value is not None else [text])
    if only_default:  # ["{{ default }}"] is exactly the default group
        return _digest(default())
    return _digest(["client", *expanded])


def grouping_versions(settings: Mapping[str, Any]) -> tuple[int, int | None, int]:
    """A project's (grouping version, version its transition window moves from, window end in Unix ms).

    Settings as services/query/grouping.py writes them: ``grouping_version`` (absent: ``VERSION``)
    and ``grouping_transition`` ``{"from": 1, "until": "<ISO time>"}`` while a window is open."""
    version = settings.get("grouping_version")
    if not isinstance(version, int) or version not in VERSIONS:
        version = VERSION
    transition = settings.get("grouping_transition")
    if not isinstance(transition, Mapping):
        return version, None, 0
    previous, until = transition.get("from"), transition.get("until")
    if not isinstance(previous, int) or previous not in VERSIONS or previous == version:
        return version, None, 0
    try:
        end = dt.datetime.fromisoformat(str(until))
    except ValueError:
        return version, None, 0
    if end.tzinfo is None:
        end = end.replace(tzinfo=dt.UTC)
    return version, previous, int(end.timestamp() * 1000)


def answering_version(settings: Mapping[str, Any], now_ms: int) -> int:
    """The version whose derived id a synchronous answer names (Exceptioner's error_id).

    Inside a transition window the previous one: a notice then goes to the error its previous-version
    fingerprint has (services/worker/collisions.py), or the worker maps that fingerprint to where it went."""
    version, previous, until = grouping_versions(settings)
    return previous if previous is not None and now_ms < until else version
