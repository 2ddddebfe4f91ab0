"""Unit tests for shared.frames (and the per-line parser it re-exports from shared.stacklines)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.frames import (
    frame_key,
    grouping_facts,
    in_app,
    is_library,
    mark_in_app,
    normalize_file,
    normalize_function,
    normalize_module,
    parse_line,
    parse_text,
    path_tail,
)
from shared.model import Frame, frame

FIELDS = ("file", "module", "function", "line", "column")


def fields(f: Frame) -> tuple[Any, ...]:
    """The parsed fields of a frame, in a fixed order, for compact assertions."""
    return tuple(f[k] for k in FIELDS)  # type: ignore[literal-required]


# (line, (file, module, function, line, column))
LINES = [
    # Ruby
    ("app/models/user.rb:42:in 'save'", ("app/models/user.rb", None, "save", 42, None)),
    ("app/models/user.rb:42:in `save'", ("app/models/user.rb", None, "save", 42, None)),
    ("(irb):7:in `irb_binding'", ("(irb)", None, "irb_binding", 7, None)),
    ("app/models/user.rb:42:in 'User#save'", ("app/models/user.rb", "User", "save", 42, None)),
    ("lib/foo/bar.rb:9:in 'Foo::Bar.baz'", ("lib/foo/bar.rb", "Foo::Bar", "baz", 9, None)),
    (
        "[PROJECT_ROOT]/app/x.rb:3:in 'block in index'",
        ("[PROJECT_ROOT]/app/x.rb", None, "block in index", 3, None),
    ),
    ("/gems/rack-2.0/lib/rack.rb:10:in 'call'", ("/gems/rack-2.0/lib/rack.rb", None, "call", 10, None)),
    ("\tfrom app/x.rb:5:in '<main>'", ("app/x.rb", None, "<main>", 5, None)),
    ("x.rb:3:in 'block (2 levels) in Foo#bar'", ("x.rb", "Foo", "block (2 levels) in bar", 3, None)),
    ("<internal:kernel>:187:in 'Kernel#loop'", ("<internal:kernel>", "Kernel", "loop", 187, None)),
    ("app/x.rb:1:in 'foo': undefined method 'y' for nil (NoMethodError)", ("app/x.rb", None, "foo", 1, None)),
    (
        "/home/u/.rvm/gems/ruby-3.2@app/gems/x/y.rb:2:in 'z'",
        ("/home/u/.rvm/gems/ruby-3.2@app/gems/x/y.rb", None, "z", 2, None),
    ),
    ("-e:1:in '<main>'", ("-e", None, "<main>", 1, None)),
    # Python
    ('  File "/app/x.py", line 12, in handler', ("/app/x.py", None, "handler", 12, None)),
    ('File "<stdin>", line 1, in <module>', ("<stdin>", None, "<module>", 1, None)),
    ('  File "/app/x.py", line 3', ("/app/x.py", None, None, 3, None)),
    # JavaScript: V8
    ("    at doWork (/app/ex.js:3:27)", ("/app/ex.js", None, "doWork", 3, 27)),
    ("at /app/ex.js:3:27", ("/app/ex.js", None, None, 3, 27)),
    ("at async Promise.all (index 0)", (None, None, "async Promise.all", None, None)),
    ("at new Foo (file:///app/a.mjs:1:2)", ("file:///app/a.mjs", None, "new Foo", 1, 2)),
    ("at Object.<anonymous> (/app/x.js:1:1)", ("/app/x.js", None, "Object.<anonymous>", 1, 1)),
    ("at node:internal/process/task_queues:95:5", ("node:internal/process/task_queues", None, None, 95, 5)),
    ("at Array.forEach (native)", ("native", None, "Array.forEach", None, None)),
    ("at new Promise (<anonymous>)", ("<anonymous>", None, "new Promise", None, None)),
    ("at Foo.bar [as baz] (C:\\app\\x.js:4:9)", ("C:\\app\\x.js", None, "Foo.bar [as baz]", 4, 9)),
    ("at eval (eval at <anonymous> (/app/e.js:1:1), <anonymous>:1:1)", ("/app/e.js", None, "eval", 1, 1)),
    ("at /app/node_modules/@scope/pkg/i.js:1:2", ("/app/node_modules/@scope/pkg/i.js", None, None, 1, 2)),
    # JavaScript: Firefox / Safari
    ("fn@http://x/app.js:10:5", ("http://x/app.js", None, "fn", 10, 5)),
    ("@http://localhost:8080/app.js:10:5", ("http://localhost:8080/app.js", None, None, 10, 5)),
    ("Foo/bar/<@https://x/a.js:1:2", ("https://x/a.js", None, "Foo/bar/<", 1, 2)),
    ("forEach@[native code]", ("[native code]", None, "forEach", None, None)),
    # .NET
    (
        "   at Ns.Type.Method(String arg) in C:\\src\\File.cs:line 77",
        ("C:\\src\\File.cs", "Ns.Type", "Method", 77, None),
    ),
    ("at Ns.Type.Method(String arg, Int32 n)", (None, "Ns.Type", "Method", None, None)),
    ("at Ns.Type.Method()", (None, "Ns.Type", "Method", None, None)),
    ("at Foo`1.Bar[T](T x)", (None, "Foo`1", "Bar[T]", None, None)),
    ("at Ns.Type..ctor(String x)", (None, "Ns.Type", ".ctor", None, None)),
    (
        "at Ns.Svc.<Run>d__5.MoveNext() in /src/Svc.cs:line 9",
        ("/src/Svc.cs", "Ns.Svc.<Run>d__5", "MoveNext", 9, None),
    ),
    (
        "at Program.<>c.<Main>b__0_0() in /app/Program.cs:line 5",
        ("/app/Program.cs", "Program.<>c", "<Main>b__0_0", 5, None),
    ),
    (
        "at System.Linq.Enumerable.First[TSource](IEnumerable`1 source)",
        (None, "System.Linq.Enumerable", "First[TSource]", None, None),
    ),
    # Mono (Unity player, Xamarin)
    (
        "  at Foo.Bar.Baz (System.String x) [0x0001b] in /src/x.cs:12",
        ("/src/x.cs", "Foo.Bar", "Baz", 12, None),
    ),
    ("at Foo.Bar..ctor () [0x00000] in <filename unknown>:0", (None, "Foo.Bar", ".ctor", None, None)),
    ("at Foo.Bar.Baz () <0x12345 + 0x00012>", (None, "Foo.Bar", "Baz", None, None)),
    # Java / Kotlin
    ("\tat com.example.Foo.bar(Foo.java:42)", ("Foo.java", "com.example.Foo", "bar", 42, None)),
    (
        "at sun.reflect.NativeMethodAccessorImpl.invoke0(Native Method)",
        (None, "sun.reflect.NativeMethodAccessorImpl", "invoke0", None, None),
    ),
    ("at com.example.Foo.bar(Unknown Source)", (None, "com.example.Foo", "bar", None, None)),
    (
        "at com.example.FooKt.main$lambda$0(Foo.kt:7)",
        ("Foo.kt", "com.example.FooKt", "main$lambda$0", 7, None),
    ),
    (
        "at java.base/java.lang.Thread.run(Thread.java:829)",
        ("Thread.java", "java.lang.Thread", "run", 829, None),
    ),
    ("at app//com.example.Foo.<init>(Foo.java:3)", ("Foo.java", "com.example.Foo", "<init>", 3, None)),
    ("at com.example.Foo.bar(Foo.java:10) ~[app.jar:1.0]", ("Foo.java", "com.example.Foo", "bar", 10, None)),
    ("at a.b.c(SourceFile:12)", ("SourceFile", "a.b", "c", 12, None)),
    ("at com.example.Foo$1.run(Foo.java:5)", ("Foo.java", "com.example.Foo$1", "run", 5, None)),
    # Go
    ("main.handler(0xc000010000)", (None, "main", "handler", None, None)),
    (
        "main.(*Server).handle(0xc0000a8000, {0x6f0c58, 0xc00009e000})",
        (None, "main", "(*Server).handle", None, None),
    ),
    ("net/http.HandlerFunc.ServeHTTP(0x1, ...)", (None, "net/http", "HandlerFunc.ServeHTTP", None, None)),
    ("github.com/acme/svc/api.(*T).Get(...)", (None, "github.com/acme/svc/api", "(*T).Get", None, None)),
    ("main.main.func1()", (None, "main", "main.func1", None, None)),
    ("panic({0x4a5b20, 0xc000012345})", (None, None, "panic", None, None)),
    ("created by main.main in goroutine 1", (None, "main", "main", None, None)),
    ("\t/app/main.go:42 +0x1d", ("/app/main.go", None, None, 42, None)),
    # PHP
    (
        "#0 /var/www/src/Foo.php(12): App\\Foo->bar('x')",
        ("/var/www/src/Foo.php", "App\\Foo", "bar", 12, None),
    ),
    (
        "#3 /var/www/src/Foo.php(40): App\\Foo::make(Array)",
        ("/var/www/src/Foo.php", "App\\Foo", "make", 40, None),
    ),
    ("#1 {main}", (None, None, "{main}", None, None)),
    ("#2 [internal function]: App\\{closure}('x')", (None, "App", "{closure}", None, None)),
    ("#4 /x/index.php(5): helper()", ("/x/index.php", None, "helper", 5, None)),
]


@pytest.mark.parametrize(("text", "expected"), LINES)
def test_parse_line(text: str, expected: tuple[Any, ...]) -> None:
    f = parse_line(text)
    assert fields(f) == expected
    assert f["in_app"] is None
    assert f["raw"] == text.strip()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "Traceback (most recent call last):",
        "System.InvalidOperationException: Sequence contains no elements",
        "Caused by: java.io.IOException: disk full (errno 28)",
        "Caused by: smtp: user@example.com:25 refused",
        "goroutine 1 [running]:",
        "panic: runtime error: index out of range [5] with length 3",
        "--- End of inner exception stack trace ---",
        "\t... 5 more",
        "ValueError: invalid literal for int() with base 10: 'x'",
        "TypeError: Cannot read properties of undefined (reading 'x')",
        "2024-01-01 12:30:45",
        "at the end of the day",
        "#hashtag",
        "\x00\x01\xff\ufffd binary",
    ],
)
def test_parse_line_unrecognised(text: str) -> None:
    f = parse_line(text)
    assert (f["file"], f["function"], f["line"]) == (None, None, None)
    assert f["raw"] == text.strip()


def test_parse_line_exception_group_pipes_kept_in_raw() -> None:
    f = parse_line('  |   File "/app/x.py", line 3, in f')
    assert fields(f) == ("/app/x.py", None, "f", 3, None)
    assert f["raw"] == '|   File "/app/x.py", line 3, in f'


def test_parse_line_odd_prefixes_and_newlines() -> None:
    assert parse_line("| \t| \t|" * 2000)["function"] is None  # no recursion on repeated pipes
    assert parse_line("a.rb:1:in 'x'\nb.rb:2:in 'y'")["file"] is None  # one line at a time
    assert parse_line("  a.rb:1:in 'x'\r\n")["function"] == "x"


def test_parse_line_huge_numbers_do_not_raise() -> None:
    assert parse_line("a.rb:" + "9" * 5000 + ":in 'x'")["line"] is None


@pytest.mark.parametrize(
    "text",
    [
        "x" * 100_000,
        "at " + "a:1:" * 25_000,
        "a:1:in '" * 12_500,
        "#0 " + "(" * 100_000,
        "f@" * 50_000,
        bytes(range(256)).decode("latin-1") * 400,
    ],
)
def test_huge_and_binary_lines_never_raise(text: str) -> None:
    start = time.perf_counter()
    parse_line(text)
    parse_text(text)
    parse_text((text[:7000] + "\n") * 10)
    normalize_file(text)
    normalize_function(text)
    is_library(text, text, ("*x*",))
    assert time.perf_counter() - start < 2.0


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_fuzz_never_raises(text: str) -> None:
    f = parse_line(text)
    assert f["raw"] == text.strip()
    parse_text(text)
    normalize_file(text)
    normalize_function(text)
    normalize_module(text)
    mark_in_app([parse_line(text)])
    frame_key(parse_line(text))
    grouping_facts(frame(text, text, module=text), (text,), (text,))


# --- parse_text -------------------------------------------------------------------------------------

PYTHON_TB = """\
Traceback (most recent call last):
  File "/app/main.py", line 10, in <module>
    main()
  File "/app/main.py", line 6, in main
    handler({"a": 1})
  File "/usr/lib/python3.11/json/__init__.py", line 346, in loads
    return _default_decoder.decode(s)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "<stdin>", line 1, in <module>
