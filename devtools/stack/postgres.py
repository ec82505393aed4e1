"""PostgreSQL: reuse a server answering at `database_url`, else run our own cluster in the state folder.

Our cluster is created with initdb as the ``postgres`` OS user (initdb and postgres refuse root), trusts local
connections, listens on 127.0.0.1 at the URL's port and keeps its unix socket in the state folder, so it never
collides with a system cluster's socket in /var/run/postgresql.
"""

from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from psycopg2 import sql
from sqlalchemy.engine import make_url

from devtools.stack import lifecycle, packages, process
from devtools.stack.addresses import is_local
from devtools.stack.outcome import Outcome
from devtools.stack.readiness import port_open
from devtools.stack.registry import PidRecord, Registry
from shared.settings import Settings

NAME = "postgres"
OS_USER = "postgres"
BIN_GLOB = "/usr/lib/postgresql/*/bin"


@dataclass(frozen=True)
class Target:
    """Where clients connect, taken from the SQLAlchemy URL."""

    host: str
    port: int
    user: str
    password: str | None
    database: str

    @classmethod
    def from_url(cls, url: str) -> Target:
        parsed = make_url(url)
        return cls(
            host=parsed.host or "127.0.0.1",
            port=parsed.port or 5432,
            user=parsed.username or "postgres",
            password=parsed.password,
            database=parsed.database or "postgres",
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def connect(self, database: str = "postgres"):  # -> psycopg2 connection
        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database,
            connect_timeout=2,
        )


def answers(target: Target) -> bool:
    """True when the server accepts our user on its maintenance database."""
    try:
        target.connect().close()
    except psycopg2.Error:
        return False
    return True


def ensure_database(target: Target) -> bool:
    """Create the URL's database if missing (CREATE DATABASE cannot run in a transaction: autocommit)."""
    conn = target.connect()
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target.database,))
            if cur.fetchone():
                return False
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target.database)))
            return True
    finally:
        conn.close()


def find_bindir() -> Path | None:
    """The newest installed server's bin folder (Debian keeps initdb/pg_ctl out of PATH)."""
    candidates = sorted(
        (Path(p) for p in glob.glob(BIN_GLOB) if (Path(p) / "pg_ctl").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1]
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found else None


@dataclass(frozen=True)
class Cluster:
    """Our own cluster's files in the state folder and the OS user that runs it."""

    root: Path
    bindir: Path
    uid: int
    gid: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    def run(self, argv: list[str], *, new_session: bool = False, timeout: float = 120) -> tuple[int, str]:
        """Run a server program as the cluster's OS user; returns (exit code, output)."""
        as_other = self.uid != os.geteuid()
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            cwd=self.root,
            user=self.uid if as_other else None,
            group=self.gid if as_other else None,
            extra_groups=[] if as_other else None,
            start_new_session=new_session,
            timeout=timeout,
        )
        return done.returncode, (done.stdout + done.stderr).strip()

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None


def _os_user() -> tuple[int, int]:
    """Root runs the cluster as `postgres`; anyone else runs it as themselves."""
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    entry = pwd.getpwnam(OS_USER)
    return entry.pw_uid, entry.pw_gid


def unreachable_parent(path: Path, uid: int) -> Path | None:
    """The first folder above `path` the given user cannot enter (a clearer error than initdb's)."""
    for parent in reversed(path.resolve().parents):
        info = parent.stat()
        if uid == 0:
            continue
        bit = 0o100 if info.st_uid == uid else 0o001
        if not info.st_mode & bit:
            return parent
    return None


def _prepare(settings: Settings) -> Cluster:
    bindir = find_bindir()
    if bindir is None:
        packages.apt_install("postgresql")
        bindir = find_bindir()
    if bindir is None:
        raise packages.InstallError("no PostgreSQL server binaries found even after installing postgresql")
    uid, gid = _os_user()
    root = Path(settings.state_dir).resolve() / "postgres"
    blocked = unreachable_parent(root, uid)
    if blocked is not None:
        raise PermissionError(f"the {OS_USER} OS user cannot enter {blocked}; choose a state_dir it can reach")
    cluster = Cluster(root, bindir, uid, gid)
    for folder in (root, cluster.socket_dir):
        folder.mkdir(parents=True, exist_ok=True)
        os.chown(folder, uid, gid)
        folder.chmod(0o700)
    return cluster


