"""Servers that fail, and how the pooler says so (SPEC 1d, docs/architecture.md "Errors the pooler sends"):

- a server that is down when the pooler starts (or that a RELOAD adds while it is down) gives clients a clear 08006
  naming the pool, shard, role and address, and comes into service by itself (retries, ban expiry and health checks)
  once it is up, with no restart and no reload; the pooler and the other servers are unaffected meanwhile;
- a saturated replica is not a failed one: the waiter gets ERROR 57014 `... (pool db/user saturated)` and the
  replica is never banned;
- a server connection killed mid-statement (pg_terminate_backend): ERROR 08006 outside a transaction with the
  client's session kept, FATAL 08006 inside one, never a hang.

Servers that are "down" are a port with nothing listening behind it: a small TCP forwarder of the test's own
(`Forwarder`) that is started only when the test wants the server to come up, and forwards to a real cluster server.
"""

from __future__ import annotations

import signal
import socket
import threading
import time

import psycopg
import pytest

from pgwire import ConnectionClosed, PgError, RawConn, parse_error_fields, query_message
from support import HOST, build_config, free_port, to_yaml, wait_for

pytestmark = pytest.mark.pooler_only

ADMIN = {"user": "pgcat_admin", "password": "pgcat_admin"}
# Short bans and frequent health checks, so a server that comes up is back in service within seconds.
FAST = {"ban_time": 2, "healthcheck_delay": 300, "healthcheck_timeout": 500, "connect_timeout": 2000}
COME_BACK_WITHIN = 15.0  # seconds: ban_time 2 s + a few health-check rounds, with a wide margin for a busy machine


# ---------------------------------------------------------------------------------------------------------------
# helpers


class Forwarder:
    """A TCP forwarder HOST:port -> HOST:target_port that listens only once start() is called: before that the port
    refuses connections, like a server that is down. stop() closes the listener and every forwarded connection."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self.listener: socket.socket | None = None
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def start(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, self.port))
        s.listen(64)
        self.listener = s
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((HOST, self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        self.stopped.set()
        if self.listener is not None:
            self.listener.close()
        with self.lock:
            for s in self.sockets:
                try:
                    s.close()
                except OSError:
                    pass
            self.sockets.clear()


@pytest.fixture
def forwarder():
    made: list[Forwarder] = []

    def make(target_port: int) -> Forwarder:
        f = Forwarder(target_port)
        made.append(f)
        return f

    yield make
    for f in made:
        f.stop()


def admin(t) -> psycopg.Connection:
    return psycopg.connect(host=t.host, port=t.port, dbname="pgcat", autocommit=True, prepare_threshold=None,
                           connect_timeout=10, **ADMIN)


def show(conn, what: str) -> list[dict]:
    cur = conn.execute(f"SHOW {what}")
    names = [d.name for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def disabled_by_port(t) -> dict[int, int]:
    """SHOW DATABASES' `disabled` (banned) per server port, for pool app."""
    with admin(t) as a:
        return {r["port"]: r["disabled"] for r in show(a, "DATABASES") if r["database"] == "app"}


def login_error(t, dbname: str = "app", user: str = "app") -> PgError:
    """The ErrorResponse a raw client gets for its login (libpq does not expose start-up SQLSTATEs)."""
    with RawConn(t.host, t.port) as c:
        with pytest.raises(PgError) as ei:
            c.startup(user, dbname, user)
        return ei.value


def server_port_or_none(t, dbname: str = "app"):
    """A fresh client's `inet_server_port()`, or None when the login or the query fails."""
    try:
        with t.connect(dbname=dbname) as c:
            return c.execute("select inet_server_port()").fetchone()[0]
    except psycopg.Error:
        return None


def read_ports(t, n: int) -> set[int]:
    with t.connect() as c:
        return {c.execute("select inet_server_port()").fetchone()[0] for _ in range(n)}


def assert_alive(t) -> None:
    assert t.proc.poll() is None, f"the pooler exited (status {t.proc.returncode})"