ValueError: bad
"""


def test_parse_text_python_reversed_with_context() -> None:
    frames = parse_text(PYTHON_TB)
    assert [(f["function"], f["line"]) for f in frames] == [
        ("<module>", 1),
        ("loads", 346),
        ("main", 6),
        ("<module>", 10),
    ]
    assert "context_line" not in frames[0]  # <stdin> has no source; "ValueError" is not context
    assert frames[1]["context_line"] == "return _default_decoder.decode(s)"
    assert frames[2]["context_line"] == 'handler({"a": 1})'
    assert frames[3]["context_line"] == "main()"


def test_parse_text_python_chain_final_exception_first() -> None:
    text = """\
Traceback (most recent call last):
  File "/app/a.py", line 2, in f
    raise KeyError("k")
KeyError: 'k'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/app/a.py", line 5, in g
    f()
  File "/app/a.py", line 4, in f2
    raise ValueError("v")
ValueError: v
"""
    assert [f["function"] for f in parse_text(text)] == ["f2", "g", "f"]


def test_parse_text_python_exception_group() -> None:
    text = """\
  + Exception Group Traceback (most recent call last):
  |   File "/app/g.py", line 9, in main
  |     raise ExceptionGroup("eg", [ValueError(1)])
  | ExceptionGroup: eg (1 sub-exception)
  +-+---------------- 1 ----------------
    | ValueError: 1
    +------------------------------------