def _start(settings: Settings, registry: Registry, target: Target, timeout: float) -> Outcome:
    try:
        cluster = _prepare(settings)
    except (packages.InstallError, PermissionError, KeyError) as exc:
        return Outcome(NAME, "failed", None, target.address, str(exc))
    log = process.log_path(settings.state_dir, NAME)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    os.chown(log, cluster.uid, cluster.gid)  # pg_ctl opens the log as the cluster's user
    if not (cluster.data / "PG_VERSION").exists():
        code, out = cluster.run(
            [str(cluster.bindir / "initdb"), "-D", str(cluster.data), "-U", target.user,
             "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"]
        )  # fmt: skip
        if code != 0:
            return Outcome(NAME, "failed", None, target.address, f"initdb failed:\n{out}")
    options = f"-c listen_addresses=127.0.0.1 -p {target.port} -k {shlex.quote(str(cluster.socket_dir))}"
    argv = [str(cluster.bindir / "pg_ctl"), "start", "-D", str(cluster.data), "-l", str(log),
            "-w", "-t", str(int(timeout)), "-o", options]  # fmt: skip
    # A new session: the postmaster must not belong to our terminal's process group.
    code, out = cluster.run(argv, new_session=True, timeout=timeout + 10)
    pid = cluster.postmaster_pid()
    if code != 0 or pid is None:
        return Outcome(NAME, "failed", None, target.address, f"pg_ctl start failed:\n{out}\n{process.log_tail(log)}")
    try:
        record = PidRecord.for_pid(NAME, pid, argv=argv, log=log, address=target.address)
    except ProcessLookupError:
        return Outcome(NAME, "failed", None, target.address, f"postmaster exited\n{process.log_tail(log)}")
    registry.write(record)
    return Outcome(NAME, "started", pid, target.address)


def status(settings: Settings, registry: Registry) -> Outcome:
    target = Target.from_url(settings.database_url)
    record = registry.live(NAME)
    if record is not None:
        return Outcome(NAME, "running", record.pid, target.address)
    return Outcome(NAME, "reused" if answers(target) else "stopped", None, target.address)


def up(settings: Settings, registry: Registry, *, timeout: float = 60.0) -> Outcome:
    """Reuse or start a server, then create the URL's database if it is missing."""
    target = Target.from_url(settings.database_url)
    record = registry.live(NAME)
    if record is not None:
        outcome = Outcome(NAME, "already running", record.pid, target.address, f"already running (pid {record.pid})")
    elif answers(target):
        outcome = Outcome(NAME, "reused", None, target.address, "a PostgreSQL server already answers there")
    elif port_open(target.host, target.port):
        return Outcome(NAME, "failed", None, target.address, _refusal(target))
    elif not is_local(target.host):
        return Outcome(NAME, "failed", None, target.address, "no PostgreSQL answers there and it is not local")
    else:
        outcome = _start(settings, registry, target, timeout)
        if outcome.failed:
            return outcome
    try:
        created = ensure_database(target)
    except psycopg2.Error as exc:
        return Outcome(NAME, "failed", outcome.pid, target.address, f"cannot create database: {exc}".strip())
    if created:
        detail = f"{outcome.detail}; created database {target.database}".lstrip("; ")
        outcome = Outcome(NAME, outcome.state, outcome.pid, target.address, detail)
    return outcome


def _refusal(target: Target) -> str:
    try:
        target.connect().close()
    except psycopg2.Error as exc:
        return f"a server listens at {target.address} but refuses us: {str(exc).strip()}"
    return f"a server listens at {target.address} but refuses us"


def down(settings: Settings, registry: Registry) -> Outcome:
    """Stop our own cluster with `pg_ctl stop -m fast`, then make sure nothing of it is left (signals)."""
    target = Target.from_url(settings.database_url)
    record = registry.live(NAME)
    if record is None:
        if registry.read(NAME) is None and answers(target):
            return lifecycle.left_alone(NAME, target.address)
        return lifecycle.stop(registry, NAME, address=target.address)  # nothing of ours, or a stale file
    try:
        bindir = Path(record.argv[0]).parent
        cluster = Cluster(Path(settings.state_dir).resolve() / "postgres", bindir, *_os_user())
        cluster.run([str(bindir / "pg_ctl"), "stop", "-D", str(cluster.data), "-m", "fast", "-w"])
    except (OSError, KeyError, IndexError, subprocess.TimeoutExpired):
        pass  # the signals in lifecycle.stop still stop it
    outcome = lifecycle.stop(registry, NAME, address=target.address)
    return Outcome(NAME, outcome.state, record.pid, target.address, outcome.detail if outcome.failed else "")
