"""Helpers for the integration tests: cluster coordinates, config building (YAML written without a YAML library),
the pooler process, psql/pgbench runners, and superuser SQL on the primary."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
DIRECT = os.environ.get("PGCAT_TEST_DIRECT", "") not in ("", "0", "false", "no")
PGCAT_BIN = os.environ.get("PGCAT_BIN") or str(REPO / ".build" / "debug" / "pgcat")
START_TIMEOUT = float(os.environ.get("PGCAT_TEST_START_TIMEOUT", "20"))
EX_CONFIG = 78

# Cluster roles (scripts/cluster.sh): name -> password (None for trust)
PASSWORDS = {"app": "app", "md5_user": "md5_user", "plain_user": "plain_user", "trust_user": None, "postgres": "postgres"}


@dataclass(frozen=True)
class Cluster:
    primary: int
    replica1: int
    replica2: int
    host: str = HOST

    @property
    def replicas(self) -> list[int]:
        return [self.replica1, self.replica2]


def superuser(port: int, dbname: str = "app"):
    """A psycopg connection as the cluster's superuser, straight to the server on `port`."""
    return psycopg.connect(host=HOST, port=port, user="postgres", password=PASSWORDS["postgres"], dbname=dbname,
                           autocommit=True, connect_timeout=5)


def ensure_role(cluster: Cluster, role: str, member: bool = True) -> None:
    """`role` exists (roles are cluster-wide and replicate) and `app` is (or is not) a member of it."""
    with superuser(cluster.primary) as su:
        su.execute(f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN "
                   f"CREATE ROLE {role}; END IF; END $$")
        su.execute(f"{'GRANT' if member else 'REVOKE'} {role} {'TO' if member else 'FROM'} app")


