"""Parse ONE stack-trace text line (Ruby, Python, JS, .NET, Java, Go, PHP) into a Frame.

Hot path: a line is routed by its first characters or a cheap substring test, so it meets at most a few
anchored regexes; nothing here raises on any input.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

from shared.model import Frame, frame

MAX_LINE: Final = 8192  # longer lines are never real frames; refusing them bounds every regex's cost

# What parse_kind recognised; parse_text uses it for Python context lines and Go function/file pairs.
UNKNOWN: Final = "unknown"
PYTHON: Final = "python"
RUBY: Final = "ruby"
V8: Final = "v8"
GECKO: Final = "gecko"
JVM: Final = "jvm"
DOTNET: Final = "dotnet"
GO: Final = "go"
LOCATION: Final = "location"  # a bare "file:line[:col]" (Go's second line, old Ruby, Safari)
PHP: Final = "php"

_PYTHON = re.compile(r'File "(?P<file>[^"]*)", line (?P<line>\d+)(?:, in (?P<func>.+))?')
_RUBY = re.compile(r"(?:from )?(?P<file>.+?):(?P<line>\d+):in [`'](?P<func>[^`']*)[`'](?::.*)?")
_RUBY_LABEL = re.compile(
    r"(?P<prefix>(?:block|rescue|ensure)(?: \(\d+ levels\))? in )?"
    r"(?P<owner>[A-Z][\w:]*|#<[^>]+>)(?P<sep>[#.])(?P<meth>[^#.].*)"
)
_CALL = re.compile(r"at (?P<name>[^\s(]+)\((?P<args>[^)]*)\)(?P<rest>.*)")  # Java and .NET
_JAVA_SRC = re.compile(
    r"(?P<file>[\w$.<>-]+\.(?:java|kt|kts|scala|groovy|clj|cljc|jsp|aj)|SourceFile|<generated>"
    r"|Unknown Source|Native Method|[\w$.<>-]+(?=:))(?::(?P<line>\d+))?"
)
_JAVA_LOADER = re.compile(r"[\w.@-]*//?")  # "java.base/", "app//", "java.base@17.0.2/"
_DOTNET_IN = re.compile(r" in (?P<file>.+):line (?P<line>\d+)")
_MONO = re.compile(  # Mono / Unity player: "at Ns.T.M (String s) [0x0001b] in /src/T.cs:12"
    r"at (?P<name>[^\s(]+) \([^)]*\) (?:\[0x[0-9a-fA-F]+\]|<0x[0-9a-fA-F]+(?: \+ 0x[0-9a-fA-F]+)?>)"
    r"(?: in (?P<file>.+?):(?P<line>\d+))?"
)
_V8_NAMED = re.compile(r"at (?P<func>[^(]+?) \((?P<loc>.*)\)")
_V8_EVAL = re.compile(r"\((?P<loc>[^()]+:\d+:\d+)\)")
_V8_INDEX = re.compile(r"index \d+")
_LOC = re.compile(r"(?P<file>.+?):(?P<line>\d+)(?::(?P<col>\d+))?")  # after "@" or inside "( )"
_PLAIN = re.compile(
    r"(?:from )?(?P<file>(?:[A-Za-z][\w+.-]*://[^/\s]*|[A-Za-z]:(?=[/\\]))?[^:\s]+?)"
    r":(?P<line>\d+)(?::(?P<col>\d+))?(?: \+0x[0-9a-fA-F]+)?"
)
_GO_CALL = re.compile(r"(?P<func>[^\s(]\S*)\((?P<args>[^()]*)\)")
_GO_CREATED = re.compile(r"created by (?P<func>\S+?)(?:\([^()]*\))?(?: in goroutine \d+)?")
_PHP = re.compile(r"#\d+ (?:(?P<file>.+?)\((?P<line>\d+)\)|\[internal function\]): (?P<call>.+)")
_PHP_MAIN = re.compile(r"#\d+ \{main\}")
_PHP_CALL = re.compile(r"(?:(?P<cls>[\w\\]+)(?:->|::))?(?P<fn>[\w\\]*\{[^}]*\}|[\w\\]+)")


def _num(text: str | None) -> int | None:
    """Line/column number, or None when absent or absurdly long (int() limits digits)."""
    return int(text) if text and len(text) < 10 else None


def _split_dotted(name: str) -> tuple[str | None, str]:
    """Split "Ns.Type.Method" at the last dot outside <> [] (), keeping .NET's ".ctor" whole."""
    if "<" not in name and "[" not in name and "(" not in name:
        i = name.rfind(".")
    else:
        depth, i = 0, -1
        for j in range(len(name) - 1, 0, -1):
            c = name[j]
            if c in ">])":
                depth += 1
            elif c in "<[(":
                depth -= 1
            elif c == "." and depth <= 0:
                i = j
                break
    if i <= 0:
        return None, name
    if name[i - 1] == ".":  # Type..ctor / Type..cctor
        i -= 1
    return name[:i], name[i + 1 :]