# ---------------------------------------------------------------------------------------------------------------
# 1. servers down at start, or added by a reload while down


@pytest.mark.parametrize("role", ["primary", "replica"])
def test_only_server_down_at_start_is_08006_then_served_once_up(pgcat, cluster, forwarder, role):
    """The pool's only server is down when the pooler starts: logins fail with FATAL 08006 naming the pool, shard,
    role and address (not a hang, not a generic error, not a crash); once the server comes up, logins and queries
    succeed within seconds, with no restart and no reload (for a replica: the start-up ban expires / is retried)."""
    fwd = forwarder(cluster.primary if role == "primary" else cluster.replica1)
    t = pgcat(pool_size=2, users=["app"], servers=[[HOST, fwd.port, role]], general=FAST)
    started = time.monotonic()
    e = login_error(t)
    assert time.monotonic() - started < 10, "the failed login took longer than connect_timeout allows"
    assert (e.severity, e.sqlstate) == ("FATAL", "08006"), e.fields
    prefix = f"no healthy server for pool app/app: shard 0 {role} {HOST}:{fwd.port}/app: "
    assert e.message.startswith(prefix), e.message
    assert len(e.message) > len(prefix), "the error gives no reason"
    # again: still a clear error (no cached success, no different failure mode), and the pooler is alive
    e2 = login_error(t)
    assert (e2.severity, e2.sqlstate) == ("FATAL", "08006") and e2.message.startswith(prefix), e2.fields
    assert_alive(t)

    fwd.start()
    started = time.monotonic()
    target = cluster.primary if role == "primary" else cluster.replica1
    assert wait_for(lambda: server_port_or_none(t) == target, COME_BACK_WITHIN, 0.2), \
        f"the {role} did not come into service within {COME_BACK_WITHIN}s of coming up"
    assert time.monotonic() - started < COME_BACK_WITHIN
    with t.connect() as c:  # and it stays in service
        for i in range(10):
            assert c.execute("select %s::int, inet_server_port()", (i,)).fetchone() == (i, target)
    assert_alive(t)


def test_replica_down_at_start_gives_reads_08006_then_serves_them_in_the_same_session(pgcat, cluster, forwarder):
    """Read/write splitting, a primary that is up and the only replica down at start (no primary reads, no
    failover): a read gets ERROR 08006 naming shard 0 replica and its address, the session goes on (writes still
    reach the primary), and once the replica comes up the same client's reads are served there without a reload."""
    fwd = forwarder(cluster.replica1)
    t = pgcat(pool_size=2, users=["app"], general=FAST,
              servers=[[HOST, cluster.primary, "primary"], [HOST, fwd.port, "replica"]],
              pool={"query_parser_enabled": True, "query_parser_read_write_splitting": True,
                    "primary_reads_enabled": False})
    with t.connect() as c:
        with pytest.raises(psycopg.errors.ConnectionFailure) as ei:
            c.execute("select pg_is_in_recovery(), inet_server_port()")
        d = ei.value.diag
        assert (d.severity_nonlocalized, d.sqlstate) == ("ERROR", "08006"), str(ei.value)
        assert d.message_primary.startswith(f"no healthy server for pool app/app: shard 0 replica {HOST}:{fwd.port}/app: "), \
            d.message_primary
        assert not c.closed
        # ERROR, not FATAL: the session goes on, and what belongs on the primary is served
        assert c.execute("select pg_is_in_recovery(), inet_server_port(), txid_current() > 0").fetchone()[:2] == \
            (False, cluster.primary)
        assert_alive(t)

        fwd.start()

        def read():
            try:
                return c.execute("select pg_is_in_recovery(), inet_server_port()").fetchone()
            except psycopg.errors.ConnectionFailure:  # still banned, or not yet probed: the same clear error
                return None

        assert wait_for(lambda: read() == (True, cluster.replica1), COME_BACK_WITHIN, 0.2), \
            f"reads did not reach the replica within {COME_BACK_WITHIN}s of it coming up"
        for _ in range(10):
            assert read() == (True, cluster.replica1)