def pg_ctl(data_dir: str, *args: str) -> None:
    """Debian's pg_ctl (found with pg_config), as the postgres user when run as root."""
    bindir = os.environ.get("PG_BINDIR") or subprocess.run(
        ["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
    if not os.path.exists(f"{bindir}/pg_ctl"):
        bindir = "/usr/lib/postgresql/15/bin"
    cmd = [f"{bindir}/pg_ctl", "-D", data_dir, *args]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def cluster_script(port: int, command: str, directory: str | None = None) -> None:
    """scripts/cluster.sh COMMAND for a cluster of its own on `port` (and `directory`)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PGCAT_CLUSTER_PORT=str(port))
    if directory:
        env["PGCAT_CLUSTER_DIR"] = directory
    subprocess.run([f"{root}/scripts/cluster.sh", command], check=True, env=env, capture_output=True, timeout=300)


def cluster_from_env() -> Cluster:
    port = int(os.environ.get("PGCAT_CLUSTER_PORT", "25432"))
    return Cluster(port, port + 1, port + 2)


# ---------------------------------------------------------------------------------------------------------------
# YAML (block style; strings double-quoted JSON-style, which is valid YAML)

_BARE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _scalar(v) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))


def _key(k) -> str:
    k = str(k)
    return k if _BARE.match(k) and k not in ("true", "false", "null", "yes", "no", "on", "off", "y", "n") else json.dumps(k)


def to_yaml(value, indent: int = 0) -> str:
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        out = ""
        for k, v in value.items():
            if isinstance(v, dict) and v:
                out += f"{pad}{_key(k)}:\n" + to_yaml(v, indent + 1)
            elif isinstance(v, list) and v and any(isinstance(x, (dict, list)) for x in v):
                out += f"{pad}{_key(k)}:\n" + to_yaml(v, indent + 1)
            else:
                out += f"{pad}{_key(k)}: {_flow(v)}\n"
        return out
    if isinstance(value, list):
        out = ""
        for item in value:
            if isinstance(item, dict) and item:
                body = to_yaml(item, indent + 1)
                out += f"{pad}- " + body[len(pad) + 2 :]
            else:
                out += f"{pad}- {_flow(item)}\n"
        return out
    return pad + _scalar(value) + "\n"


def _flow(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_flow(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)}: {_flow(x)}" for k, x in v.items()) + "}"
    return _scalar(v)


# ---------------------------------------------------------------------------------------------------------------
# Config building

DEFAULT_USERS = {
    # client auth type (pooler side) per user; the server side is what pg_hba says (scram, md5, password, trust)
    "app": "scram-sha-256",
    "md5_user": "md5",
    "plain_user": "scram-sha-256",
    "trust_user": "trust",
}


def user_entry(name: str, pool_size: int, auth_type: str | None = None, **extra) -> dict:
    entry: dict = {"username": name}
    if PASSWORDS.get(name) is not None:
        entry["password"] = PASSWORDS[name]
    entry["auth_type"] = auth_type or DEFAULT_USERS.get(name, "scram-sha-256")
    entry["pool_size"] = pool_size
    entry.update(extra)
    return entry


def build_config(
    cluster: Cluster,
    port: int,
    *,
    pool_mode: str = "transaction",
    pool_size: int = 5,
    users: list[str] | dict[str, dict] | None = None,
    databases: tuple[str, ...] = ("app",),
    servers: list | None = None,
    general: dict | None = None,
    pool: dict | None = None,
) -> dict:
    """A config with one pool per database (pool name = backend database name), each with one shard on the
    primary unless `servers` is given. `users` is a list of cluster role names or {name: extra user keys}."""
    g = {
        "host": HOST,
        "port": port,
        "admin_username": "pgcat_admin",
        "admin_password": "pgcat_admin",
        "connect_timeout": 10000,
        "shutdown_timeout": 1000,
        "healthcheck_delay": 30000,
    }
    g.update(general or {})
    if users is None:
        users = list(DEFAULT_USERS)
    if isinstance(users, list):
        users = {u: {} for u in users}
    pools = {}
    for db in databases:
        user_map = {}
        for i, (name, extra) in enumerate(users.items()):
            extra = dict(extra)
            size = extra.pop("pool_size", pool_size)
            user_map[str(i)] = user_entry(name, size, **extra)
        p = {"pool_mode": pool_mode}
        p.update(pool or {})
        p["users"] = user_map
        p["shards"] = {"0": {"database": db, "servers": servers or [[HOST, cluster.primary, "primary"]]}}
        pools[db] = p
    return {"general": g, "pools": pools}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------------------------
# The pooler process (or, in direct mode, the primary itself)


@dataclass
class Target:
    """Where clients connect: a running pooler, or the primary in direct mode."""

    host: str
    port: int
    direct: bool = False
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    config_path: Path | None = None
    extra: dict = field(default_factory=dict)

    def log(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return ""

    def conninfo(self, user: str = "app", dbname: str = "app", password: str | None = "", **kw) -> str:
        if password == "":
            password = PASSWORDS.get(user)
        parts = {"host": self.host, "port": self.port, "user": user, "dbname": dbname, "connect_timeout": 10}
        if password is not None:
            parts["password"] = password
        parts.update(kw)
        return " ".join(f"{k}={_quote(v)}" for k, v in parts.items())

    def connect(self, user: str = "app", dbname: str = "app", password: str | None = "", autocommit: bool = True, **kw):
        """A psycopg 3 connection that never prepares statements (unnamed statements only)."""
        kw.setdefault("prepare_threshold", None)
        return psycopg.connect(self.conninfo(user, dbname, password), autocommit=autocommit, **kw)

    async def aconnect(self, user: str = "app", dbname: str = "app", password: str | None = "", **kw):
        """An asyncpg connection. statement_cache_size=0 makes asyncpg use unnamed statements only; named prepared
        statements through the pooler come with issue 3."""
        import asyncpg

        if password == "":
            password = PASSWORDS.get(user)
        kw.setdefault("statement_cache_size", 0)
        kw.setdefault("timeout", 15)
        return await asyncpg.connect(host=self.host, port=self.port, user=user, database=dbname, password=password, ssl=False, **kw)


def _quote(v) -> str:
    s = str(v)
    if s and not re.search(r"[\s'\\]", s):
        return s
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def wait_on_replicas(cluster: Cluster, present_sql: str, what: str, timeout: float = 20) -> None:
    """Replication is asynchronous: waits until `present_sql` (one boolean) is true on every replica."""
    for port in cluster.replicas:
        with superuser(port) as standby:
            assert wait_for(lambda: standby.execute(present_sql).fetchone()[0], timeout), f"{what} did not reach {port}"


def wait_for(predicate, timeout: float = 8.0, interval: float = 0.05):
    """Calls `predicate` until it returns something truthy or `timeout` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def spawn_pooler(args: list[str], *, log_path=None, cwd=None, env=None) -> subprocess.Popen:
    """Starts the pooler binary with `args` (output to `log_path`, or dropped), in a session of its own, and
    registers it for scripts/test.sh, which ends any pooler that outlives an interrupted run."""
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen([PGCAT_BIN, *args], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd, env=env, start_new_session=True)
    finally:
        if log_path:
            log.close()
    pidfile = os.environ.get("PGCAT_TEST_PIDFILE")
    if pidfile:
        with open(pidfile, "a") as f:
            f.write(f"{proc.pid}\n")
    return proc


def wait_for_pooler(proc: subprocess.Popen, port: int, output) -> None:
    """Until the pooler started by `spawn_pooler` accepts on `port`; if it exits or never does, stops it and fails
    the test with `output()` (its log, the config)."""
    import pytest

    try:
        wait_for_port(HOST, port, proc, START_TIMEOUT)
    except RuntimeError as e:
        stop_process(proc)
        pytest.fail(f"{e}\n{output()}")


def wait_for_port(host: str, port: int, proc: subprocess.Popen | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"pooler exited with status {proc.returncode} before accepting connections")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"pooler did not accept connections on {host}:{port} within {timeout:.0f}s")
        time.sleep(0.05)


def stop_process(proc: subprocess.Popen, grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def run_pgcat(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    """Runs the binary to completion (for --check and bad configs); stdout and stderr together in .stdout."""
    return subprocess.run([PGCAT_BIN, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)


# ---------------------------------------------------------------------------------------------------------------
# psql and pgbench


def _client_env(password: str | None) -> dict:
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("PG") and k not in ("PGCAT_BIN",):
            env.pop(k)
    if password is not None:
        env["PGPASSWORD"] = password
    env["PGCONNECT_TIMEOUT"] = "10"
    return env


def psql(
    target,
    sql: str | None = None,
    *,
    user: str = "app",
    dbname: str = "app",
    password: str | None = "",
    conninfo: str | None = None,
    args: tuple[str, ...] = (),
    stdin: str | None = None,
    on_error_stop: bool = True,
    check: bool = True,
    timeout: float = 30,
) -> subprocess.CompletedProcess:
    """Runs psql -X -A -t against target (Target or (host, port)); returns the CompletedProcess (text)."""
    host, port = (target.host, target.port) if isinstance(target, Target) else target
    if password == "":
        password = PASSWORDS.get(user)
    cmd = ["psql", "-X", "-A", "-t", "-q"]
    if on_error_stop:
        cmd += ["-v", "ON_ERROR_STOP=1"]
    if conninfo is not None:
        cmd += ["-d", f"host={host} port={port} user={user} dbname={dbname} {conninfo}"]
    else:
        cmd += ["-h", host, "-p", str(port), "-U", user, "-d", dbname]
    cmd += list(args)
    if sql is not None:
        cmd += ["-c", sql]
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout, env=_client_env(password))
    if check and r.returncode != 0:
        raise AssertionError(f"psql failed ({r.returncode}): {' '.join(cmd)}\nstdout: {r.stdout}\nstderr: {r.stderr}")
    return r


def pgbench(
    target,
    args: list[str],
    *,
    user: str = "app",
    dbname: str = "app",
    password: str | None = "",
    timeout: float = 180,
) -> subprocess.CompletedProcess:
    host, port = (target.host, target.port) if isinstance(target, Target) else target
    if password == "":
        password = PASSWORDS.get(user)
    cmd = ["pgbench", "-h", host, "-p", str(port), "-U", user, *args, dbname]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_client_env(password))


# ---------------------------------------------------------------------------------------------------------------
# Superuser SQL directly on the primary (never through the pooler)


class Primary:
    def __init__(self, cluster: Cluster):
        self.cluster = cluster

    def connect(self, dbname: str = "app", port: int | None = None):
        return psycopg.connect(
            host=HOST, port=port or self.cluster.primary, user="postgres", password="postgres",
            dbname=dbname, autocommit=True, connect_timeout=10,
        )

    def sql(self, query: str, params=None, dbname: str = "app", port: int | None = None) -> list[tuple]:
        with self.connect(dbname, port) as c:
            cur = c.execute(query, params)
            return cur.fetchall() if cur.description else []

    def value(self, query: str, params=None, dbname: str = "app"):
        rows = self.sql(query, params, dbname)
        return rows[0][0] if rows else None

    def make_table(self, name: str, ddl: str = "id int primary key, v text", dbname: str = "app") -> str:
        self.sql(f"drop table if exists {name}; create table {name} ({ddl}); grant all on {name} to public", dbname=dbname)
        return name

    def wait_until(self, query: str, params=None, *, expect=True, timeout: float = 10.0, dbname: str = "app"):
        """Polls `query` (first column of first row) until it equals `expect`; returns the last value."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            last = self.value(query, params, dbname)
            if last == expect:
                return last
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {query!r} == {expect!r}; last value {last!r}")
            time.sleep(0.05)


def pooler_ports_to(pid: int, remote_port: int) -> set[int]:
    """Local ports of the TCP connections that process `pid` holds to 127.0.0.1:remote_port (from /proc)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            t = os.readlink(fd)
        except OSError:
            continue
        if t.startswith("socket:["):
            inodes.add(t[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            local, remote, state, inode = cols[1], cols[2], cols[3], cols[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == remote_port and state == "01":
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


# ---------------------------------------------------------------------------------------------------------------
# TLS material made by scripts/cluster.sh (the primary serves server.crt, signed by ca.crt)


def tls_dir() -> Path:
    port = os.environ.get("PGCAT_CLUSTER_PORT", "25432")
    return Path(os.environ.get("PGCAT_CLUSTER_DIR", f"/tmp/pgcat-cluster-{port}")) / "tls"