def _python(s: str) -> Frame | None:
    """`File "/app/x.py", line 12, in handler`."""
    m = _PYTHON.fullmatch(s)
    return frame(m["file"], m["func"], _num(m["line"])) if m else None


def _ruby(s: str) -> Frame | None:
    """`app/x.rb:42:in 'save'`, backticks, Ruby 3.4 `'User#save'` labels, a trailing message."""
    m = _RUBY.fullmatch(s)
    if not m:
        return None
    label, module = m["func"], None
    lm = _RUBY_LABEL.fullmatch(label)
    if lm:
        module, label = lm["owner"], (lm["prefix"] or "") + lm["meth"]
    return frame(m["file"], label or None, _num(m["line"]), module=module)


def _at(s: str) -> tuple[str, Frame] | None:
    """Lines starting "at ": Java, .NET, then V8 (named, then anonymous)."""
    m = _CALL.fullmatch(s)
    if m:
        args, rest = m["args"], m["rest"]
        jm = None if rest.startswith(" in ") else _JAVA_SRC.fullmatch(args)
        if jm:
            name = m["name"]
            lm = _JAVA_LOADER.match(name)
            module, function = _split_dotted(name[lm.end() :] if lm else name)
            file = jm["file"] if jm["file"] not in ("Unknown Source", "Native Method") else None
            return JVM, frame(file, function, _num(jm["line"]), module=module)
        dm = _DOTNET_IN.fullmatch(rest) if rest else None
        if dm or not rest:
            module, function = _split_dotted(m["name"])
            file, line = (dm["file"], _num(dm["line"])) if dm else (None, None)
            return DOTNET, frame(file, function, line, module=module)
    if (" [0x" in s or " <0x" in s) and (m := _MONO.fullmatch(s)):
        module, function = _split_dotted(m["name"])
        if m["file"] == "<filename unknown>":
            return DOTNET, frame(None, function, module=module)
        return DOTNET, frame(m["file"], function, _num(m["line"]), module=module)
    m = _V8_NAMED.fullmatch(s)
    if m:
        return V8, _v8(m["func"], m["loc"])
    m = _LOC.fullmatch(s, 3)
    if m and s[-1] != ")":
        return V8, frame(m["file"], None, _num(m["line"]), _num(m["col"]))
    return None


def _v8(func: str, loc: str) -> Frame:
    """A named V8 frame; loc is "file:line:col", "native", "<anonymous>", "index 0" or an eval chain."""
    if loc.startswith("eval at "):
        em = _V8_EVAL.search(loc)
        loc = em["loc"] if em else loc
    m = _LOC.fullmatch(loc)
    if m:
        return frame(m["file"], func, _num(m["line"]), _num(m["col"]))
    file = None if _V8_INDEX.fullmatch(loc) else loc or None
    return frame(file, func)


def _gecko(s: str) -> Frame | None:
    """Firefox/Safari `fn@http://x/app.js:10:5`, `@url:line:col`, `fn@[native code]`."""
    func, _, loc = s.partition("@")
    if ": " in func:
        return None  # a message that happens to contain an e-mail address
    if loc == "[native code]":
        return frame(loc, func or None)
    m = _LOC.fullmatch(loc)
    if not m:
        return None
    return frame(m["file"], func or None, _num(m["line"]), _num(m["col"]))


