"""Stack frames: whole-trace parsing, in-app marking and the normalisation grouping relies on.

Pure functions, stdlib only. Per-line parsing lives in shared.stacklines and is re-exported here.
Everything grouping calls per frame is memoised (paths, modules and names repeat from one notice of a
project to the next), so the gateway pays for each distinct frame once.
"""

from __future__ import annotations

import re
from fnmatch import translate
from functools import lru_cache
from typing import Final

from shared.model import Frame, frame
from shared.stacklines import GO, LOCATION, PHP, PYTHON, UNKNOWN, V8, parse_kind, parse_line

__all__ = [
    "frame_key",
    "grouping_facts",
    "in_app",
    "is_library",
    "mark_in_app",
    "normalize_file",
    "normalize_function",
    "normalize_module",
    "parse_line",
    "parse_text",
    "path_tail",
]

# --- library detection ---------------------------------------------------------------------------
_LIBRARY_FILE: Final = re.compile(
    r"/gems/|\[GEM_ROOT\]|/ruby/\d+\.\d+\.\d+/|<internal:"  # Ruby gems, stdlib, core
    r"|site-packages|dist-packages|SITE_PACKAGES|/lib/python\d|(?i:/python\d+/lib/)|<frozen "  # Python
    r"|node_modules|^node:|^internal/|^native$|^\[native code\]$|^<anonymous>$"  # JS runtimes
    r"|^webpack/(?:bootstrap|runtime)|^webpack:///webpack/"  # webpack's own runtime
    r"|/[\w-]*[~.-]vendors?(?:[~.-][^/]*)?\.js$|/vendors?[~.-][^/]*\.js$"  # vendors~main.js, chunk-vendors.js
    r"|^(?:chrome|moz|safari(?:-web)?)-extension://"  # browser extensions
    r"|/vendor/|^vendor/"  # Ruby/PHP/Go vendored code
    r"|/usr/(?:local/)?(?:lib/)?go[\d.-]*/src/|GOROOT|^runtime/|/go/pkg/mod/|@v\d"  # Go toolchain, modules
)
_LIBRARY_MODULES: Final = (
    # JVM runtime and the frameworks/libraries whose frames sit between app frames
    "java.",
    "javax.",
    "jakarta.",
    "jdk.",
    "sun.",
    "com.sun.",
    "kotlin.",
    "kotlinx.",
    "scala.",
    "groovy.",
    "org.codehaus.groovy.",
    "clojure.",
    "android.",
    "androidx.",
    "com.android.",
    "dalvik.",
    "libcore.",
    "org.springframework.",
    "org.apache.",
    "org.hibernate.",
    "org.eclipse.",
    "org.glassfish.",
    "org.jboss.",
    "io.netty.",
    "io.undertow.",
    "io.micronaut.",
    "io.quarkus.",
    "io.vertx.",
    "io.reactivex.",
    "reactor.",
    "com.fasterxml.",
    "com.google.common.",
    "com.google.gson.",
    "com.google.protobuf.",
    "com.google.inject.",
    "okhttp3.",
    "okio.",
    "retrofit2.",
    "com.zaxxer.",
    "org.postgresql.",
    "com.mysql.",
    "org.slf4j.",
    "ch.qos.logback.",
    "org.junit.",
    "junit.",
    "akka.",
    "io.sentry.",
    "io.airbrake.",
    # .NET runtime and common packages
    "System.",
    "Microsoft.",
    "Newtonsoft.",
    "Npgsql.",
    "Dapper.",
    "Serilog.",
    "NLog.",
    "Polly.",
    "AutoMapper.",
    "MediatR.",
    "Grpc.",
    "StackExchange.",
    "Hangfire.",
    "Castle.",
    "Autofac.",
    "Mono.",
    "Exceptionless.",
    "Sentry.",
    "runtime/",
)
_LIBRARY_MODULE_NAMES: Final = frozenset({"System", "Microsoft", "runtime"})
_JVM_CLASS_NAME: Final = re.compile(r"(?:[a-z_]\w*\.)+[A-Za-z_$][\w$]*")  # java.lang.Thread (javabrake)

