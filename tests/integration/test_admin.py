"""The admin console (databases `pgcat` and `pgbouncer`, admin_username/admin_password): every SHOW command with
PgCat's column names in order and PgBouncer's column types, counters that move under load, admin authentication,
errors for unknown commands and the extended protocol, BAN/UNBAN, PAUSE/RESUME, RECONNECT, KILL, SHUTDOWN and SET."""

from __future__ import annotations

import re
import threading
import time

import psycopg
import pytest

from pgwire import ConnectionClosed, PgError, RawConn, message, parse_error_fields
from support import HOST, pgbench, psql, wait_for

pytestmark = pytest.mark.pooler_only

ADMIN_USER = "pgcat_admin"
ADMIN_PASSWORD = "pgcat_admin"

TEXT, INT4, INT8 = 25, 23, 20

# Column names in PgCat's order (reference/pgcat.md §1.9; SHOW CLIENTS has the extra `pinned`, and PgBouncer's `addr`
# and `port`) and the type OIDs
# (SPEC §1e: names and states text, sizes int4, counters int8).
COLUMNS: dict[str, list[tuple[str, int]]] = {
    "CONFIG": [("key", TEXT), ("value", TEXT), ("default", TEXT), ("changeable", TEXT)],
    "DATABASES": [
        ("name", TEXT), ("host", TEXT), ("port", INT4), ("database", TEXT), ("force_user", TEXT),
        ("pool_size", INT4), ("min_pool_size", INT4), ("reserve_pool", INT4), ("pool_mode", TEXT),
        ("max_connections", INT4), ("current_connections", INT4), ("paused", INT4), ("disabled", INT4),
    ],
    "POOLS": [("database", TEXT), ("user", TEXT), ("pool_mode", TEXT)] + [
        (c, INT8) for c in ("cl_idle", "cl_active", "cl_waiting", "cl_cancel_req", "sv_active", "sv_idle", "sv_used",
                            "sv_tested", "sv_login", "maxwait", "maxwait_us")
    ],
    "CLIENTS": [("client_id", TEXT), ("database", TEXT), ("user", TEXT), ("application_name", TEXT), ("state", TEXT)]
    + [(c, INT8) for c in ("transaction_count", "query_count", "error_count", "age_seconds", "maxwait", "maxwait_us")]
    + [("pinned", TEXT), ("addr", TEXT), ("port", INT4)],
    "SERVERS": [("server_id", TEXT), ("database_name", TEXT), ("user", TEXT), ("address_id", TEXT),
                ("application_name", TEXT), ("state", TEXT)]
    + [(c, INT8) for c in ("transaction_count", "query_count", "bytes_sent", "bytes_received", "age_seconds",
                           "prepare_cache_hit", "prepare_cache_miss", "prepare_cache_eviction", "prepare_cache_size")],
    "USERS": [("name", TEXT), ("pool_mode", TEXT)],
    "VERSION": [("version", TEXT)],
    "LISTS": [("list", TEXT), ("items", INT4)],
    "STATS": [("instance", TEXT), ("database", TEXT), ("user", TEXT)] + [
        (c, INT8) for c in ("total_xact_count", "total_query_count", "total_received", "total_sent", "total_xact_time",
                            "total_query_time", "total_wait_time", "total_errors", "avg_xact_count", "avg_query_count",
                            "avg_recv", "avg_sent", "avg_errors", "avg_xact_time", "avg_query_time", "avg_wait_time")
    ],
    "BANS": [(c, TEXT) for c in ("db", "user", "role", "host", "reason", "ban_time", "ban_duration_seconds",
                                 "ban_remaining_seconds")] + [("port", INT4), ("address_id", TEXT)],
}
LIST_NAMES = ["databases", "users", "pools", "free_clients", "used_clients", "login_clients", "free_servers",
              "used_servers", "dns_names", "dns_zones", "dns_queries", "dns_pending"]
CLIENT_ID = re.compile(r"^0x[0-9A-F]{8}$")


# ---------------------------------------------------------------------------------------------------------------
# helpers


def admin(t, dbname: str = "pgcat", password: str = ADMIN_PASSWORD) -> psycopg.Connection:
    """An admin console session (simple protocol only: psycopg sends a query without parameters as a Query)."""
    return psycopg.connect(host=t.host, port=t.port, user=ADMIN_USER, password=password, dbname=dbname,
                           autocommit=True, prepare_threshold=None, connect_timeout=10)


