"""Transaction and session pooling: server connections are shared between transactions (transaction mode) or held
for the whole client session (session mode), never more than pool_size of them."""

import threading

import psycopg
import pytest

from support import pooler_ports_to


def backend_pid(conn) -> int:
    return conn.execute("select pg_backend_pid()").fetchone()[0]


def test_transaction_mode_interleaved_transactions_pool_size_1(pgcat, primary):
    table = primary.make_table("it_interleave")
    t = pgcat(pool_size=1)
    with t.connect() as a, t.connect() as b:
        for i in range(5):
            a.execute("begin")
            a.execute(f"insert into {table} values (%s, 'a')", (2 * i,))
            a.execute("commit")  # the server connection goes back to the pool here
            b.execute("begin")
            b.execute(f"insert into {table} values (%s, 'b')", (2 * i + 1,))
            assert b.execute(f"select count(*) from {table}").fetchone()[0] == 2 * i + 2
            b.execute("commit")
    assert primary.value(f"select count(*) from {table}") == 10


@pytest.mark.pooler_only
def test_transaction_mode_clients_share_one_backend(pgcat):
    t = pgcat(pool_size=1)
    conns = [t.connect() for _ in range(5)]
    try:
        pids = {backend_pid(c) for c in conns for _ in range(2)}
        assert len(pids) == 1, pids
    finally:
        for c in conns:
            c.close()


@pytest.mark.pooler_only
def test_transaction_mode_sequential_connections_reuse_backends(pgcat):
    t = pgcat(pool_size=2)
    pids = set()
    for _ in range(25):
        with t.connect() as c:
            pids.add(backend_pid(c))
    assert 1 <= len(pids) <= 2, pids


@pytest.mark.pooler_only
def test_transaction_mode_pid_constant_within_transaction(pgcat):
    t = pgcat(pool_size=3)
    with t.connect() as a, t.connect() as b:
        a.execute("begin")
        first = backend_pid(a)
        for _ in range(5):
            backend_pid(b)
            assert backend_pid(a) == first
        a.execute("commit")


def test_open_transaction_not_visible_to_other_client(pgcat, primary):
    table = primary.make_table("it_isolation")
    t = pgcat(pool_size=2)
    with t.connect() as a, t.connect() as b:
        a.execute("begin")
        a.execute(f"insert into {table} values (1, 'uncommitted')")
        assert a.execute(f"select count(*) from {table}").fetchone()[0] == 1
        assert b.execute(f"select count(*) from {table}").fetchone()[0] == 0
        a.execute("rollback")
        assert b.execute(f"select count(*) from {table}").fetchone()[0] == 0
        a.execute(f"insert into {table} values (2, 'committed')")
        assert b.execute(f"select count(*) from {table}").fetchone()[0] == 1


def test_waiting_client_served_when_connection_frees(pgcat):
    """pool_size 1: a client that needs a server while another holds it in a transaction waits and then runs."""
    t = pgcat(pool_size=1)
    with t.connect() as a, t.connect() as b:
        a.execute("begin")
        a.execute("select 1")
        result = {}

        def run_b():
            try:
                result["v"] = b.execute("select 99").fetchone()[0]
            except Exception as e:  # noqa: BLE001 - reported below
                result["e"] = e

        th = threading.Thread(target=run_b)
        th.start()
        a.execute("commit")
        th.join(30)
        assert not th.is_alive(), "waiting client never got the freed server connection"
        assert result.get("v") == 99, result


def test_session_mode_keeps_backend(pgcat):
    t = pgcat(pool_mode="session", pool_size=2)
    with t.connect() as a:
        pid = backend_pid(a)
        for i in range(5):
            a.execute("begin")
            assert backend_pid(a) == pid
            a.execute("commit")
            assert backend_pid(a) == pid


def test_session_mode_keeps_session_state(pgcat):
    t = pgcat(pool_mode="session", pool_size=2)
    with t.connect() as a:
        a.execute("set statement_timeout = '12345ms'")
        a.execute("create temp table it_tmp (x int)")
        a.execute("insert into it_tmp values (1)")
        for _ in range(3):
            assert a.execute("show statement_timeout").fetchone()[0] == "12345ms"
            assert a.execute("select count(*) from it_tmp").fetchone()[0] == 1


@pytest.mark.pooler_only
def test_session_mode_two_clients_two_backends_then_reuse(pgcat):
    t = pgcat(pool_mode="session", pool_size=2)
    a = t.connect()
    b = t.connect()
    pa, pb = backend_pid(a), backend_pid(b)
    assert pa != pb
    a.close()
    with t.connect() as c:
        # the server connection a held went back to the pool; pool_size 2 means no third backend
        assert backend_pid(c) in (pa, pb)
        assert backend_pid(c) == backend_pid(c)
    b.close()


@pytest.mark.pooler_only
def test_session_mode_state_reset_for_next_client(pgcat):
    """A session-mode server connection handed to the next client carries no SET from the previous one."""
    t = pgcat(pool_mode="session", pool_size=1)
    with t.connect() as a:
        a.execute("set statement_timeout = '4321ms'")
        pid = backend_pid(a)
    with t.connect() as b:
        assert backend_pid(b) == pid
        assert b.execute("show statement_timeout").fetchone()[0] == "0"


@pytest.mark.pooler_only
def test_transaction_mode_never_exceeds_pool_size(pgcat, cluster):
    t = pgcat(pool_size=2)
    conns = [t.connect() for _ in range(6)]
    try:
        for c in conns:
            c.execute("select 1")
        ports = pooler_ports_to(t.proc.pid, cluster.primary)
        # at most pool_size client connections, plus at most one background probe connection
        assert len(ports) <= 3, ports
    finally:
        for c in conns:
            c.close()