# --- normalize_file rules, applied in this order ---------------------------------------------------
_URL_ORIGIN: Final = re.compile(r"[A-Za-z][\w+.-]*://[^/]*")  # scheme://host:port (file:// too) -> gone
_URL_TAIL: Final = re.compile(r"[?#].*")  # URLs: query string and fragment -> gone
_QUERY: Final = re.compile(r"\?.*")  # other paths: query string (?v=123) -> gone
_DRIVE: Final = re.compile(r"^/?[A-Za-z]:(?=/)")  # Windows drive letter (C:/, /C:/ from file:///C:/) -> gone
_PROJECT_ROOT: Final = re.compile(r"^(?:\[PROJECT_ROOT\]|/PROJECT_ROOT)(?:/|$)")  # prefix -> relative path
_RELEASE: Final = re.compile(r"/releases/\d{8,14}/")  # Capistrano release dir -> /current/
_TMP_BUILD: Final = re.compile(r"/(?:private/)?tmp/[^/]+/")  # leading /tmp/<random>/ build dir -> relative
_HASH: Final = re.compile(  # file-name content hash: app.3f9a1c.js, index-5c9a1f2b3d4e.js, index-C2VtaBTi.js
    r"[.-](?=[a-f]*\d)[0-9a-f]{6,}(?=\.)"  # webpack / parcel / next: hex with a digit
    r"|-(?=[\w-]{0,7}(?:\d|(?<!-)[A-Z]))[\w-]{8}(?=\.(?:m?js|css)$)"  # vite / rollup / esbuild [hash:8]
)
_DOT_SEGMENTS: Final = re.compile(r"/(?:\./)+|//+")  # /./ and // -> /
_VERSION_DIR: Final = re.compile(r"[-@_]?v?\d+(?:\.\d+)+[\w.+-]*$")  # rack-2.2.3, gin@v1.9.1, python3.11
_PLACEHOLDER_FILES: Final = frozenset(
    {
        "<anonymous>",
        "native",
        "[native code]",
        "<unknown>",
        "unknown",
        "<generated>",
        "SourceFile",
        "Unknown Source",
        "Native Method",
        "?",
        "",
    }
)

# --- normalize_function rules ----------------------------------------------------------------------
_RUBY_LEVELS: Final = re.compile(r"block \(\d+ levels\) in ")  # -> "block in "
_RUBY_TEMPLATE: Final = re.compile(r"_{2,3}-?\d+_\d+$")  # Rails: _app_views_x_html_erb__4242_7000 -> ..._erb
_LAMBDA_NUMBER: Final = re.compile(  # lambda$main$0, $lambda$12, $lambda-1, ASP.NET's lambda_method12
    r"[$-]\d+(?=$|[$.])|(?<=^lambda_method)\d+$"
)
_DOTNET_ORDINAL: Final = re.compile(r"(?<=>[a-z]__)\d+(?:_\d+)?|(?<=\|)\d+_\d+")  # <Main>b__0_0, |0_0
_ADDRESS: Final = re.compile(r"\b0x[0-9a-fA-F]{4,}")  # memory address -> 0x
_PHP_CLOSURE: Final = re.compile(r"\{closure(?::[^}]*)?\}")  # PHP 8.4 {closure:/app/x.php:12} -> {closure}
_JS_ALIAS: Final = re.compile(r" \[as [^\]]*\]$")  # V8 "Foo.bar [as baz]": the alias is the call site's

# --- normalize_module rules (JVM and .NET class names) ---------------------------------------------
_JVM_PROXY: Final = re.compile(  # generated subclasses stand for the class they proxy
    r"\$\$[A-Za-z]*(?:CGLIB|Guice)[A-Za-z]*\$\$\w+|\$(?:HibernateProxy|ByteBuddy|MockitoMock)\$\w+"
    r"|\$\$_javassist_\w+|\$\$_jvst\w+"
)
_JVM_LAMBDA_CLASS: Final = re.compile(r"\$\$Lambda(?:\$\d+)?(?:/(?:0x)?[0-9a-fA-F]+)?")  # -> $$Lambda
_JVM_ANON: Final = re.compile(r"\$\d+(?=$|\$|\.)")  # Foo$1, FooKt$main$2 -> Foo$, FooKt$main$
_DOTNET_CLOSURE: Final = re.compile(r"\.<>c(?:__DisplayClass\d+_\d+)?(?=$|\.)")  # Program.<>c -> Program
_DOTNET_STATE_MACHINE: Final = re.compile(r"\.<(?P<name>.+)>d__\d*$")  # Svc.<Run>d__5 (+ MoveNext) -> Svc.Run