def test_replica_down_at_start_is_banned_then_health_checks_bring_it_back(pgcat, cluster, forwarder):
    """Two replicas, one down at start: the start-up health check bans it (SHOW DATABASES disabled=1, a SHOW BANS
    row), reads go to the other replica without client errors, and once it comes up the health checks put it back
    in rotation (reads reach it, the ban is gone) with no restart and no reload."""
    fwd = forwarder(cluster.replica2)
    t = pgcat(pool_size=2, users=["app"], general=FAST, pool={"default_role": "replica"},
              servers=[[HOST, cluster.primary, "primary"], [HOST, cluster.replica1, "replica"],
                       [HOST, fwd.port, "replica"]])
    assert wait_for(lambda: disabled_by_port(t).get(fwd.port) == 1, 5), disabled_by_port(t)
    assert disabled_by_port(t)[cluster.replica1] == 0
    with admin(t) as a:
        bans = show(a, "BANS")
    assert [(b["db"], b["user"], b["role"], b["host"]) for b in bans] == [("app", "app", "replica", HOST)], bans
    assert read_ports(t, 30) == {cluster.replica1}, "reads while one replica is down go to the other, without errors"

    fwd.start()
    assert wait_for(lambda: cluster.replica2 in read_ports(t, 20), COME_BACK_WITHIN, 0.2), \
        f"the replica did not come back into rotation within {COME_BACK_WITHIN}s of coming up"
    assert wait_for(lambda: disabled_by_port(t).get(fwd.port) == 0, 5), disabled_by_port(t)
    with admin(t) as a:
        assert wait_for(lambda: show(a, "BANS") == [], 5), show(a, "BANS")
    assert read_ports(t, 40) == {cluster.replica1, cluster.replica2}
    assert_alive(t)


def test_reload_adding_servers_that_are_down_keeps_the_old_ones_working(pgcat, cluster, forwarder):
    """A RELOAD that adds a replica that is down to a working pool, and a new pool whose only server is down: the
    reload is accepted, the pooler stays up, clients connected before and after it keep being served by the old
    server without errors (reads that pick the dead replica are retried elsewhere), the new pool refuses logins with
    FATAL 08006 naming it, and once the replica comes up, reads reach it with no further reload."""
    port = free_port()
    fwd = forwarder(cluster.replica2)
    dead = free_port()  # nothing ever listens here
    t = pgcat(config=build_config(cluster, port, pool_size=3, users=["app"], general=FAST))
    before = t.connect()
    try:
        assert before.execute("select inet_server_port()").fetchone()[0] == cluster.primary

        cfg = build_config(cluster, port, pool_size=3, users=["app"], general=FAST,
                           servers=[[HOST, cluster.primary, "primary"], [HOST, fwd.port, "replica"]])
        down_pool = build_config(cluster, port, pool_size=3, users=["app"], general=FAST,
                                 servers=[[HOST, dead, "primary"]])["pools"]["app"]
        cfg["pools"]["down"] = down_pool
        t.config_path.write_text(to_yaml(cfg))
        with admin(t) as a:
            assert a.execute("RELOAD").statusmessage == "RELOAD"
            names = {(r["name"], r["port"]) for r in show(a, "DATABASES")}
        assert ("app_shard_0_replica_0", fwd.port) in names and ("down_shard_0_primary", dead) in names, names
        assert_alive(t)

        errors = []
        with t.connect() as after:
            for conn in (before, after):
                for _ in range(25):
                    try:
                        assert conn.execute("select inet_server_port()").fetchone()[0] == cluster.primary
                    except psycopg.Error as e:
                        errors.append(f"{type(e).__name__} {e.diag.sqlstate}: {str(e).strip()}")
        assert errors == [], f"{len(errors)} client errors after the reload added a dead replica: {errors[:3]}"

        e = login_error(t, dbname="down")
        assert (e.severity, e.sqlstate) == ("FATAL", "08006"), e.fields
        assert e.message.startswith(f"no healthy server for pool down/app: shard 0 primary {HOST}:{dead}/app: "), \
            e.message
        assert_alive(t)

        fwd.start()
        assert wait_for(lambda: cluster.replica2 in read_ports(t, 20), COME_BACK_WITHIN, 0.2), \
            f"the added replica did not come into service within {COME_BACK_WITHIN}s of coming up"
        assert before.execute("select 1").fetchone() == (1,)
        assert_alive(t)
    finally:
        before.close()


