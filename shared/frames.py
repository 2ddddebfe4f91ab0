"""Stack frames from text: whole-trace parsing, in-app marking and normalisation for grouping.

Pure functions, stdlib only. Per-line parsing lives in shared.stacklines and is re-exported here.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from typing import Final

from shared.model import Frame
from shared.stacklines import GO, LOCATION, PYTHON, UNKNOWN, V8, parse_kind, parse_line

__all__ = ["is_library", "mark_in_app", "normalize_file", "normalize_function", "parse_line", "parse_text"]

# --- library detection ---------------------------------------------------------------------------
_LIBRARY_FILE: Final = re.compile(
    r"/gems/|\[GEM_ROOT\]|/ruby/\d+\.\d+\.\d+/|<internal:"  # Ruby gems, stdlib, core
    r"|site-packages|dist-packages|/lib/python\d|(?i:/python\d+/lib/)|<frozen "  # Python
    r"|node_modules|^node:|^internal/|^native$|^\[native code\]$|^<anonymous>$"  # JS runtimes
    r"|/vendor/|^vendor/"  # Ruby/PHP/Go vendored code
    r"|/usr/(?:local/)?(?:lib/)?go[\d.-]*/src/|GOROOT|^runtime/|/go/pkg/mod/"  # Go toolchain, modules
)
_LIBRARY_MODULES: Final = (
    "System.",
    "Microsoft.",
    "java.",
    "javax.",
    "jdk.",
    "sun.",
    "com.sun.",
    "kotlin.",
    "kotlinx.",
    "scala.",
    "runtime/",
)
_LIBRARY_MODULE_NAMES: Final = frozenset({"System", "Microsoft", "runtime"})

# --- normalize_file rules, applied in this order ---------------------------------------------------
_URL_ORIGIN: Final = re.compile(r"[A-Za-z][\w+.-]*://[^/]*")  # scheme://host:port (file:// too) -> gone
_URL_TAIL: Final = re.compile(r"[?#].*")  # URLs: query string and fragment -> gone
_QUERY: Final = re.compile(r"\?.*")  # other paths: query string (?v=123) -> gone
_DRIVE: Final = re.compile(r"^/?[A-Za-z]:(?=/)")  # Windows drive letter (C:/, /C:/ from file:///C:/) -> gone
_PROJECT_ROOT: Final = re.compile(r"^(?:\[PROJECT_ROOT\]|/PROJECT_ROOT)(?:/|$)")  # prefix -> relative path
_RELEASE: Final = re.compile(r"/releases/\d{8,14}/")  # Capistrano release dir -> /current/
_TMP_BUILD: Final = re.compile(r"/(?:private/)?tmp/[^/]+/")  # leading /tmp/<random>/ build dir -> relative
_HASH: Final = re.compile(r"[.-](?=[a-f]*\d)[0-9a-f]{6,}(?=\.)")  # file name: app.3f9a1c.js -> app.js
_DOT_SEGMENTS: Final = re.compile(r"/(?:\./)+|//+")  # /./ and // -> /

# --- normalize_function rules ----------------------------------------------------------------------
_RUBY_LEVELS: Final = re.compile(r"block \(\d+ levels\) in ")  # -> "block in "
_LAMBDA_NUMBER: Final = re.compile(r"[$-]\d+(?=$|[$.])")  # lambda$main$0, $lambda$12, $lambda-1
_DOTNET_ORDINAL: Final = re.compile(r"(?<=>[a-z]__)\d+(?:_\d+)?|(?<=\|)\d+_\d+")  # <Main>b__0_0, |0_0
_ADDRESS: Final = re.compile(r"\b0x[0-9a-fA-F]{4,}")  # memory address -> 0x


def _context(f: Frame, lines: list[str], i: int, indent: int) -> int:
    """Attach the indented source line after a Python ``File`` line; return the next index."""
    if i < len(lines):
        nxt = lines[i]
        code = nxt.lstrip(" \t|")
        if code and len(nxt) - len(code) > indent and not code.startswith('File "'):
            f["context_line"] = code.rstrip()
            return i + 1
    return i


def _go_location(f: Frame, lines: list[str], i: int) -> int:
    """Fill a Go function frame from the ``\\tfile.go:42 +0x1d`` line below it; return the next index."""
    if i < len(lines) and f["file"] is None:
        kind, loc = parse_kind(lines[i])
        if kind == LOCATION:
            f["file"], f["line"] = loc["file"], loc["line"]
            f["raw"] = f.get("raw", "") + "\n" + loc.get("raw", "")
            return i + 1
    return i


def parse_text(text: str) -> list[Frame]:
    """Parse a whole multi-line stack trace into frames, innermost (crashing) frame first."""
    lines = text.splitlines()
    pairs: list[tuple[str, Frame]] = []
    kinds: set[str] = set()
    i = 0
    while i < len(lines):
        line = lines[i]
        kind, f = parse_kind(line)
        i += 1
        if kind == UNKNOWN:
            continue
        if kind == PYTHON:
            i = _context(f, lines, i, len(line) - len(line.lstrip(" \t|")))
        elif kind == GO:
            i = _go_location(f, lines, i)
        kinds.add(kind)
        pairs.append((kind, f))
    return _finish(pairs, kinds)


def _finish(pairs: list[tuple[str, Frame]], kinds: set[str]) -> list[Frame]:
    """Drop Node's "file:line" source banner when V8 frames exist; put Python innermost first."""
    drop = LOCATION if V8 in kinds else None
    frames = [f for kind, f in pairs if kind != drop]
    if PYTHON in kinds:
        frames.reverse()  # Python prints oldest call first (and a chain's cause before its effect)
    return frames