# --- frame_key: which languages are keyed by class, which by file ---------------------------------
_CLASS_LANGS: Final = frozenset({"java", "kt", "kts", "scala", "groovy", "clj", "cljc", "cs", "vb", "fs"})
_SCRIPT_LANGS: Final = frozenset(
    {
        "py",
        "pyw",
        "pyx",
        "rb",
        "erb",
        "rake",
        "haml",
        "slim",
        "builder",
        "jbuilder",
        "ru",
        "php",
        "phtml",
        "inc",
        "js",
        "mjs",
        "cjs",
        "jsx",
        "ts",
        "tsx",
        "mts",
        "cts",
        "vue",
        "svelte",
        "coffee",
    }
)
_RUBY_PREFIX: Final = re.compile(r"(?:block|rescue|ensure) in ")
_GO_CLOSURE: Final = re.compile(r"(?<=\.)(func|gowrap|deferwrap)\d+(?:\.\d+)*")  # main.func1 -> main.func
_ANONYMOUS: Final = frozenset({"<anonymous>", "anonymous", "?", "<unknown>"})
_GOROUTINE: Final = re.compile(r"goroutine \d+ \[")
_PHP_SITE: Final = re.compile(  # where PHP threw: "...: boom in /x/Foo.php:12", "(... at /x/F.php:3)"
    r".*?\b(?:in|at) (?P<file>(?:[A-Za-z]:)?[^\s:()]+\.(?:php\d?|phtml|inc)):(?P<line>\d+)\)?"
    r"|.*?\bthrown in (?P<tfile>\S+) on line (?P<tline>\d+)"
)
_PHP_THROW_SITE: Final = "php-site"
_CACHE: Final = 8192  # distinct frames remembered per memoised helper
_CACHEABLE: Final = 256  # a longer file, module or function goes uncached: clients cannot fill memory


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
    """Parse a whole multi-line stack trace into frames, innermost (crashing) frame first.

    A Go dump lists every goroutine; only the first block (the one that panicked) is the error's
    stack, so parsing stops at the second ``goroutine N [...]:`` header. A PHP trace names at each
    line the function *called* there; its frames are shifted to name the function the line is *in*
    (as phpbrake and Sentry's PHP SDK send them), the throw site from the header line first.
    """
    lines = text.splitlines()
    pairs: list[tuple[str, Frame]] = []
    kinds: set[str] = set()
    goroutines = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("goroutine ") and _GOROUTINE.match(line):
            goroutines += 1
            if goroutines > 1:
                break
        kind, f = parse_kind(line)
        i += 1
        if kind == UNKNOWN:
            if ".php" in line and len(line) <= 8192 and (m := _PHP_SITE.match(line.strip())):
                site = frame(m["file"] or m["tfile"], None, int(m["line"] or m["tline"]))
                site["raw"] = f["raw"]
                pairs.append((_PHP_THROW_SITE, site))
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
    if PHP in kinds:
        return _php_frames(pairs)
    drop = LOCATION if V8 in kinds else None
    frames = [f for kind, f in pairs if kind != drop and kind != _PHP_THROW_SITE]
    if PYTHON in kinds:
        frames.reverse()  # Python prints oldest call first (and a chain's cause before its effect)
    return frames