# ---------------------------------------------------------------------------------------------------------------
# 2. saturation is not failure


def test_saturated_replica_gives_57014_and_is_never_banned(pgcat, cluster):
    """Read/write splitting, the only replica with pool_size 1 held by a client in a long read-only transaction: a
    second client's read waits connect_timeout and gets ERROR 57014 `timed out waiting for a server connection (pool
    app/app saturated)` (not 08006, not "all servers down"), keeps its session, and the replica is NOT banned (SHOW
    BANS stays empty, SHOW DATABASES disabled=0 through several health-check rounds); once the holder commits, the
    waiter's read is served by that replica."""
    t = pgcat(pool_size=1, users=["app"],
              general={**FAST, "connect_timeout": 1000, "ban_time": 60},
              servers=[[HOST, cluster.primary, "primary"], [HOST, cluster.replica1, "replica"]],
              pool={"query_parser_enabled": True, "query_parser_read_write_splitting": True,
                    "primary_reads_enabled": False})
    with t.connect() as holder, t.connect() as waiter:
        holder.execute("begin read only")
        assert holder.execute("select pg_is_in_recovery(), inet_server_port()").fetchone() == (True, cluster.replica1)
        for attempt in range(2):
            started = time.monotonic()
            with pytest.raises(psycopg.errors.QueryCanceled) as ei:
                waiter.execute("select pg_is_in_recovery(), inet_server_port()")
            elapsed = time.monotonic() - started
            d = ei.value.diag
            assert (d.severity_nonlocalized, d.sqlstate) == ("ERROR", "57014"), str(ei.value)
            assert d.message_primary == "timed out waiting for a server connection (pool app/app saturated)", \
                d.message_primary
            assert 0.9 <= elapsed < 8, f"the wait took {elapsed:.1f}s with connect_timeout 1000 ms"
            assert not waiter.closed
            with admin(t) as a:
                assert show(a, "BANS") == [], f"saturation banned a server (attempt {attempt})"
        # several health-check rounds (healthcheck_delay 300 ms) later, still no ban
        deadline = time.monotonic() + 1.5
        with admin(t) as a:
            while time.monotonic() < deadline:
                assert show(a, "BANS") == [], "a saturated replica was banned"
                time.sleep(0.1)
        assert disabled_by_port(t)[cluster.replica1] == 0
        holder.execute("commit")
        # had it been banned (ban_time 60 s), a read would fail over or be refused; it is served by the replica
        assert waiter.execute("select pg_is_in_recovery(), inet_server_port()").fetchone() == (True, cluster.replica1)
    with admin(t) as a:
        assert show(a, "BANS") == []
    assert_alive(t)


# ---------------------------------------------------------------------------------------------------------------
# 3. a server connection killed mid-statement
#
# Postgres answers pg_terminate_backend with its own `FATAL 57P01 terminating connection due to administrator
# command` before closing; relayed, clients (psycopg: AdminShutdown) took it for the end of their own session.
# The pooler keeps it and names it in its 08006 (stop 24; these tests failed before).


def terminate_backend_running(primary, marker: str) -> int:
    """Waits for the statement containing `marker` to run on the server, terminates its backend; returns the pid."""
    find = ("select pid from pg_stat_activity where state = 'active' and query like %s and pid <> pg_backend_pid()")
    pid = wait_for(lambda: primary.value(find, (f"%{marker}%",)), 10)
    assert pid, "the statement never started on the server"
    assert primary.value("select pg_terminate_backend(%s)", (pid,)) is True
    return pid