"""
    (f,) = parse_text(text)
    assert fields(f) == ("/app/g.py", None, "main", 9, None)
    assert f["context_line"] == 'raise ExceptionGroup("eg", [ValueError(1)])'


def test_parse_text_ruby() -> None:
    text = """\
app/models/user.rb:42:in 'User#save': undefined method 'x' for nil (NoMethodError)
\tfrom app/controllers/users_controller.rb:10:in 'UsersController#create'
\tfrom /gems/actionpack-7.0/lib/abstract_controller/base.rb:215:in 'process_action'
"""
    assert [(f["module"], f["function"], f["line"]) for f in parse_text(text)] == [
        ("User", "save", 42),
        ("UsersController", "create", 10),
        (None, "process_action", 215),
    ]


def test_parse_text_node_drops_source_banner() -> None:
    text = """\
/app/ex.js:3
    throw new Error('boom');
    ^

Error: boom
    at doWork (/app/ex.js:3:9)
    at Object.<anonymous> (/app/ex.js:6:1)
    at Module._compile (node:internal/modules/cjs/loader:1256:14)
    at node:internal/main/run_main_module:23:47

Node.js v18.17.0
"""
    frames = parse_text(text)
    assert [f["function"] for f in frames] == ["doWork", "Object.<anonymous>", "Module._compile", None]
    assert frames[0]["column"] == 9


def test_parse_text_firefox() -> None:
    text = "doWork@http://x:8080/static/app.3f9a1c.js:10:5\n@http://x:8080/static/app.3f9a1c.js:20:1\n"
    assert [(f["function"], f["line"]) for f in parse_text(text)] == [("doWork", 10), (None, 20)]


def test_parse_text_dotnet_inner_exception() -> None:
    text = """\