def _php_frames(pairs: list[tuple[str, Frame]]) -> list[Frame]:
    """PHP traces (one block per exception, each starting at #0) as canonical frames."""
    out: list[Frame] = []
    block: list[Frame] = []
    site: Frame | None = None
    for kind, f in pairs:
        if kind == _PHP_THROW_SITE:
            if block and site is None:  # "thrown in x on line n" after a trace printed without header
                site = f
            elif block:  # the header of the next exception ("Next Exception: ... in x:n")
                out.extend(_php_shift(block, site))
                block, site = [], f
            elif site is None:
                site = f
        elif kind == PHP:
            if block and f.get("raw", "").startswith("#0 "):
                out.extend(_php_shift(block, site))
                block, site = [], None
            block.append(f)
        else:
            out.append(f)
    out.extend(_php_shift(block, site))
    return out


def _php_shift(block: list[Frame], site: Frame | None) -> list[Frame]:
    """Each frame keeps its file and line and takes the function of the entry below it (its caller)."""
    if not block:
        return []
    calls = [(f["module"], f["function"] if f["function"] != "{main}" else None) for f in block]
    out: list[Frame] = []
    if calls[0][1] is not None:
        inner = site.copy() if site else frame()
        inner["module"], inner["function"] = calls[0]
        inner.setdefault("raw", block[0].get("raw", ""))
        out.append(inner)
    for i, f in enumerate(block):
        if f["file"] is None and f["function"] == "{main}":
            continue
        g = f.copy()
        g["module"], g["function"] = calls[i + 1] if i + 1 < len(calls) else (None, None)
        out.append(g)
    return out


def _jvm_class(path: str) -> str | None:
    """javabrake's "file": a class resource path (``app.jar!/com/x/Foo.class``) or a JDK class name."""
    if path.endswith(".class"):
        inner = path.rsplit("!/", 1)[-1]
        if "classes/" in inner:
            inner = inner.rsplit("classes/", 1)[1]
        return inner[:-6].strip("/").replace("/", ".") or None
    if "/" not in path and "\\" not in path and _JVM_CLASS_NAME.fullmatch(path):
        return path if path.rsplit(".", 1)[1][:1].isupper() else None
    return None


def _builtin_library(file: str | None, module: str | None) -> bool:
    if len(file or "") <= _CACHEABLE and len(module or "") <= _CACHEABLE:
        return _library_cached(file, module)
    return _library(file, module)


def _library(file: str | None, module: str | None) -> bool:
    path = file.replace("\\", "/") if file else None
    if path and _LIBRARY_FILE.search(path):
        return True
    if not module and path:
        module = _jvm_class(path)
    return module is not None and (module.startswith(_LIBRARY_MODULES) or module in _LIBRARY_MODULE_NAMES)


_library_cached: Final = lru_cache(maxsize=_CACHE)(_library)