def run_until_killed(primary, conn, sql: str, marker: str, begin: bool) -> tuple[BaseException | None, float, int]:
    """Runs `sql` (containing `marker`) on `conn` in a thread, terminates its backend with pg_terminate_backend once
    it runs, and returns (the client's exception, seconds from the kill to the client's answer, the backend pid)."""
    if begin:
        conn.execute("begin")
        conn.execute("select 1")
    outcome: dict = {}

    def client():
        try:
            conn.execute(sql)
        except BaseException as e:  # noqa: BLE001
            outcome["error"] = e
        outcome["done"] = time.monotonic()

    th = threading.Thread(target=client, daemon=True)
    th.start()
    pid = terminate_backend_running(primary, marker)
    killed = time.monotonic()
    th.join(15)
    assert not th.is_alive(), "the client hung after its server connection was killed mid-statement"
    return outcome.get("error"), outcome["done"] - killed, pid


def assert_connection_lost(error, waited: float, kind: type, severity: str, message_start: str) -> None:
    """The client's exception for a killed statement: `kind`, `severity` 08006 starting `message_start`, at once."""
    assert error is not None, "the killed statement reported success"
    assert isinstance(error, kind), repr(error)
    d = error.diag
    assert (d.severity_nonlocalized, d.sqlstate) == (severity, "08006"), \
        f"{type(error).__name__} severity={d.severity_nonlocalized} sqlstate={d.sqlstate}: {str(error).strip()}"
    assert (d.message_primary or "").startswith(message_start), d.message_primary
    assert waited < 5, f"the error came {waited:.1f}s after the kill"


def test_server_killed_mid_statement_outside_transaction_is_error_08006_and_session_kept(pgcat, primary):
    """pg_terminate_backend on the backend running a client's `select pg_sleep(10)` outside a transaction: the
    client gets ERROR 08006 `server connection lost...` at once (SPEC 1d), stays connected, and its next statement
    runs on another server connection."""
    t = pgcat(pool_size=1, users=["app"])
    with t.connect() as c:
        error, waited, pid = run_until_killed(primary, c, "select pg_sleep(10) /* faults_outside_txn */",
                                              "faults_outside_txn", begin=False)
        assert_connection_lost(error, waited, psycopg.Error, "ERROR", "server connection lost")
        assert not c.closed and not c.broken, "the client was disconnected although it was outside a transaction"
        assert c.execute("select 41 + 1").fetchone() == (42,)
        assert c.execute("select pg_backend_pid()").fetchone()[0] != pid
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with t.connect() as n:  # the dead connection was discarded: the pool (size 1) serves a new client
        assert n.execute("select 1").fetchone() == (1,)


def test_server_killed_mid_statement_outside_transaction_wire_messages(pgcat, primary):
    """The same kill seen on the wire: exactly one ErrorResponse, ERROR 08006 (Postgres's own FATAL 57P01 to the
    pooler is not relayed, which would make clients drop the session), then ReadyForQuery(I), and the same
    connection then answers a query."""
    t = pgcat(pool_size=1, users=["app"])
    with RawConn(t.host, t.port, timeout=15) as c:
        c.startup("app", "app", "app")
        c.send(query_message("select pg_sleep(10) /* faults_outside_wire */"))
        terminate_backend_running(primary, "faults_outside_wire")
        errors, seen = [], []
        while True:
            kind, payload = c.read_message()
            seen.append(kind)
            if kind == b"E":
                errors.append(parse_error_fields(payload))
            if kind == b"Z":
                assert payload == b"I", payload
                break
        assert [(e.get("V"), e.get("C")) for e in errors] == [("ERROR", "08006")], (errors, seen)
        assert errors[0]["M"].startswith("server connection lost"), errors[0]
        assert errors[0]["M"].endswith("the server ended it: terminating connection due to administrator command "
                                       "(57P01)"), errors[0]
        assert c.query("select 7") == [["7"]]