def is_library(file: str | None, module: str | None, patterns: tuple[str, ...] = ()) -> bool:
    """True for gem / package / runtime / vendored frames, or ones matching a configured glob."""
    path = file.replace("\\", "/") if file else None
    if path and _LIBRARY_FILE.search(path):
        return True
    if module and (module.startswith(_LIBRARY_MODULES) or module in _LIBRARY_MODULE_NAMES):
        return True
    return bool(patterns) and _matches((path, module), patterns)


def _matches(candidates: tuple[str | None, ...], patterns: tuple[str, ...]) -> bool:
    """Whether any non-empty candidate matches any fnmatch-style glob (case-sensitive)."""
    return any(c and fnmatchcase(c, p) for c in candidates for p in patterns)


def mark_in_app(
    frames: list[Frame], app_patterns: tuple[str, ...] = (), library_patterns: tuple[str, ...] = ()
) -> list[Frame]:
    """Return frames with in_app decided where the client left it None (the input is not mutated)."""
    out: list[Frame] = []
    for f in frames:
        if f.get("in_app") is None:  # .get: tolerate frames decoded from older/foreign payloads
            f = f.copy()
            file, module = f.get("file"), f.get("module")
            app = bool(app_patterns) and _matches((file, normalize_file(file), module), app_patterns)
            f["in_app"] = app or not is_library(file, module, library_patterns)
        out.append(f)
    return out


def normalize_file(path: str | None) -> str | None:
    """Make a path stable across deploys and hosts (rules documented next to their regexes above)."""
    if not path:
        return path
    p = path.strip().replace("\\", "/")
    m = _URL_ORIGIN.match(p)
    if m:
        p = _URL_TAIL.sub("", p[m.end() :])
    elif "?" in p:
        p = _QUERY.sub("", p)
    p = _DRIVE.sub("", p, count=1) if ":" in p else p
    if "PROJECT_ROOT" in p:
        p = _PROJECT_ROOT.sub("", p, count=1)
    if "/releases/" in p:
        p = _RELEASE.sub("/current/", p)
    if "tmp/" in p and (m := _TMP_BUILD.match(p)):
        p = p[m.end() :]
    slash = p.rfind("/") + 1
    if "." in p[slash:]:
        p = p[:slash] + _HASH.sub("", p[slash:])
    p = _DOT_SEGMENTS.sub("/", p)
    return p[2:] if p.startswith("./") else p


def _strip_call(name: str) -> str:
    """Drop a trailing argument/parameter list: ``Method(String a)``, Go's ``f(0xc0, ...)``."""
    depth = 0
    for i in range(len(name) - 1, 0, -1):
        c = name[i]
        if c == ")":
            depth += 1
        elif c == "(":
            depth -= 1
            if depth == 0:
                before = name[i - 1]
                return name[:i] if before.isalnum() or before in "_]>$`" else name
    return name


def normalize_function(name: str | None) -> str | None:
    """Strip what varies between runs/builds: args, lambda ordinals, addresses, Ruby block depth."""
    if name is None:
        return None
    s = name.strip()
    if s.startswith("async "):
        s = s[6:].lstrip()
    if s.endswith(")"):
        s = _strip_call(s)
    if "levels) in " in s:
        s = _RUBY_LEVELS.sub("block in ", s)
    if "lambda" in s or "anonfun" in s:
        s = _LAMBDA_NUMBER.sub("", s)
    if "__" in s or "|" in s:
        s = _DOTNET_ORDINAL.sub("", s)
    if "0x" in s:
        s = _ADDRESS.sub("0x", s)
    return s or None