def _go(s: str) -> Frame | None:
    """Go's function line `pkg/path.(*T).Method(0x1, ...)` or `created by main.main in goroutine 1`."""
    m = _GO_CREATED.fullmatch(s) if s.startswith("created by ") else _GO_CALL.fullmatch(s)
    if not m:
        return None
    name = m["func"]
    slash = name.rfind("/")
    dot = name.find(".", slash + 1)
    if dot <= 0:
        return frame(None, name) if name == "panic" else None
    return frame(None, name[dot + 1 :], module=name[:dot])


def _plain(s: str) -> Frame | None:
    """A bare location: Go's `/app/main.go:42 +0x1d`, Ruby's `-e:1`, Safari's `http://x/a.js:1:2`."""
    m = _PLAIN.fullmatch(s)
    if not m or not any(c in m["file"] for c in "./\\<(-"):
        return None
    return frame(m["file"], None, _num(m["line"]), _num(m["col"]))


def _php(s: str) -> Frame | None:
    """`#0 /var/www/src/Foo.php(12): App\\Foo->bar('x')`, `#2 [internal function]: f()`, `#1 {main}`."""
    if _PHP_MAIN.fullmatch(s):
        return frame(None, "{main}")
    m = _PHP.fullmatch(s)
    if not m:
        return None
    call, module = m["call"], None
    cm = _PHP_CALL.match(call)
    function = cm["fn"] if cm else call.partition("(")[0]
    if cm and cm["cls"]:
        module = cm["cls"]
    elif "\\" in function:
        module, _, function = function.rpartition("\\")
    return frame(m["file"], function or None, _num(m["line"]), module=module or None)


def _dispatch(s: str) -> tuple[str, Frame | None]:
    """Route a stripped, non-empty line to the one or two parsers its shape allows."""
    c = s[0]
    if c == "#" and (f := _php(s)):
        return PHP, f
    if c == "F" and s.startswith('File "') and (f := _python(s)):
        return PYTHON, f
    if c == "a" and s.startswith("at ") and (r := _at(s)):
        return r
    if ":in " in s and (f := _ruby(s)):
        return RUBY, f
    if "@" in s and (f := _gecko(s)):
        return GECKO, f
    if (c == "c" or s[-1] == ")") and (f := _go(s)):
        return GO, f
    if f := _plain(s):
        return LOCATION, f
    return UNKNOWN, None


def parse_kind(line: str) -> tuple[str, Frame]:
    """Parse one line and say which shape it was (UNKNOWN frames have only ``raw``)."""
    raw = line.strip()
    # Python ExceptionGroup tracebacks prefix "| "; raw keeps the prefix.
    s = raw.lstrip("| \t") if raw[:1] == "|" else raw
    # Embedded newlines never occur in one frame line, and "." would backtrack over them.
    kind, f = (UNKNOWN, None) if not s or len(s) > MAX_LINE or "\n" in s else _dispatch(s)
    if f is None:
        f = frame()
    f["raw"] = raw
    return kind, f


_parse_cached = lru_cache(maxsize=16384)(parse_kind)
_CACHEABLE_LINE = 512  # longer lines are rare and would crowd the cache


def parse_line(line: str) -> Frame:
    """Parse one stack-trace line of any supported language; unrecognised lines keep only ``raw``.

    Memoised: clients send the same few stacks again and again (the worker's per-notice decoding
    spent ~24 us of ~67 us here on the benchmark's Exceptioner notices). Callers get their own copy.
    """
    if isinstance(line, str) and len(line) <= _CACHEABLE_LINE:
        f = _parse_cached(line)[1]
        out = f.copy()
        if "pre_context" in f:
            out["pre_context"] = list(f["pre_context"])
        if "post_context" in f:
            out["post_context"] = list(f["post_context"])
        return out
    return parse_kind(line)[1]