def test_server_killed_mid_statement_inside_transaction_is_fatal_08006(pgcat, primary):
    """pg_terminate_backend on the backend running `select pg_sleep(10)` inside a client's transaction: the work of
    the transaction is lost, so the client gets FATAL 08006 `server connection lost inside a transaction...` at
    once and is disconnected (SPEC 1d); the pool serves the next client on a new server connection."""
    t = pgcat(pool_size=1, users=["app"])
    c = t.connect()
    try:
        error, waited, pid = run_until_killed(primary, c, "select pg_sleep(10) /* faults_inside_txn */",
                                              "faults_inside_txn", begin=True)
        assert_connection_lost(error, waited, psycopg.OperationalError, "FATAL",
                               "server connection lost inside a transaction")
        with pytest.raises(psycopg.OperationalError):  # disconnected: nothing more runs on this session
            c.execute("select 1")
    finally:
        c.close()
    with t.connect() as n:
        assert n.execute("select pg_backend_pid()").fetchone()[0] != pid


def test_server_killed_mid_statement_inside_transaction_wire_messages(pgcat, primary):
    """On the wire: one ErrorResponse, FATAL 08006 (not Postgres's relayed 57P01), then the pooler closes the
    client connection (no ReadyForQuery pretending the transaction goes on)."""
    t = pgcat(pool_size=1, users=["app"])
    with RawConn(t.host, t.port, timeout=15) as c:
        c.startup("app", "app", "app")
        c.query("begin")
        assert c.txn_status == "T"
        c.send(query_message("select pg_sleep(10) /* faults_inside_wire */"))
        terminate_backend_running(primary, "faults_inside_wire")
        errors, seen = [], []
        try:
            while True:
                kind, payload = c.read_message()
                seen.append(kind)
                assert kind != b"Z", f"ReadyForQuery after the transaction's server died: {seen} {errors}"
                if kind == b"E":
                    errors.append(parse_error_fields(payload))
        except ConnectionClosed:
            pass
        assert [(e.get("V"), e.get("C")) for e in errors] == [("FATAL", "08006")], (errors, seen)
        assert errors[0]["M"].startswith("server connection lost inside a transaction"), errors[0]
        assert_ended_without_reset(c)


def kill_backend_of_idle_client(t, primary, c: RawConn, first_sql: str) -> None:
    """Logs `c` in, runs `first_sql`, terminates the backend serving it, and waits until the pooler has noticed
    (one more `server connection lost` in its log), with the client idle."""
    c.startup("app", "app", "app")
    c.query(first_sql)
    pid = int(c.query("select pg_backend_pid()")[0][0])
    before = t.log().count("server connection lost")
    assert primary.value("select pg_terminate_backend(%s)", (pid,)) is True
    assert wait_for(lambda: t.log().count("server connection lost") > before, 10), \
        "the pooler never noticed that the server connection was killed"


def assert_nothing_sent(c: RawConn, seconds: float = 0.5) -> None:
    """No unsolicited message reaches the idle client (libpq can take a FATAL that arrives right behind the last
    ReadyForQuery for a notice, and then reports only "server closed the connection unexpectedly")."""
    c.sock.settimeout(seconds)
    try:
        data = c.sock.recv(65536)
    except socket.timeout:
        data = None
    finally:
        c.sock.settimeout(15)
    assert data is None, f"the idle client was sent {data!r} (or EOF) before it asked anything"


def assert_next_query_gets_fatal(c: RawConn, message_start: str) -> None:
    c.send(query_message("select 1"))
    kind, payload = c.read_message()
    assert kind == b"E", (kind, payload)
    fields = parse_error_fields(payload)
    assert (fields.get("V"), fields.get("C")) == ("FATAL", "08006"), fields
    assert fields["M"].startswith(message_start), fields
    assert "terminating connection due to administrator command (57P01)" in fields["M"], fields
    assert_ended_without_reset(c)