@lru_cache(maxsize=256)
def _compiled(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex for a project's fnmatch-style globs (case-sensitive, ``*`` crosses ``/``)."""
    return re.compile("|".join(translate(p) for p in patterns)) if patterns else None


def _matches(candidates: tuple[str | None, ...], patterns: tuple[str, ...]) -> bool:
    """Whether any non-empty candidate matches any glob."""
    rx = _compiled(patterns)
    return rx is not None and any(c and rx.match(c) for c in candidates)


def _candidates(file: str | None, module: str | None) -> tuple[str | None, ...]:
    path = file.replace("\\", "/") if file else None
    return (path, normalize_file(path), module)


def is_library(file: str | None, module: str | None, patterns: tuple[str, ...] = ()) -> bool:
    """True for gem / package / runtime / vendored frames, or ones matching a configured glob."""
    if _builtin_library(file or None, module or None):
        return True
    return bool(patterns) and _matches(_candidates(file, module), patterns)


def _project_verdict(
    app_patterns: tuple[str, ...], library_patterns: tuple[str, ...], file: str | None, module: str | None
) -> bool | None:
    """True/False when a project's app/library pattern decides the frame, else None."""
    candidates = _candidates(file, module)
    if app_patterns and _matches(candidates, app_patterns):
        return True
    if library_patterns and _matches(candidates, library_patterns):
        return False
    return None


_project_verdict_cached: Final = lru_cache(maxsize=_CACHE)(_project_verdict)


def _decide(
    f: Frame,
    file: str | None,
    module: str | None,
    library: bool,
    app_patterns: tuple[str, ...],
    library_patterns: tuple[str, ...],
) -> bool:
    if app_patterns or library_patterns:
        short = len(file or "") <= _CACHEABLE and len(module or "") <= _CACHEABLE
        verdict = (_project_verdict_cached if short else _project_verdict)(
            app_patterns, library_patterns, file, module
        )
        if verdict is not None:
            return verdict
    told = f.get("in_app")
    return bool(told) if told is not None else not library


def in_app(f: Frame, app_patterns: tuple[str, ...] = (), library_patterns: tuple[str, ...] = ()) -> bool:
    """Whether a frame is the project's own code.

    The project's settings come first (an app pattern, then a library pattern), then what the client
    said (Sentry's ``in_app``), then the built-in rules for gems, site-packages, node_modules, vendor
    directories and the runtimes' own code.
    """
    file, module = f.get("file") or None, f.get("module") or None
    return _decide(f, file, module, _builtin_library(file, module), app_patterns, library_patterns)


def mark_in_app(
    frames: list[Frame], app_patterns: tuple[str, ...] = (), library_patterns: tuple[str, ...] = ()
) -> list[Frame]:
    """Return frames with in_app decided (see ``in_app``); the input is not mutated."""
    out: list[Frame] = []
    for f in frames:
        decided = in_app(f, app_patterns, library_patterns)
        if f.get("in_app") is not decided:
            f = f.copy()
            f["in_app"] = decided
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


def path_tail(path: str) -> str:
    """The file name and the directory holding it, that directory's version suffix dropped.

    Enough to tell ``blog/views.py`` from ``shop/views.py`` while ignoring where the project (or a
    gem, package or module of some version) was installed.
    """
    path = path.rstrip("/")
    slash = path.rfind("/")
    if slash < 0:
        return path
    name = path[slash + 1 :]
    start = path.rfind("/", 0, slash) + 1
    parent = path[start:slash]
    if parent[-1:].isdigit():
        parent = _VERSION_DIR.sub("", parent)
    return f"{parent}/{name}" if parent else name


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
    if s.endswith("]") and " [as " in s:
        s = _JS_ALIAS.sub("", s)
    if "levels) in " in s:
        s = _RUBY_LEVELS.sub("block in ", s)
    if "lambda" in s or "anonfun" in s:
        s = _LAMBDA_NUMBER.sub("", s)
    if "__" in s or "|" in s:
        s = _DOTNET_ORDINAL.sub("", s)
        if s[-1:].isdigit():
            s = _RUBY_TEMPLATE.sub("", s)
    if "0x" in s:
        s = _ADDRESS.sub("0x", s)
    if "{closure" in s:
        s = _PHP_CLOSURE.sub("{closure}", s)
    return s or None


def normalize_module(module: str | None) -> str | None:
    """A JVM / .NET class name without generated parts: proxies, lambda classes, closure holders."""
    if not module:
        return None
    s = module.strip()
    if "+" in s:
        s = s.replace("+", ".")  # .NET reflection names nested types Outer+Inner
    if "$" in s:
        s = _JVM_PROXY.sub("", s)
        s = _JVM_LAMBDA_CLASS.sub("$$Lambda", s)
        s = _JVM_ANON.sub("$", s)
    if "<>c" in s:
        s = _DOTNET_CLOSURE.sub("", s)
    return s or None


def _member(module: str, function: str | None) -> tuple[str | None, str | None]:
    """Class-keyed languages: (class, method), an async state machine's MoveNext folded into its method."""
    cls = normalize_module(module)
    fn = normalize_function(function)
    if cls and ">d__" in cls and (m := _DOTNET_STATE_MACHINE.search(cls)):
        cls, fn = normalize_module(cls[: m.start()]), normalize_function(m["name"])
    return cls, fn


def _short_name(fn: str | None) -> str | None:
    """Script languages: the bare function or method name, without receiver, class or namespace.

    V8 prints the receiver's type (``Child.save`` for an inherited ``save``), Sentry's Python SDK a
    qualified name, pybrake the bare one, Ruby 3.4 ``User#save`` where 3.3 printed ``save``.
    """
    if not fn:
        return None
    prefix = ""
    if " in " in fn and (m := _RUBY_PREFIX.match(fn)):
        prefix, fn = fn[: m.end()], fn[m.end() :]
    if fn.startswith("new "):
        fn = fn[4:]
    fn = fn.rstrip("/<")  # Firefox: handleClick/< is an anonymous function inside handleClick
    if "<" not in fn and "[" not in fn and "(" not in fn and "{" not in fn:  # no nesting: the last separator
        cut = max(fn.rfind("."), fn.rfind("#"), fn.rfind("\\"), fn.rfind("::") + 1, fn.rfind("->") + 1)
        if cut > 0:
            fn = fn[cut + 1 :]
        return prefix + fn if fn and fn not in _ANONYMOUS else prefix.strip() or None
    depth = 0
    for i in range(len(fn) - 1, 0, -1):
        c = fn[i]
        if c == ">" and fn[i - 1] == "-" and depth == 0:  # PHP App\Foo->bar
            fn = fn[i + 1 :]
            break
        if c in ">])}":
            depth += 1
        elif c in "<[({":
            depth -= 1
        elif depth == 0 and (c in ".#\\" or c == ":" and fn[i - 1] == ":"):
            fn = fn[i + 1 :]
            break
    if not fn or fn in _ANONYMOUS:
        return prefix.strip() or None
    return prefix + fn


def _extension(path: str) -> str:
    dot = path.rfind(".")
    return path[dot + 1 :].lower() if dot > path.rfind("/") else ""


def _key(file: str | None, module: str | None, function: str | None) -> str | None:
    path = normalize_file(file) if file and file not in _PLACEHOLDER_FILES else None
    ext = _extension(path) if path else ""
    if path and not module and (ext == "class" or "." in path and "/" not in path):
        module = _jvm_class(path)  # javabrake sends the class, not the source file
        if module:
            path, ext = None, "class"
    if module and (not path or ext in _CLASS_LANGS):
        where, fn = _member(module, function)
    else:
        where = path_tail(path) if path else module
        fn = normalize_function(function)
        if ext in _SCRIPT_LANGS or (file and "://" in file):
            fn = _short_name(fn)
        elif fn and ext == "go":
            fn = _GO_CLOSURE.sub(r"\1", fn)
    if not where and not fn:
        return None
    return f"{where or ''}:{fn or ''}"


def _facts(file: str | None, module: str | None, function: str | None) -> tuple[str | None, bool]:
    return _key(file, module, function), _library(file, module)


_facts_cached: Final = lru_cache(maxsize=_CACHE)(_facts)


def _fields(f: Frame) -> tuple[str | None, str | None, str | None, bool]:
    file, module, function = f.get("file") or None, f.get("module") or None, f.get("function") or None
    short = (
        (file is None or len(file) <= _CACHEABLE)
        and (module is None or len(module) <= _CACHEABLE)
        and (function is None or len(function) <= _CACHEABLE)
    )
    return file, module, function, short


def frame_key(f: Frame) -> str | None:
    """What identifies a frame for grouping, never its line or column; None when it names nothing.

    JVM and .NET frames are keyed by class and method (the source file adds nothing, and is often
    missing); every other frame by the last two parts of its normalised path and its function name.
    """
    file, module, function, short = _fields(f)
    return (_facts_cached if short else _facts)(file, module, function)[0]


def grouping_facts(
    f: Frame, app_patterns: tuple[str, ...] = (), library_patterns: tuple[str, ...] = ()
) -> tuple[str | None, bool]:
    """``(frame_key(f), in_app(f, ...))`` in one memoised step: the fingerprint's per-frame work."""
    file, module, function, short = _fields(f)
    key, library = (_facts_cached if short else _facts)(file, module, function)
    if key is None:
        return None, False
    if app_patterns or library_patterns:
        return key, _decide(f, file, module, library, app_patterns, library_patterns)
    told = f.get("in_app")
    return key, (not library) if told is None else bool(told)