System.InvalidOperationException: outer
 ---> System.ArgumentException: inner (Parameter 'x')
   at Lib.Parser.Parse(String s) in /src/Lib/Parser.cs:line 12
   at App.Program.Run() in /src/App/Program.cs:line 20
   --- End of inner exception stack trace ---
   at App.Program.Run() in /src/App/Program.cs:line 22
--- End of stack trace from previous location ---
   at App.Program.Main(String[] args) in /src/App/Program.cs:line 8
"""
    assert [(f["module"], f["function"], f["line"]) for f in parse_text(text)] == [
        ("Lib.Parser", "Parse", 12),
        ("App.Program", "Run", 20),
        ("App.Program", "Run", 22),
        ("App.Program", "Main", 8),
    ]


def test_parse_text_java_caused_by() -> None:
    text = """\
Exception in thread "main" java.lang.IllegalStateException: outer
\tat com.example.App.run(App.java:20)
\tat com.example.App.main(App.java:5)
Caused by: java.io.IOException: inner
\tat com.example.Io.read(Io.java:7)
\tat com.example.App.run(App.java:18)
\t... 1 more
Suppressed: java.lang.RuntimeException: s
"""
    assert [(f["function"], f["line"]) for f in parse_text(text)] == [
        ("run", 20),
        ("main", 5),
        ("read", 7),
        ("run", 18),
    ]


def test_parse_text_go_panic_pairs_lines_and_keeps_the_panicking_goroutine() -> None:
    text = """\
panic: runtime error: index out of range [5] with length 3

goroutine 1 [running]:
main.handler(0xc000010000, {0x4b2f60, 0x3})
\t/app/main.go:42 +0x1d
panic({0x4a5b20, 0xc000012345})
\t/usr/local/go/src/runtime/panic.go:884 +0x213
main.main()
\t/app/main.go:12 +0x25

goroutine 6 [running]:
main.worker.func1()
\t/app/main.go:20 +0x45
created by main.worker in goroutine 1
\t/app/main.go:18 +0x7a
exit status 2
"""
    frames = parse_text(text)
    assert [fields(f) for f in frames] == [
        ("/app/main.go", "main", "handler", 42, None),
        ("/usr/local/go/src/runtime/panic.go", None, "panic", 884, None),
        ("/app/main.go", "main", "main", 12, None),
    ]
    assert frames[0]["raw"] == "main.handler(0xc000010000, {0x4b2f60, 0x3})\n/app/main.go:42 +0x1d"


def test_parse_text_go_created_by_in_the_first_goroutine() -> None:
    text = """\
goroutine 6 [running]:
main.worker.func1()
\t/app/main.go:20 +0x45
created by main.worker in goroutine 1
\t/app/main.go:18 +0x7a
"""
    assert [fields(f) for f in parse_text(text)] == [
        ("/app/main.go", "main", "worker.func1", 20, None),
        ("/app/main.go", "main", "worker", 18, None),
    ]


def test_parse_text_php_frames_name_the_function_each_line_is_in() -> None:
    # PHP prints, at each line, the function called there; phpbrake and Sentry's PHP SDK send the
    # function the line is in, the throw site first. parse_text does the same.
    text = """\
PHP Fatal error:  Uncaught RuntimeException: boom in /var/www/src/Foo.php:12
Stack trace:
#0 /var/www/src/Foo.php(30): App\\Foo->bar('x')
#1 /var/www/public/index.php(5): App\\Foo->run()
#2 {main}
  thrown in /var/www/src/Foo.php on line 12
"""
    assert [fields(f) for f in parse_text(text)] == [
        ("/var/www/src/Foo.php", "App\\Foo", "bar", 12, None),
        ("/var/www/src/Foo.php", "App\\Foo", "run", 30, None),
        ("/var/www/public/index.php", None, None, 5, None),
    ]


def test_parse_text_php_without_header_keeps_the_called_function() -> None:
    text = "#0 /var/www/src/Foo.php(30): App\\Foo->bar('x')\n#1 {main}\n"
    assert [fields(f) for f in parse_text(text)] == [
        (None, "App\\Foo", "bar", None, None),
        ("/var/www/src/Foo.php", None, None, 30, None),
    ]


def test_parse_text_php_laravel_log_and_thrown_in_only() -> None:
    laravel = (
        '[2024-03-01 12:00:00] production.ERROR: boom {"exception":"[object] (RuntimeException(code: 0): '
        "boom at /var/www/app/Jobs/Sync.php:40)\n[stacktrace]\n"
        "#0 /var/www/vendor/laravel/src/Illuminate/Bus/Dispatcher.php(12): App\\Jobs\\Sync->handle()\n"
        '#1 {main}\n"}\n'
    )
    assert [(f["file"], f["function"], f["line"]) for f in parse_text(laravel)] == [
        ("/var/www/app/Jobs/Sync.php", "handle", 40),
        ("/var/www/vendor/laravel/src/Illuminate/Bus/Dispatcher.php", None, 12),
    ]
    trailer = "#0 /x/a.php(3): f()\n#1 {main}\n  thrown in /x/b.php on line 9\n"
    assert [(f["file"], f["function"], f["line"]) for f in parse_text(trailer)] == [
        ("/x/b.php", "f", 9),
        ("/x/a.php", None, 3),
    ]


def test_parse_text_php_chained_exceptions_shift_per_block() -> None:
    text = """\