def assert_ended_without_reset(c: RawConn) -> None:
    """After a FATAL the pooler ends its output (FIN) and still takes what the client sends: a client that had not
    read the FATAL yet gets no reset for its next message, which would lose the unread FATAL on some systems."""
    c.send(query_message("select 2"))  # after the FIN
    time.sleep(0.3)
    assert c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0, "the pooler answered with a reset"
    assert c.sock.recv(65536) == b""


def test_session_mode_client_is_ended_when_its_idle_server_connection_is_killed(pgcat, primary):
    """Session mode: the session's state (settings, temporary tables, LISTEN) lives on its server connection, so
    when that connection is killed while the client is idle the client's session ends too, with FATAL 08006 naming
    the server's reason (not a silent switch to a fresh backend that has lost the state). The FATAL answers the
    client's next message: sent while the client is idle, libpq can drop it (stop 25)."""
    t = pgcat(pool_mode="session", pool_size=2, users=["app"])
    with RawConn(t.host, t.port, timeout=15) as c:
        kill_backend_of_idle_client(t, primary, c, "create temporary table faults_session_tmp (x int)")
        assert_nothing_sent(c)
        assert_next_query_gets_fatal(c, "server connection lost, and with it this session's state")


def test_client_idle_in_transaction_gets_the_fatal_with_its_next_message(pgcat, primary):
    """Transaction mode, a client idle inside a transaction whose server connection is killed: nothing is sent
    while it is idle; its next message is answered with FATAL 08006 `server connection lost inside a transaction`
    naming the server's reason, and the connection closes. Before stop 25 the FATAL was sent at once, and libpq
    clients whose last ReadyForQuery arrived with it reported only "server closed the connection unexpectedly"."""
    t = pgcat(pool_size=2, users=["app"])
    with RawConn(t.host, t.port, timeout=15) as c:
        kill_backend_of_idle_client(t, primary, c, "begin")
        assert_nothing_sent(c)
        assert_next_query_gets_fatal(c, "server connection lost inside a transaction")
    with t.connect() as n:  # the pool serves the next client
        assert n.execute("select 1").fetchone() == (1,)


def test_client_idle_in_transaction_whose_server_died_can_still_terminate_quietly(pgcat, primary):
    """A client that leaves (Terminate) after its idle transaction's server connection was killed is simply
    closed, and no client is left behind in SHOW CLIENTS."""
    t = pgcat(pool_size=2, users=["app"])
    with RawConn(t.host, t.port, timeout=15) as c:
        kill_backend_of_idle_client(t, primary, c, "begin")
        c.send(b"X\x00\x00\x00\x04")
        assert c.sock.recv(65536) == b"", "the pooler answered a Terminate"
    with admin(t) as a:
        assert wait_for(lambda: not [r for r in show(a, "CLIENTS") if r["database"] == "app"], 5), show(a, "CLIENTS")


def test_a_drain_does_not_wait_for_a_client_whose_transaction_lost_its_server(pgcat, primary):
    """SIGTERM while a client is idle inside a transaction: the drain waits for that transaction. When its server
    connection is then killed, the client gets its FATAL 08006 at once (not at its next message, as when the pooler
    is not shutting down) and the pooler exits, instead of waiting out shutdown_timeout."""
    t = pgcat(pool_size=2, users=["app"], general={"shutdown_timeout": 30000})
    with RawConn(t.host, t.port, timeout=15) as c:
        c.startup("app", "app", "app")
        c.query("begin")
        pid = int(c.query("select pg_backend_pid()")[0][0])
        t.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert t.proc.poll() is None, "exited before the open transaction ended (no drain)"
        started = time.monotonic()
        assert primary.value("select pg_terminate_backend(%s)", (pid,)) is True
        kind, payload = c.read_message()
        assert kind == b"E" and parse_error_fields(payload).get("C") == "08006", (kind, payload)
        assert t.proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 5, "the drain waited for the client"
