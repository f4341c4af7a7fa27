"""Pooler timeouts: waiting for a server connection (connect_timeout -> ERROR 57014) and an idle client inside a
transaction (idle_client_in_transaction_timeout -> FATAL 25P03 as the reply to its next message)."""

import socket
import time

import psycopg
import pytest

from support import HOST, pooler_ports_to

pytestmark = pytest.mark.pooler_only


def pooler_backends(primary, target, cluster, state_like: str = "%") -> int:
    ports = sorted(pooler_ports_to(target.proc.pid, cluster.primary))
    if not ports:
        return 0
    return primary.value(
        "select count(*) from pg_stat_activity where client_addr = %s and client_port = any(%s) and state like %s",
        (HOST, ports, state_like),
    )


def test_connect_timeout_pool_saturated_57014(pgcat):
    t = pgcat(pool_size=1, general={"connect_timeout": 1000})
    with t.connect() as b, t.connect() as a:
        a.execute("begin")
        a.execute("select 1")  # a holds the only server connection
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled) as ei:
            b.execute("select 1")
        elapsed = time.monotonic() - started
        e = ei.value
        assert e.diag.sqlstate == "57014"
        assert e.diag.severity_nonlocalized == "ERROR"
        assert "timed out waiting for a server connection" in e.diag.message_primary, e.diag.message_primary
        assert elapsed < 15, f"pool wait took {elapsed:.1f}s with connect_timeout 1000 ms"
        # ERROR, not FATAL: b stays connected and works once a releases the server
        assert not b.closed
        a.execute("commit")
        assert b.execute("select 2").fetchone()[0] == 2
        assert a.execute("select 3").fetchone()[0] == 3


def test_a_server_that_never_finishes_logins_is_not_called_a_saturated_pool(pgcat):
    """A server that accepts TCP connections but never answers the login (a stopped postmaster): the client is
    not told its pool is saturated (which sends an operator to raise pool_size), but that connections are being
    opened and the server has not logged them in; or, if the opening gave up first, that the server failed."""
    silent = socket.socket()
    silent.bind((HOST, 0))
    silent.listen(16)
    try:
        t = pgcat(pool_size=5, general={"connect_timeout": 1000}, servers=[[HOST, silent.getsockname()[1], "primary"]])
        with pytest.raises(psycopg.OperationalError) as ei:
            t.connect()
        message = str(ei.value)
        assert "saturated" not in message, message
        assert "being opened, the server has not finished logging it in" in message or "08006" in message \
            or "no healthy server" in message, message
    finally:
        silent.close()


def test_connect_timeout_does_not_break_later_checkouts(pgcat):
    t = pgcat(pool_size=1, general={"connect_timeout": 500})
    with t.connect() as b, t.connect() as a:
        a.execute("begin")
        for _ in range(3):
            with pytest.raises(psycopg.errors.QueryCanceled):
                b.execute("select 1")
        a.execute("rollback")
        for i in range(5):
            assert b.execute("select %s::int", (i,)).fetchone()[0] == i


def test_idle_client_in_transaction_timeout_ends_the_session_with_fatal_25p03(pgcat, primary, cluster):
    table = primary.make_table("it_idle_txn")
    t = pgcat(pool_size=1, general={"idle_client_in_transaction_timeout": 500})
    with t.connect() as c:
        c.execute("begin")
        c.execute(f"insert into {table} values (1, 'never committed')")
        assert pooler_backends(primary, t, cluster, "idle in transaction%") == 1
        # wait (polling the server, not sleeping a fixed time) until the pooler rolled back and released it
        deadline = time.monotonic() + 15
        while pooler_backends(primary, t, cluster, "idle in transaction%") != 0:
            assert time.monotonic() < deadline, "transaction still open on the server 15 s after a 500 ms timeout"
            time.sleep(0.05)
        assert primary.value(f"select count(*) from {table}") == 0
        # the error is the reply to the next message, here an INSERT that must not run (and commit) on its own
        with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout) as ei:
            c.execute(f"insert into {table} values (2, 'the rest of the transaction')")
        e = ei.value
        assert e.diag.sqlstate == "25P03", (e.diag.sqlstate, str(e))
        assert e.diag.severity_nonlocalized == "FATAL"
        assert "idle-in-transaction timeout" in (e.diag.message_primary or "")
        assert c.closed or c.broken
    assert primary.value(f"select count(*) from {table}") == 0, "nothing of the transaction was committed"


def test_idle_client_in_transaction_timeout_not_triggered_by_active_client(pgcat, primary):
    table = primary.make_table("it_idle_txn_active")
    t = pgcat(pool_size=1, general={"idle_client_in_transaction_timeout": 1000})
    with t.connect() as c:
        c.execute("begin")
        # busy in the transaction for longer than the timeout, but never idle for that long
        for i in range(8):
            c.execute(f"insert into {table} values (%s, 'x')", (i,))
            c.execute("select pg_sleep(0.2)")
        c.execute("commit")
    assert primary.value(f"select count(*) from {table}") == 8


def test_query_timeout_ends_the_session_and_cancels_the_server(pgcat, primary, cluster):
    """query_timeout (PgBouncer's): no answer within the limit -> FATAL 57014, the backend's query cancelled and its
    connection closed, never handed to another client."""
    t = pgcat(pool_size=1, general={"query_timeout": 1000})
    with t.connect() as quick:
        assert quick.execute("select pg_sleep(0.3), 1").fetchone()[1] == 1  # under the limit: untouched
    c = t.connect()
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError) as ei:
        c.execute("select pg_sleep(30)")
    elapsed = time.monotonic() - started
    assert ei.value.diag.sqlstate == "57014", ei.value
    assert "query_timeout" in str(ei.value)
    assert 1.0 <= elapsed < 5, f"query_timeout 1000 ms fired after {elapsed:.1f}s"
    c.close()
    deadline = time.monotonic() + 10
    while primary.value("select count(*) from pg_stat_activity where query = 'select pg_sleep(30)' "
                        "and state = 'active'") > 0:
        assert time.monotonic() < deadline, "the timed-out query still runs on the server"
        time.sleep(0.1)
    with t.connect() as again:  # the pool (size 1) serves the next client on a fresh connection
        assert again.execute("select 2").fetchone()[0] == 2
        assert again.execute("select count(*) from pg_stat_activity where query = 'select pg_sleep(30)'"
                             ).fetchone()[0] == 0


def test_query_timeout_leaves_idle_transactions_alone(pgcat):
    """Only a client waiting for an answer is timed: one idle inside a transaction keeps its session."""
    t = pgcat(pool_size=1, general={"query_timeout": 500})
    with t.connect() as c:
        c.execute("begin")
        c.execute("select 1")
        time.sleep(2.0)
        assert c.execute("select 3").fetchone()[0] == 3
        c.execute("commit")