InvalidArgumentException: inner in /app/Parser.php:7
Stack trace:
#0 /app/Service.php(20): Parser->parse()
#1 {main}

Next RuntimeException: outer in /app/Service.php:22
Stack trace:
#0 /app/index.php(3): Service->run()
#1 {main}
"""
    assert [(f["file"], f["function"], f["line"]) for f in parse_text(text)] == [
        ("/app/Parser.php", "parse", 7),
        ("/app/Service.php", None, 20),
        ("/app/Service.php", "run", 22),
        ("/app/index.php", None, 3),
    ]


def test_parse_text_crlf_and_empty() -> None:
    assert parse_text("") == []
    assert parse_text("just a message\n\n") == []
    frames = parse_text("Error: x\r\n    at f (/a.js:1:2)\r\n    at g (/a.js:3:4)\r\n")
    assert [f["function"] for f in frames] == ["f", "g"]


# --- is_library / mark_in_app -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "module"),
    [
        ("/usr/local/bundle/gems/rack-2.2.8/lib/rack/builder.rb", None),
        ("/usr/lib/ruby/2.7.0/net/http.rb", None),
        ("<internal:kernel>", None),
        ("[GEM_ROOT]/gems/puma-6.0/lib/puma.rb", None),
        ("/usr/lib/python3.11/json/__init__.py", None),
        ("/app/.venv/lib/python3.11/site-packages/django/core/handlers.py", None),
        ("/usr/lib/python3/dist-packages/requests/api.py", None),
        ("<frozen importlib._bootstrap>", None),
        ("C:\\Python311\\Lib\\asyncio\\events.py", None),
        ("/app/node_modules/express/lib/router/index.js", None),
        ("node:internal/process/task_queues", None),
        ("node:events", None),
        ("internal/main/run_main_module.js", None),
        ("native", None),
        ("[native code]", None),
        ("[PROJECT_ROOT]/vendor/bundle/ruby/3.2.0/gems/x.rb", None),
        ("/var/www/vendor/laravel/framework/src/Foo.php", None),
        ("/usr/local/go/src/runtime/panic.go", None),
        ("runtime/panic.go", None),
        ("/root/go/pkg/mod/github.com/gin-gonic/gin@v1.9.1/gin.go", None),
        ("GOROOT/src/net/http/server.go", None),
        (None, "System.Linq.Enumerable"),
        (None, "Microsoft.AspNetCore.Mvc.Infrastructure.ActionMethodExecutor"),
        ("Thread.java", "java.lang.Thread"),
        (None, "javax.servlet.http.HttpServlet"),
        (None, "jdk.internal.reflect.NativeMethodAccessorImpl"),
        (None, "sun.reflect.NativeMethodAccessorImpl"),
        ("Coroutine.kt", "kotlin.coroutines.jvm.internal.BaseContinuationImpl"),
        (None, "runtime"),
        ("/SITE_PACKAGES/django/core/handlers/base.py", None),  # pybrake
        ("chrome-extension://abcdef/content.js", None),
        ("https://x/static/js/vendors~main.8c1e2f3a.chunk.js", None),
        ("/static/js/chunk-vendors.js", None),
        ("webpack/bootstrap", None),
        ("github.com/gin-gonic/gin@v1.9.1/context.go", None),  # go build -trimpath
        (None, "org.springframework.web.servlet.FrameworkServlet"),
        (None, "com.zaxxer.hikari.pool.HikariPool"),
        (None, "Npgsql.NpgsqlConnector"),
        ("spring-tx-5.3.27.jar!/org/springframework/tx/TransactionInterceptor.class", None),  # javabrake
        ("java.lang.Thread", None),  # javabrake names JDK classes instead of files
    ],
)
def test_is_library_true(file: str | None, module: str | None) -> None:
    assert is_library(file, module)


@pytest.mark.parametrize(
    ("file", "module"),
    [
        ("app/models/user.rb", "User"),
        ("[PROJECT_ROOT]/app/controllers/x.rb", None),
        ("/app/main.py", None),
        ("/app/src/index.js", None),
        ("file:///app/a.mjs", None),
        ("C:\\src\\App\\Program.cs", "App.Program"),
        ("Foo.java", "com.example.Foo"),
        ("/app/main.go", "main"),
        ("/var/www/src/Foo.php", "App\\Foo"),
        (None, None),
        ("", ""),
        ("/app/src/vendors.js", None),  # a file named vendors.js, not a vendor chunk
        ("shop.jar!/com/shop/service/OrderService.class", None),
        ("com.shop.service.OrderService$$EnhancerBySpringCGLIB$$a1b2", None),
        ("views.py", None),
    ],
)
def test_is_library_false(file: str | None, module: str | None) -> None:
    assert not is_library(file, module)


def test_is_library_patterns() -> None:
    assert is_library("/srv/app/lib/legacy/x.rb", None, ("*/lib/legacy/*",))
    assert is_library("C:\\src\\Third\\x.cs", None, ("*/Third/*",))  # backslashes match as slashes
    assert is_library(None, "com.thirdparty.Client", ("com.thirdparty.*",))
    assert not is_library("/srv/app/lib/mine/x.rb", None, ("*/lib/legacy/*",))


def test_mark_in_app() -> None:
    frames = [
        frame("app/models/user.rb", "save", 1),
        frame("/gems/rack/lib/rack.rb", "call", 2),
        frame("/gems/rack/lib/rack.rb", "call", 3, in_app=True),  # the client said so: kept
        frame("/app/main.py", "main", 4, in_app=False),
        frame("/srv/app/vendor/acme/tool.rb", "run", 5),
        frame("/srv/app/lib/legacy/x.rb", "old", 6),
        frame("[PROJECT_ROOT]/lib/ours/y.rb", "y", 7),
        frame(None, "{main}"),
    ]
    before = [dict(f) for f in frames]
    out = mark_in_app(
        frames, app_patterns=("*/vendor/acme/*", "lib/ours/*"), library_patterns=("*/legacy/*",)
    )
    assert [f["in_app"] for f in out] == [True, False, True, False, True, False, True, True]
    assert [dict(f) for f in frames] == before  # input untouched
    assert out[2] is frames[2]


def test_mark_in_app_defaults() -> None:
    out = mark_in_app(
        parse_text("Error: x\n    at f (/app/a.js:1:2)\n    at g (/app/node_modules/x/i.js:3:4)\n")
    )
    assert [f["in_app"] for f in out] == [True, False]
    assert mark_in_app([]) == []


# --- normalize_file ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (None, None),
        ("", ""),
        ("app/models/user.rb", "app/models/user.rb"),
        ("[PROJECT_ROOT]/app/models/user.rb", "app/models/user.rb"),
        ("/PROJECT_ROOT/app/models/user.rb", "app/models/user.rb"),
        ("file:///app/a.mjs", "/app/a.mjs"),
        ("file:///C:/app/a.mjs", "/app/a.mjs"),
        ("http://localhost:8080/static/app.js", "/static/app.js"),
        ("https://cdn.example.com/static/app.3f9a1c.js?v=123#x", "/static/app.js"),
        ("https://x/_next/static/chunks/pages/index-5c9a1f2b3d4e.js", "/_next/static/chunks/pages/index.js"),
        ("https://x/static/js/main.3f9a1c2d.chunk.js", "/static/js/main.chunk.js"),
        ("/app/assets/application-deadbeef.css", "/app/assets/application-deadbeef.css"),  # no digit: a word
        ("https://x/assets/index-C2VtaBTi.js", "/assets/index.js"),  # vite [hash:8]
        ("https://x/assets/Settings-DiwrgTda.js", "/assets/Settings.js"),
        ("https://x/assets/index-5LIQYJZI.js", "/assets/index.js"),  # esbuild
        ("/app/src/my-Settings.js", "/app/src/my-Settings.js"),  # a name, not a hash
        ("/app/src/use-settings.js", "/app/src/use-settings.js"),
        ("/app/public/app.js?v=123", "/app/public/app.js"),
        ("/srv/shop/releases/20240101120000/app/models/user.rb", "/srv/shop/current/app/models/user.rb"),
        ("/srv/shop/current/app/models/user.rb", "/srv/shop/current/app/models/user.rb"),
        ("C:\\src\\App\\Program.cs", "/src/App/Program.cs"),
        ("D:/a/1/s/App/Program.cs", "/a/1/s/App/Program.cs"),
        ("/tmp/tmpa1b2c3/app/main.py", "app/main.py"),
        ("/private/tmp/build-42/main.go", "main.go"),
        ("/tmp/x.py", "/tmp/x.py"),
        ("webpack:///./src/index.js", "/src/index.js"),
        ("./src/index.js", "src/index.js"),
        ("node:internal/process/task_queues", "node:internal/process/task_queues"),
        ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap>"),
    ],
)
def test_normalize_file(path: str | None, expected: str | None) -> None:
    assert normalize_file(path) == expected


def test_normalize_file_same_across_deploys() -> None:
    a = normalize_file("/srv/shop/releases/20240101120000/app/x.rb")
    b = normalize_file("/srv/shop/releases/20240202130000/app/x.rb")
    c = normalize_file("https://cdn.example.com/static/app.0a1b2c3d.js?v=1")
    d = normalize_file("https://other.example.com:8443/static/app.9f8e7d6c.js?v=2")
    assert a == b
    assert c == d


# --- normalize_function -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (None, None),
        ("", None),
        ("save", "save"),
        ("block (2 levels) in foo", "block in foo"),
        ("block (12 levels) in Foo#bar", "block in Foo#bar"),
        ("block in foo", "block in foo"),
        ("$lambda$12", "$lambda"),
        ("lambda$main$0", "lambda$main"),
        ("lambda$null$3", "lambda$null"),
        ("main$lambda$0", "main$lambda"),
        ("foo$lambda-1", "foo$lambda"),
        ("$anonfun$main$1", "$anonfun$main"),
        ("<lambda>", "<lambda>"),
        ("access$000", "access$000"),
        ("<Main>b__0_0", "<Main>b__"),
        ("<Run>g__Local|4_0", "<Run>g__Local|"),
        ("#<Class:0x000055d5c2a0e8f8>.call", "#<Class:0x>.call"),
        ("main.handler(0xc000010000, {0x4b2f60, 0x3})", "main.handler"),
        ("handler(0xc000010000)", "handler"),
        ("main.(*Server).handle(...)", "main.(*Server).handle"),
        ("(*Server).handle", "(*Server).handle"),
        ("Method(String arg, Int32 n)", "Method"),
        ("Bar[T](T x)", "Bar[T]"),
        ("com.example.Foo.bar(Foo.java:42)", "com.example.Foo.bar"),
        ("<top (required)>", "<top (required)>"),
        ("Object.<anonymous>", "Object.<anonymous>"),
        ("async Promise.all", "Promise.all"),
        ("async ", "async"),  # stripped first: a function named "async"
        ("  doWork  ", "doWork"),
    ],
)
def test_normalize_function(name: str | None, expected: str | None) -> None:
    assert normalize_function(name) == expected


def test_normalize_function_is_idempotent() -> None:
    for name in ("block (2 levels) in foo", "lambda$main$0", "main.handler(0x1)", "async f", "<Main>b__0_0"):
        once = normalize_function(name)
        assert normalize_function(once) == once


def test_parse_line_is_fast() -> None:
    lines = [text for text, _ in LINES] * 200
    start = time.perf_counter()
    for text in lines:
        parse_line(text)
    assert time.perf_counter() - start < 2.0  # ~12k lines; generous bound, catches pathological regexes


def test_normalize_function_generated_names() -> None:
    assert normalize_function("_app_views_orders_show_html_erb___2147045113548236017_70124532512340") == (
        "_app_views_orders_show_html_erb"
    )
    assert normalize_function("_app_views_x_html_erb__-17352623730_4709362519") == "_app_views_x_html_erb"
    assert normalize_function("{closure:/var/www/app/X.php:28}") == "{closure}"
    assert normalize_function("App\\{closure:App\\X::rows():28}") == "App\\{closure}"
    assert normalize_function("Layer.handle [as handle_request]") == "Layer.handle"
    assert normalize_function("lambda_method12") == "lambda_method"
    assert normalize_function("my_lambda_method12") == "my_lambda_method12"


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (None, None),
        ("com.shop.OrderService$$EnhancerBySpringCGLIB$$a1b2c3d4", "com.shop.OrderService"),
        ("com.shop.OrderService$$FastClassBySpringCGLIB$$e5f6a7b8", "com.shop.OrderService"),
        ("com.shop.OrderService$$SpringCGLIB$$0", "com.shop.OrderService"),
        ("com.shop.Billing$$EnhancerByGuice$$1a2b3c", "com.shop.Billing"),
        ("com.shop.User$HibernateProxy$Xy12Ab", "com.shop.User"),
        ("com.shop.App$$Lambda$14/0x0000000800066840", "com.shop.App$$Lambda"),
        ("com.shop.App$$Lambda$14/1324829795", "com.shop.App$$Lambda"),
        ("com.shop.App$$Lambda/0x000001f00100a000", "com.shop.App$$Lambda"),
        ("com.shop.App$1", "com.shop.App$"),
        ("com.shop.FooKt$main$2", "com.shop.FooKt$main$"),
        ("com.shop.Outer$Inner", "com.shop.Outer$Inner"),
        ("Shop.Services.PricingService+<>c__DisplayClass5_0", "Shop.Services.PricingService"),
        ("Shop.Services.PricingService.<>c", "Shop.Services.PricingService"),
        ("Shop.Outer+Inner", "Shop.Outer.Inner"),
        ("Shop.OrderService+<PlaceOrderAsync>d__5", "Shop.OrderService.<PlaceOrderAsync>d__5"),
    ],
)
def test_normalize_module(module: str | None, expected: str | None) -> None:
    assert normalize_module(module) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("app/models/user.rb", "models/user.rb"),
        ("user.rb", "user.rb"),
        ("/gems/rack-2.2.3/lib/rack.rb", "lib/rack.rb"),
        ("/gems/rack-2.2.3/rack.rb", "rack/rack.rb"),
        ("/root/go/pkg/mod/github.com/gin-gonic/gin@v1.9.1/context.go", "gin/context.go"),
        ("/usr/lib/python3.11/socket.py", "python/socket.py"),
        ("/usr/lib/ruby/3.2.0/set.rb", "set.rb"),
        ("/app/api/v2/users.py", "v2/users.py"),  # no dot: a directory name, not a version
        ("/static/js/", "static/js"),
    ],
)
def test_path_tail(path: str, expected: str) -> None:
    assert path_tail(path) == expected


@pytest.mark.parametrize(
    ("f", "expected"),
    [
        (frame("[PROJECT_ROOT]/app/models/user.rb", "save", 1), "models/user.rb:save"),
        (frame("app/models/user.rb", "save", 9, module="User"), "models/user.rb:save"),  # Ruby 3.4 label
        (frame("/srv/x/app/models/user.rb", "block (2 levels) in User#save"), "models/user.rb:block in save"),
        (frame("app/views.py", "UserView.get", module="app.views"), "app/views.py:get"),  # sentry-python
        (frame("/PROJECT_ROOT/app/views.py", "get"), "app/views.py:get"),  # pybrake
        (frame("/app/src/user.js", "async UserService.save [as handle]"), "src/user.js:save"),
        (frame("/app/src/user.js", "new UserService"), "src/user.js:UserService"),
        (frame("/app/src/user.js", "Object.<anonymous>"), "src/user.js:"),
        (frame("https://x/a/app.3f9a1c2d.js", "handleClick/<"), "a/app.js:handleClick"),  # Firefox
        (frame("/var/www/src/Foo.php", "App\\Foo->bar"), "src/Foo.php:bar"),
        (frame("/var/www/src/Foo.php", "App\\Foo::make"), "src/Foo.php:make"),
        (frame("/app/api/handler.go", "(*Server).handle.func1"), "api/handler.go:(*Server).handle.func"),
        (frame("/app/main.go", "main.gowrap2", module="main"), "app/main.go:main.gowrap"),
        (
            frame(None, "MoveNext", module="Shop.OrderService+<PlaceOrderAsync>d__5"),
            "Shop.OrderService:PlaceOrderAsync",
        ),
        (
            frame("/src/Shop/OrderService.cs", "PlaceOrderAsync", module="Shop.OrderService"),
            "Shop.OrderService:PlaceOrderAsync",
        ),
        (frame(None, "<Run>b__0_1", module="Shop.Svc.<>c__DisplayClass5_0"), "Shop.Svc:<Run>b__"),
        (
            frame("<generated>", "placeOrder", module="com.shop.OrderService$$SpringCGLIB$$0"),
            "com.shop.OrderService:placeOrder",
        ),
        (
            frame("OrderService.java", "lambda$placeOrder$3", module="com.shop.OrderService"),
            "com.shop.OrderService:lambda$placeOrder",
        ),
        (frame("shop.jar!/com/shop/OrderService.class", "placeOrder"), "com.shop.OrderService:placeOrder"),
        (frame("nested:/app/app.jar/!BOOT-INF/classes/!/com/shop/A.class", "run"), "com.shop.A:run"),
        (frame("java.lang.Thread", "run"), "java.lang.Thread:run"),
        (frame(None, "{main}"), ":{main}"),
        (frame("<anonymous>", None), None),
        (frame("native", "Array.forEach"), ":Array.forEach"),
        (frame(), None),
    ],
)
def test_frame_key(f: Frame, expected: str | None) -> None:
    assert frame_key(f) == expected


def test_frame_key_never_uses_line_or_column() -> None:
    a = frame("/app/src/a.js", "f", 1, 2)
    b = frame("/app/src/a.js", "f", 100, 200)
    assert frame_key(a) == frame_key(b)


def test_in_app_precedence() -> None:
    gem = frame("/gems/acme-1.0/lib/acme.rb", "call", in_app=False)
    assert not in_app(gem)
    assert in_app(gem, app_patterns=("*/gems/acme-*",))  # the project's setting beats the client's flag
    mine = frame("/app/lib/legacy/x.rb", "old", in_app=True)
    assert in_app(mine)
    assert not in_app(mine, library_patterns=("*/legacy/*",))
    assert in_app(mine, app_patterns=("*/legacy/*",), library_patterns=("*/legacy/*",))  # app wins a tie
    assert not in_app(frame("/app/node_modules/x/i.js", "f"))  # built-in rule when nobody said
    assert in_app(frame(None, "Work", module="Acme.Jobs"), library_patterns=("Other.*",))


def test_grouping_facts_agree_with_frame_key_and_in_app() -> None:
    frames = [
        frame("/gems/rack/lib/rack.rb", "call"),
        frame("app/x.rb", "y", in_app=False),
        frame("<anonymous>", None),
        frame("/srv/app/lib/legacy/x.rb", "old"),
        frame("x" * 5000 + ".py", "f" * 5000),  # too long to memoise: same answer uncached
    ]
    for patterns in ((), ("*/legacy/*",)):
        for f in frames:
            key = frame_key(f)
            expected = (key, in_app(f, (), patterns)) if key is not None else (None, False)
            assert grouping_facts(f, (), patterns) == expected