def show(conn, what: str) -> list[dict]:
    cur = conn.execute(f"SHOW {what}")
    names = [d.name for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def lists(conn) -> dict[str, int]:
    return {r["list"]: r["items"] for r in show(conn, "LISTS")}


def pool_row(conn, database: str = "app", user: str = "app") -> dict:
    rows = [r for r in show(conn, "POOLS") if r["database"] == database and r["user"] == user]
    assert len(rows) == 1, rows
    return rows[0]


def backend_pid(conn) -> int:
    return conn.execute("select pg_backend_pid()").fetchone()[0]


class Background:
    """Runs fn() in a thread; .done tells whether it returned, .result/.error what it gave."""

    def __init__(self, fn):
        self.result = None
        self.error: BaseException | None = None
        self._finished = threading.Event()

        def run():
            try:
                self.result = fn()
            except BaseException as e:  # noqa: BLE001
                self.error = e
            finally:
                self._finished.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    def wait(self, timeout: float = 10.0):
        assert self._finished.wait(timeout), f"background call did not finish within {timeout}s"
        if self.error is not None:
            raise self.error
        return self.result


# ---------------------------------------------------------------------------------------------------------------
# SHOW: column names, types and values


@pytest.mark.parametrize("dbname", ["pgcat", "pgbouncer"])
def test_show_columns_and_types_psycopg(pgcat, dbname):
    t = pgcat(pool_size=2, users=["app"])
    with t.connect() as c:
        c.execute("select 1")
        with admin(t, dbname) as a:
            for what, expected in COLUMNS.items():
                cur = a.execute(f"SHOW {what}")
                got = [(d.name, d.type_code) for d in cur.description]
                assert got == expected, f"SHOW {what}"
                assert cur.statusmessage == "SHOW", (what, cur.statusmessage)
                rows = cur.fetchall()
                # the row values parse as the declared types
                for row in rows:
                    for (name, oid), value in zip(expected, row):
                        assert isinstance(value, int if oid in (INT4, INT8) else str), (what, name, value)
            # the notice-only command
            seen: list[str] = []
            a.add_notice_handler(lambda d: seen.append(d.message_primary or ""))
            cur = a.execute("SHOW HELP")
            assert cur.description is None
            assert cur.statusmessage == "SHOW"
            text = "\n".join(seen)
            assert "Console usage" in text, seen
            for command in ("SHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION", "RELOAD", "SHUTDOWN",
                            "PAUSE", "RESUME"):
                assert command in text, (command, text)


@pytest.mark.parametrize("dbname", ["pgcat", "pgbouncer"])
def test_show_columns_psql(pgcat, dbname):
    t = pgcat(pool_size=2, users=["app"])
    psql(t, "select 1")
    for what, expected in COLUMNS.items():
        r = psql(t, f"SHOW {what}", user=ADMIN_USER, password=ADMIN_PASSWORD, dbname=dbname,
                 args=("-P", "tuples_only=off", "-P", "footer=off"))
        lines = r.stdout.splitlines()
        assert lines and lines[0] == "|".join(n for n, _ in expected), (what, r.stdout, r.stderr)
        if what in ("DATABASES", "POOLS", "USERS", "VERSION", "LISTS", "STATS", "CONFIG"):
            assert len(lines) > 1, (what, r.stdout)
    r = psql(t, "SHOW HELP", user=ADMIN_USER, password=ADMIN_PASSWORD, dbname=dbname)
    assert "Console usage" in r.stderr, r.stderr
    r = psql(t, "SHOW LISTS", user=ADMIN_USER, password=ADMIN_PASSWORD, dbname=dbname)
    assert [line.split("|")[0] for line in r.stdout.splitlines()] == LIST_NAMES, r.stdout


def test_show_static_values(pgcat, cluster):
    t = pgcat(pool_size=3, users={"app": {}, "md5_user": {"pool_size": 4}}, databases=("app", "shard0"),
              general={"connect_timeout": 4321})
    with admin(t) as a:
        dbs = show(a, "DATABASES")
        assert {(r["name"], r["database"], r["force_user"], r["pool_size"]) for r in dbs} == {
            ("app_shard_0_primary", "app", "app", 3), ("app_shard_0_primary", "app", "md5_user", 4),
            ("shard0_shard_0_primary", "shard0", "app", 3), ("shard0_shard_0_primary", "shard0", "md5_user", 4),
        }
        for r in dbs:
            assert (r["host"], r["port"], r["pool_mode"]) == (HOST, cluster.primary, "transaction")
            assert r["reserve_pool"] == 0
            assert r["max_connections"] == r["pool_size"]
            assert (r["paused"], r["disabled"], r["current_connections"]) == (0, 0, 0)
        assert sorted((r["name"], r["pool_mode"]) for r in show(a, "USERS")) == [
            ("app", "transaction"), ("app", "transaction"), ("md5_user", "transaction"), ("md5_user", "transaction")]
        [version] = show(a, "VERSION")
        assert version["version"].startswith("PgCat "), version
        config = {r["key"]: r for r in show(a, "CONFIG")}
        assert config["port"]["value"] == str(t.port) and config["port"]["changeable"] == "no"
        assert config["host"]["value"] == HOST and config["host"]["changeable"] == "no"
        assert config["connect_timeout"]["value"] == "4321"
        assert config["pools.app.pool_mode"]["value"] == "transaction"
        assert config['pools."shard0".shard_count']["value"] == "1"
        assert config['pools."app".users']["value"] == '["app", "md5_user"]'
        assert all(r["default"] == "-" and r["changeable"] in ("yes", "no") for r in config.values())
        counts = lists(a)
        assert list(counts) == LIST_NAMES
        assert (counts["databases"], counts["users"], counts["pools"]) == (2, 2, 4)
        assert counts["free_clients"] == counts["used_clients"] == counts["free_servers"] == counts["used_servers"] == 0
        assert {r["instance"] for r in show(a, "STATS")} == {"app_shard_0_primary", "shard0_shard_0_primary"}
        assert len(show(a, "STATS")) == 4
        assert show(a, "BANS") == []
        assert show(a, "CLIENTS") == [] and show(a, "SERVERS") == []


def test_show_under_load(pgcat):
    """pool_size 2: two clients hold transactions open, a third waits for a server, a fourth is idle."""
    t = pgcat(pool_size=2, users=["app"])
    holders = [t.connect(autocommit=False) for _ in range(2)]
    idle = t.connect(application_name="admin_idle_app")
    waiter = t.connect()
    with admin(t) as a:
        try:
            for h in holders:
                h.execute("select 1")  # transaction open: server connection held
            waiting = Background(lambda: waiter.execute("select 42").fetchone()[0])
            assert wait_for(lambda: pool_row(a)["cl_waiting"] == 1), pool_row(a)
            time.sleep(0.05)  # let maxwait grow
            p = pool_row(a)
            assert (p["cl_active"], p["cl_waiting"], p["cl_idle"]) == (2, 1, 1), p
            assert (p["sv_active"], p["sv_idle"], p["sv_login"]) == (2, 0, 0), p
            assert p["pool_mode"] == "transaction"
            wait_us = p["maxwait"] * 1_000_000 + p["maxwait_us"]
            assert 0 < wait_us < 10_000_000 and 0 <= p["maxwait_us"] < 1_000_000, p

            clients = show(a, "CLIENTS")
            assert sorted(c["state"] for c in clients) == ["active", "active", "idle", "waiting"], clients
            assert all(CLIENT_ID.match(c["client_id"]) for c in clients), clients
            assert len({c["client_id"] for c in clients}) == 4
            assert all((c["database"], c["user"]) == ("app", "app") for c in clients)
            [w] = [c for c in clients if c["state"] == "waiting"]
            assert w["maxwait"] * 1_000_000 + w["maxwait_us"] > 0, w
            assert all(c["pinned"] == "" for c in clients)
            [i] = [c for c in clients if c["application_name"] == "admin_idle_app"]
            assert i["state"] == "idle", i

            servers = show(a, "SERVERS")
            assert [s["state"] for s in servers] == ["active", "active"], servers
            assert all(s["address_id"] == "app_shard_0_primary" and s["database_name"] == "app" for s in servers)
            assert all(CLIENT_ID.match(s["server_id"]) for s in servers), servers

            counts = lists(a)
            assert (counts["used_clients"], counts["free_clients"], counts["login_clients"]) == (3, 1, 0), counts
            assert (counts["used_servers"], counts["free_servers"]) == (2, 0), counts
            dbs = show(a, "DATABASES")
            assert [d["current_connections"] for d in dbs] == [2], dbs
            assert not waiting.done, "the third client got a server while both were held"
            [stats_before] = show(a, "STATS")
        finally:
            for h in holders:
                h.commit()
        assert waiting.wait() == 42
        [stats_after] = show(a, "STATS")
        assert stats_after["total_wait_time"] > stats_before["total_wait_time"], (stats_before, stats_after)
        assert wait_for(lambda: pool_row(a)["cl_waiting"] == 0 and pool_row(a)["sv_active"] == 0), pool_row(a)
        p = pool_row(a)
        assert (p["cl_active"], p["cl_idle"], p["sv_idle"], p["maxwait"], p["maxwait_us"]) == (0, 4, 2, 0, 0), p
        assert sorted(c["state"] for c in show(a, "CLIENTS")) == ["idle"] * 4
        assert [s["state"] for s in show(a, "SERVERS")] == ["idle", "idle"]
        counts = lists(a)
        assert (counts["used_clients"], counts["free_clients"]) == (0, 4), counts
        assert (counts["used_servers"], counts["free_servers"]) == (0, 2), counts
    for c in (*holders, idle, waiter):
        c.close()


def test_counters_move_with_queries(pgcat):
    t = pgcat(pool_size=1, users=["app"])
    with t.connect() as c, admin(t) as a:
        c.execute("select 1")
        [stats0] = show(a, "STATS")
        [server0] = show(a, "SERVERS")
        [client0] = show(a, "CLIENTS")
        for i in range(5):
            c.execute("select %s::int", (i,))
        with c.transaction():
            c.execute("select 1")
            c.execute("select 2")
            c.execute("select 3")
        [stats1] = show(a, "STATS")
        [server1] = show(a, "SERVERS")
        [client1] = show(a, "CLIENTS")
        assert stats1["total_xact_count"] - stats0["total_xact_count"] == 6, (stats0, stats1)
        assert stats1["total_query_count"] - stats0["total_query_count"] >= 8, (stats0, stats1)
        assert stats1["total_received"] > stats0["total_received"] and stats1["total_sent"] > stats0["total_sent"]
        assert stats1["total_query_time"] >= stats0["total_query_time"]
        assert server1["server_id"] == server0["server_id"]
        assert server1["transaction_count"] - server0["transaction_count"] == 6, (server0, server1)
        assert server1["query_count"] - server0["query_count"] >= 8, (server0, server1)
        assert server1["bytes_sent"] > server0["bytes_sent"] and server1["bytes_received"] > server0["bytes_received"]
        assert client1["transaction_count"] - client0["transaction_count"] == 6, (client0, client1)
        assert client1["query_count"] - client0["query_count"] == 8 + 2, (client0, client1)  # with BEGIN and COMMIT

        # errors are counted for the client (and the server address)
        errors_before = client1["error_count"]
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("select 1/0")
        [client2] = show(a, "CLIENTS")
        assert client2["error_count"] == errors_before + 1, client2


def test_pinned_client_shows_its_reason(pgcat):
    t = pgcat(pool_size=3, users=["app"])
    with t.connect() as listener, t.connect() as locker, t.connect() as plain, admin(t) as a:
        listener.execute("listen admin_x")
        locker.execute("select pg_advisory_lock(777)")
        plain.execute("select 1")
        rows = show(a, "CLIENTS")
        assert sorted(r["pinned"] for r in rows) == ["", "LISTEN", "advisory lock"], rows
        # the pinned clients hold their server connections between transactions
        assert len(show(a, "SERVERS")) >= 2
        assert pool_row(a)["sv_idle"] <= 1, pool_row(a)
        locker.execute("select pg_advisory_unlock(777)")


def test_clients_show_where_they_connected_from(pgcat):
    t = pgcat(users=["app"])
    with RawConn(t.host, t.port) as c, admin(t) as a:
        c.startup("app", "app", "app")
        rows = show(a, "CLIENTS")
        assert [(r["addr"], r["port"]) for r in rows] == [c.sock.getsockname()[:2]], rows


def test_prepared_statement_cache_counters(pgcat):
    """Two clients preparing the same statement on the one server connection: a miss, then a hit."""
    t = pgcat(pool_size=1, users=["app"])
    first = psycopg.connect(t.conninfo(), autocommit=True, prepare_threshold=0)
    second = psycopg.connect(t.conninfo(), autocommit=True, prepare_threshold=0)
    with first, second, admin(t) as a:
        assert first.execute("select %s::int + 1 as admin_prep", (1,)).fetchone()[0] == 2
        [s1] = show(a, "SERVERS")
        assert s1["prepare_cache_miss"] >= 1 and s1["prepare_cache_size"] >= 1, s1
        assert second.execute("select %s::int + 1 as admin_prep", (2,)).fetchone()[0] == 3
        assert first.execute("select %s::int + 1 as admin_prep", (3,)).fetchone()[0] == 4
        [s2] = show(a, "SERVERS")
        assert s2["server_id"] == s1["server_id"]
        assert s2["prepare_cache_hit"] > s1["prepare_cache_hit"], (s1, s2)
        assert s2["prepare_cache_miss"] == s1["prepare_cache_miss"], (s1, s2)  # no second Parse on the server
        assert s2["prepare_cache_size"] == s1["prepare_cache_size"], (s1, s2)


def test_prepared_statement_cache_evictions(pgcat):
    t = pgcat(pool_size=1, users=["app"], pool={"prepared_statements_cache_size": 2})
    with psycopg.connect(t.conninfo(), autocommit=True, prepare_threshold=0) as c, admin(t) as a:
        for i in range(4):
            assert c.execute(f"select %s::int + {i} as evict_{i}", (1,)).fetchone()[0] == 1 + i
        [s] = show(a, "SERVERS")
        assert s["prepare_cache_miss"] >= 4, s
        assert s["prepare_cache_eviction"] >= 2, s
        assert 1 <= s["prepare_cache_size"] <= 2, s
        # an evicted statement still works (prepared again on the server)
        assert c.execute("select %s::int + 0 as evict_0", (5,)).fetchone()[0] == 5


def test_cancel_request_leaves_no_cancel_in_flight(pgcat):
    """cl_cancel_req counts CancelRequests forwarded and not yet answered (too brief to catch here): after a cancel
    it is back to 0, and the cancelled client keeps working."""
    t = pgcat(pool_size=1, users=["app"])
    with t.connect() as c, admin(t) as a:
        assert pool_row(a)["cl_cancel_req"] == 0
        sleeper = Background(lambda: c.execute("select pg_sleep(5)"))
        time.sleep(0.3)
        c.cancel()
        with pytest.raises(psycopg.errors.QueryCanceled):
            sleeper.wait()
        assert wait_for(lambda: pool_row(a)["cl_cancel_req"] == 0)
        assert c.execute("select 1").fetchone() == (1,)


# ---------------------------------------------------------------------------------------------------------------
# authentication and errors


@pytest.mark.parametrize("dbname", ["pgcat", "pgbouncer"])
def test_admin_wrong_password_refused_28p01(pgcat, dbname):
    t = pgcat(users=["app"])
    with RawConn(t.host, t.port) as c:
        with pytest.raises(PgError) as ei:
            c.startup(ADMIN_USER, dbname, "wrong-password")
        assert ei.value.sqlstate == "28P01", ei.value.fields
        assert ei.value.severity == "FATAL"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        admin(t, dbname, password="wrong-password")
    # the right password works on the same database
    with RawConn(t.host, t.port) as c:
        c.startup(ADMIN_USER, dbname, ADMIN_PASSWORD)
        assert c.query("SHOW VERSION")[0][0].startswith("PgCat")


@pytest.mark.parametrize("user", ["app", "md5_user"])
def test_non_admin_user_refused_on_admin_database(pgcat, user):
    t = pgcat()
    with RawConn(t.host, t.port) as c:
        with pytest.raises(PgError) as ei:
            c.startup(user, "pgcat", user)  # the user's real password, but not the admin
        assert ei.value.sqlstate == "28P01", ei.value.fields
        assert ei.value.severity == "FATAL"


def test_admin_works_while_pool_is_saturated(pgcat):
    t = pgcat(pool_size=1, users=["app"], general={"connect_timeout": 5000})
    with t.connect(autocommit=False) as holder, t.connect() as blocked:
        holder.execute("select 1")
        waiting = Background(lambda: blocked.execute("select 1"))
        with admin(t) as a:
            started = time.monotonic()
            for what in COLUMNS:
                show(a, what)
            assert time.monotonic() - started < 2, "admin commands waited on the saturated pool"
            assert pool_row(a)["cl_waiting"] == 1
        holder.commit()
        waiting.wait()


def test_unknown_commands_are_0a000(pgcat):
    t = pgcat(users=["app"])
    with admin(t) as a:
        with pytest.raises(psycopg.errors.FeatureNotSupported) as ei:
            a.execute("FROBNICATE everything")
        assert ei.value.diag.message_primary == "Unsupported query against the admin database"
        with pytest.raises(psycopg.errors.FeatureNotSupported) as ei:
            a.execute("select 1")
        assert "Unsupported query against the admin database" in ei.value.diag.message_primary
        with pytest.raises(psycopg.errors.FeatureNotSupported) as ei:
            a.execute("SHOW NOTHING_SUCH")
        assert ei.value.diag.message_primary == "Unsupported SHOW query against the admin database"
        # the session is still usable, keywords are case-insensitive, trailing semicolons trimmed
        assert a.execute("show version;").fetchone()[0].startswith("PgCat")
        assert [r[0] for r in a.execute("Show Lists ;;").fetchall()] == LIST_NAMES


def test_extended_protocol_is_0a000_and_session_survives(pgcat):
    t = pgcat(users=["app"])
    with admin(t) as a:
        with pytest.raises(psycopg.errors.FeatureNotSupported) as ei:
            a.execute("SHOW %s", ("POOLS",))  # with params: Parse/Bind/Describe/Execute/Sync
        assert "simple queries" in ei.value.diag.message_primary, ei.value.diag.message_primary
        assert a.execute("SHOW VERSION").fetchone()[0].startswith("PgCat")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            a.execute("SHOW VERSION", binary=True)  # no params, but the extended protocol
        assert a.execute("SHOW VERSION").fetchone()[0].startswith("PgCat")
        assert len(show(a, "POOLS")) == 1


def test_function_call_copy_messages_and_unknown_types_on_the_admin_console(pgcat):
    """A FunctionCall is a request of its own: 0A000 and ReadyForQuery, no Sync awaited; CopyData/CopyDone/CopyFail
    outside COPY are ignored; an unknown message type is FATAL 08P01 and the end, as in PostgreSQL. (Before stop 25
    each got 0A000 and then waited for a Sync, swallowing the client's next query: the client hung.)"""
    t = pgcat(users=["app"])
    with RawConn(t.host, t.port, timeout=5) as c:
        c.startup("pgcat_admin", "pgcat", "pgcat_admin")
        c.send(message(b"F", b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"))
        with pytest.raises(PgError) as refused:
            c.read_until_ready()
        assert refused.value.sqlstate == "0A000"
        for stray in (message(b"d", b"abc"), message(b"c", b""), message(b"f", b"no\x00")):
            c.send(stray)
        assert c.query("SHOW VERSION")[0][0].startswith("PgCat")
        c.send(message(b"?", b""))
        kind, payload = c.read_message()
        assert kind == b"E" and parse_error_fields(payload).get("C") == "08P01", (kind, payload)
        assert c.wait_closed(5)


def test_ban_usage_errors(pgcat):
    t = pgcat(users=["app"])
    with admin(t) as a:
        for command, message in [("BAN 127.0.0.1", "usage: BAN hostname duration_seconds"),
                                 ("BAN 127.0.0.1 soon", "duration_seconds must be an integer"),
                                 # (before: the process crashed on an arithmetic overflow)
                                 ("BAN 127.0.0.1 99999999999", "duration_seconds must be at most 31536000"),
                                 ("UNBAN", "UNBAN command requires a hostname to unban")]:
            with pytest.raises(psycopg.Error) as ei:
                a.execute(command)
            assert message in ei.value.diag.message_primary, (command, ei.value.diag.message_primary)
        with pytest.raises(psycopg.Error) as ei:
            a.execute("PAUSE nosuchdb,nosuchuser")
        assert "No pool configured" in ei.value.diag.message_primary
        with pytest.raises(psycopg.Error) as ei:
            a.execute("PAUSE nosuchdb")
        assert ei.value.diag.message_primary == "No pool configured for database: nosuchdb"
        assert a.execute("SHOW VERSION").fetchone()[0].startswith("PgCat")


def test_set_is_accepted(pgcat):
    t = pgcat(users=["app"])
    with admin(t) as a:
        cur = a.execute("SET client_encoding = 'UTF8'")
        assert cur.statusmessage == "SET"
        assert cur.description is None
    r = psql(t, "SET application_name = 'x'", user=ADMIN_USER, password=ADMIN_PASSWORD, dbname="pgbouncer",
             args=("-e",))
    assert r.returncode == 0


# ---------------------------------------------------------------------------------------------------------------
# BAN / UNBAN


def test_ban_unban_replica(pgcat, cluster):
    servers = [[HOST, cluster.primary, "primary"], [HOST, cluster.replicas[0], "replica"]]
    t = pgcat(pool_size=2, users=["app"], servers=servers, pool={"default_role": "any"})

    def recovery_flags(n: int) -> set[bool]:
        with t.connect() as c:
            return {c.execute("select pg_is_in_recovery()").fetchone()[0] for _ in range(n)}

    assert recovery_flags(40) == {True, False}, "random load balancing never reached both servers"
    with admin(t) as a:
        cur = a.execute("BAN 127.0.0.1 30")
        assert cur.statusmessage == "BAN"
        assert [d.name for d in cur.description] == ["db", "user", "role", "host"]
        assert cur.fetchall() == [("app", "app", "replica", HOST)]  # the primary is never banned
        assert a.execute("BAN 127.0.0.1 30").fetchall() == []  # already banned: nothing newly banned

        [ban] = show(a, "BANS")
        assert (ban["db"], ban["user"], ban["role"], ban["host"]) == ("app", "app", "replica", HOST)
        assert ban["reason"] == "AdminBan(30)"
        assert ban["ban_duration_seconds"] == "30"
        assert 0 < int(ban["ban_remaining_seconds"]) <= 30, ban
        assert (ban["port"], ban["address_id"]) == (cluster.replicas[0], "app_shard_0_replica_0"), ban
        assert re.match(r"\d{4}-\d\d-\d\d", ban["ban_time"]), ban
        disabled = {r["name"]: r["disabled"] for r in show(a, "DATABASES")}
        assert disabled == {"app_shard_0_primary": 0, "app_shard_0_replica_0": 1}

        assert recovery_flags(30) == {False}, "a banned replica still took queries"

        cur = a.execute("UNBAN 127.0.0.1")
        assert cur.statusmessage == "UNBAN"
        assert cur.fetchall() == [("app", "app", "replica", HOST)]
        assert show(a, "BANS") == []
        assert {r["name"]: r["disabled"] for r in show(a, "DATABASES")}["app_shard_0_replica_0"] == 0
        assert a.execute("UNBAN 127.0.0.1").fetchall() == []
    assert recovery_flags(40) == {True, False}


def test_ban_expires(pgcat, cluster):
    servers = [[HOST, cluster.primary, "primary"], [HOST, cluster.replicas[0], "replica"]]
    t = pgcat(pool_size=1, users=["app"], servers=servers)
    with admin(t) as a:
        assert len(a.execute("BAN 127.0.0.1 1").fetchall()) == 1
        assert len(show(a, "BANS")) == 1
        assert wait_for(lambda: show(a, "BANS") == [], timeout=3), show(a, "BANS")
        assert {r["name"]: r["disabled"] for r in show(a, "DATABASES")}["app_shard_0_replica_0"] == 0


# ---------------------------------------------------------------------------------------------------------------
# PAUSE / RESUME, RECONNECT, KILL


def test_pause_resume(pgcat):
    t = pgcat(pool_size=2, users=["app", "md5_user"])
    with t.connect() as c, t.connect(user="md5_user") as other, admin(t) as a:
        c.execute("select 1")
        cur = a.execute("PAUSE app,app")
        assert cur.statusmessage == "PAUSE app,app"
        paused = {(r["database"], r["force_user"]): r["paused"] for r in show(a, "DATABASES")}
        assert paused == {("app", "app"): 1, ("app", "md5_user"): 0}
        assert [r["current_connections"] for r in show(a, "DATABASES") if r["force_user"] == "app"] == [0], \
            "PAUSE left idle server connections open"

        query = Background(lambda: c.execute("select 7").fetchone()[0])
        time.sleep(1.0)
        assert not query.done, "a query ran on a paused pool"
        assert pool_row(a)["cl_waiting"] == 1
        assert other.execute("select 8").fetchone()[0] == 8  # another pool is not paused

        cur = a.execute("RESUME app,app")
        assert cur.statusmessage == "RESUME app,app"
        assert query.wait(5) == 7
        assert all(r["paused"] == 0 for r in show(a, "DATABASES"))

        # PAUSE without arguments pauses everything
        assert a.execute("PAUSE").statusmessage == "PAUSE"
        assert all(r["paused"] == 1 for r in show(a, "DATABASES"))
        assert a.execute("RESUME").statusmessage == "RESUME"
        assert all(r["paused"] == 0 for r in show(a, "DATABASES"))
        assert c.execute("select 9").fetchone()[0] == 9


def test_pause_closes_connections_as_their_transactions_end(pgcat, primary):
    """A server connection busy at PAUSE is closed when its transaction ends, not kept idle until RESUME."""
    t = pgcat(pool_size=2, users=["app"])
    with t.connect(autocommit=False) as c, admin(t) as a:
        pid = backend_pid(c)  # a transaction is open: the connection is leased
        a.execute("PAUSE app")
        assert [r["current_connections"] for r in show(a, "DATABASES") if r["force_user"] == "app"] == [1]
        c.commit()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and primary.value(f"select count(*) from pg_stat_activity where pid = {pid}"):
            time.sleep(0.1)
        assert primary.value(f"select count(*) from pg_stat_activity where pid = {pid}") == 0, "still connected"
        assert [r["current_connections"] for r in show(a, "DATABASES") if r["force_user"] == "app"] == [0]
        a.execute("RESUME app")
        c.autocommit = True
        assert backend_pid(c) != pid


def test_waiting_on_paused_pool_times_out_57014(pgcat):
    t = pgcat(pool_size=1, users=["app"], general={"connect_timeout": 1500})
    with t.connect() as c, admin(t) as a:
        c.execute("select 1")
        a.execute("PAUSE app")
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled) as ei:
            c.execute("select 1")
        elapsed = time.monotonic() - started
        assert ei.value.diag.sqlstate == "57014"
        assert "is paused by PAUSE or KILL" in str(ei.value), str(ei.value)  # not "saturated"
        assert 1.2 < elapsed < 6, elapsed
        a.execute("RESUME app")
        assert c.execute("select 2").fetchone()[0] == 2


def test_kill_under_load_leaves_no_server_connection_open(pgcat, pgbench_tables):
    """KILL with clients waiting for a connection (pgbench, 20 clients, pool_size 5): connections that finish
    opening for those waiters after KILL are closed too, and min_pool_size waits for RESUME, so the paused pool
    holds none (before: the openings stayed idle until RESUME)."""
    t = pgcat(pool_size=5, users={"app": {"min_pool_size": 2}})

    def pooled() -> int:
        with admin(t) as a:
            return sum(1 for s in show(a, "SERVERS") if s["database_name"] == "app")

    for _ in range(2):
        bench = Background(lambda: pgbench(t, ["-n", "-S", "-c", "20", "-j", "2", "-T", "4", "-M", "extended"]))
        time.sleep(1.5)
        with admin(t) as a:
            assert a.execute("KILL app").statusmessage == "KILL"
        bench.wait(30)
        assert wait_for(lambda: pooled() == 0, timeout=5), "server connections left in a killed pool"
        time.sleep(1.5)  # the janitor's rounds (every second) open nothing for min_pool_size while paused
        assert pooled() == 0
        with admin(t) as a:
            a.execute("RESUME app")
    with t.connect() as c:
        assert c.execute("select 1").fetchone() == (1,)


def test_reconnect_replaces_server_connections(pgcat):
    t = pgcat(pool_size=2, users=["app"])
    with t.connect() as idle_client, t.connect(autocommit=False) as in_txn, admin(t) as a:
        txn_pid = backend_pid(in_txn)  # transaction open: this connection is leased during RECONNECT
        before = backend_pid(idle_client)
        assert before != txn_pid
        assert a.execute("RECONNECT app").statusmessage == "RECONNECT"
        after = backend_pid(idle_client)
        assert after not in (before, txn_pid), "idle connection survived RECONNECT"
        assert backend_pid(in_txn) == txn_pid  # the open transaction keeps its connection
        in_txn.commit()
        in_txn.autocommit = True
        pids = {backend_pid(in_txn) for _ in range(5)} | {backend_pid(idle_client) for _ in range(5)}
        assert not pids & {before, txn_pid}, "a connection from before RECONNECT was reused"
        with pytest.raises(psycopg.Error, match="No such database"):
            a.execute("RECONNECT nosuchdb")
        assert a.execute("RECONNECT").statusmessage == "RECONNECT"
        assert backend_pid(idle_client) not in pids


def test_kill_disconnects_clients_and_pauses(pgcat):
    t = pgcat(pool_size=2, users=["app"], databases=("app", "shard0"))
    raw = RawConn(t.host, t.port)
    raw.startup("app", "app", "app")
    assert raw.query("select 1") == [["1"]]
    with t.connect() as c, t.connect(dbname="shard0") as survivor, admin(t) as a:
        c.execute("select 1")
        survivor.execute("select 1")
        assert a.execute("KILL app").statusmessage == "KILL"

        err = raw.read_error()
        assert err.sqlstate == "57P01" and err.severity == "FATAL", err.fields
        assert raw.wait_closed(5)
        with pytest.raises(psycopg.OperationalError):
            c.execute("select 1")
        assert survivor.execute("select current_database()").fetchone()[0] == "shard0"
        assert wait_for(lambda: all(s["database_name"] != "app" for s in show(a, "SERVERS"))), show(a, "SERVERS")
        assert {r["database"]: r["paused"] for r in show(a, "DATABASES")} == {"app": 1, "shard0": 0}

        newcomer = t.connect()
        query = Background(lambda: newcomer.execute("select 5").fetchone()[0])
        time.sleep(1.0)
        assert not query.done, "a query ran on a killed (paused) database"
        a.execute("RESUME app")
        assert query.wait(5) == 5
        newcomer.close()
        with pytest.raises(psycopg.Error, match="No such database"):
            a.execute("KILL nosuchdb")
    raw.close()


def test_kill_tells_a_client_with_a_running_statement_57p01(pgcat):
    """A client whose statement is running when KILL comes gets the KILL's FATAL 57P01, not 08006 "server
    connection lost" (its server is closed only after the client has been told)."""
    t = pgcat(pool_size=2, users=["app"])
    with t.connect() as busy, admin(t) as a:
        busy.execute("select 1")
        running = Background(lambda: busy.execute("select pg_sleep(5)"))
        time.sleep(0.5)
        assert a.execute("KILL app").statusmessage == "KILL"
        with pytest.raises(psycopg.Error) as ei:
            running.wait(10)
        assert ei.value.sqlstate == "57P01", (ei.value.sqlstate, str(ei.value))
        assert "(KILL)" in str(ei.value)
        a.execute("RESUME app")


# ---------------------------------------------------------------------------------------------------------------
# SHUTDOWN


def test_admin_shutdown_exits(pgcat):
    t = pgcat(users=["app"], general={"shutdown_timeout": 5000})
    with t.connect() as c:
        c.execute("select 1")
    a = admin(t)
    cur = a.execute("SHUTDOWN")
    assert cur.statusmessage == "SHUTDOWN"
    assert [d.name for d in cur.description] == ["success"]
    assert cur.fetchall() == [("t",)]
    assert t.proc.wait(timeout=5) == 0
    a.close()


def test_admin_shutdown_drains_open_transaction(pgcat):
    t = pgcat(users=["app"], general={"shutdown_timeout": 10000})
    busy = t.connect(autocommit=False)
    busy.execute("select 1")
    with admin(t) as a:
        assert a.execute("SHUTDOWN").fetchall() == [("t",)]
        time.sleep(0.3)
        assert t.proc.poll() is None, "exited while a transaction was open"
        with pytest.raises(psycopg.OperationalError, match="shutting down"):
            t.connect()
        # admin logins still work during the drain
        with admin(t) as b:
            assert b.execute("SHOW VERSION").fetchone()[0].startswith("PgCat")
    assert busy.execute("select 2").fetchone() == (2,)
    busy.commit()
    assert t.proc.wait(timeout=5) == 0
    busy.close()


def test_admin_shutdown_closes_idle_pinned_client(pgcat):
    t = pgcat(users=["app"], general={"shutdown_timeout": 6000})
    pinned = RawConn(t.host, t.port, timeout=3)
    pinned.startup("app", "app", "app")
    pinned.query("listen admin_shutdown")  # pinned, but idle: no transaction open
    with admin(t) as a:
        assert a.execute("SHUTDOWN").fetchall() == [("t",)]
    try:
        err = pinned.read_error()
        assert err.sqlstate == "57P01", err.fields
    except (OSError, ConnectionClosed) as e:
        pytest.fail(f"the idle pinned client was not told 57P01: {e!r}")
    finally:
        pinned.close()
    assert t.proc.wait(timeout=3) == 0
