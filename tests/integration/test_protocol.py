"""Protocol features beyond plain queries: COPY both ways, CancelRequest (only the right query is cancelled),
Flush without Sync, portals with row limits, pipelined extended messages, FunctionCall."""

import socket
import struct
import threading
import time

import psycopg
import pytest

from pgwire import CANCEL_REQUEST_CODE, RawConn, message
from support import psql


def cstr(s: str) -> bytes:
    return s.encode() + b"\x00"


def parse_msg(sql: str, name: str = "") -> bytes:
    return message(b"P", cstr(name) + cstr(sql) + struct.pack("!H", 0))


def bind_msg(portal: str = "", stmt: str = "", params: tuple[bytes | None, ...] = ()) -> bytes:
    body = cstr(portal) + cstr(stmt) + struct.pack("!H", 0) + struct.pack("!H", len(params))
    for p in params:
        body += struct.pack("!i", -1) if p is None else struct.pack("!i", len(p)) + p
    return message(b"B", body + struct.pack("!H", 0))


def execute_msg(portal: str = "", max_rows: int = 0) -> bytes:
    return message(b"E", cstr(portal) + struct.pack("!I", max_rows))


SYNC = message(b"S", b"")
FLUSH = message(b"H", b"")


def read_types_until(c: RawConn, stop: bytes) -> list[bytes]:
    types = []
    while True:
        t, _ = c.read_message()
        types.append(t)
        if t == stop:
            return types


def test_copy_from_stdin_and_to_stdout_psql(pgcat, primary):
    table = primary.make_table("it_copy_psql")
    t = pgcat()
    rows = "".join(f"{i}\tvalue {i}\n" for i in range(1000))
    r = psql(t, stdin=f"copy {table} from stdin;\n{rows}\\.\nselect count(*) from {table};\n")
    assert r.stdout.strip() == "1000"
    out = psql(t, f"copy (select * from {table} order by id) to stdout").stdout
    assert out == rows


def test_copy_psycopg_both_ways(pgcat, primary):
    table = primary.make_table("it_copy_psycopg")
    t = pgcat(pool_size=1)
    with t.connect() as c, t.connect() as other:
        with c.cursor() as cur:
            with cur.copy(f"copy {table} (id, v) from stdin") as cp:
                for i in range(500):
                    cp.write_row((i, f"r{i}"))
        # the server connection went back to the pool after COPY: another client can use it
        assert other.execute(f"select count(*) from {table}").fetchone()[0] == 500
        with c.cursor() as cur:
            with cur.copy(f"copy (select id from {table} where id < 5 order by id) to stdout") as cp:
                got = [row for row in cp.rows()]
        assert [int(r[0]) for r in got] == [0, 1, 2, 3, 4]


def test_copy_100k_rows_both_ways_under_contention(pgcat, primary):
    """100,000 rows in and out through a pool of 2 while 6 other clients keep querying: every row arrives, in
    order, and the other clients' answers are their own."""
    table = primary.make_table("it_copy_100k", "id int primary key, v text")
    t = pgcat(pool_size=2)
    stop = threading.Event()
    failures = []

    def chatter(i: int):
        try:
            with t.connect() as conn:
                k = 0
                while not stop.is_set():
                    assert conn.execute("select %s::int", (i * 100000 + k,)).fetchone()[0] == i * 100000 + k
                    k += 1
        except Exception as e:  # noqa: BLE001
            failures.append(repr(e))

    threads = [threading.Thread(target=chatter, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    try:
        with t.connect() as c:
            with c.cursor() as cur:
                with cur.copy(f"copy {table} (id, v) from stdin") as cp:
                    for i in range(100_000):
                        cp.write_row((i, f"row {i} " + "x" * (i % 50)))
            assert c.execute(f"select count(*), sum(id) from {table}").fetchone() == (100_000, sum(range(100_000)))
            with c.cursor() as cur:
                with cur.copy(f"copy (select id, v from {table} order by id) to stdout") as cp:
                    n = 0
                    for row in cp.rows():
                        assert int(row[0]) == n and row[1] == f"row {n} " + "x" * (n % 50)
                        n += 1
            assert n == 100_000
    finally:
        stop.set()
        for th in threads:
            th.join(30)
    assert not failures, failures


def test_copy_error_keeps_connection(pgcat, primary):
    table = primary.make_table("it_copy_err")
    t = pgcat()
    with t.connect() as c:
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            with c.cursor().copy(f"copy {table} (id, v) from stdin") as cp:
                cp.write(b"1\tok\nnot-a-number\tbad\n")
        assert c.execute(f"select count(*) from {table}").fetchone()[0] == 0
        assert c.execute("select 1").fetchone()[0] == 1


def test_cancel_request_cancels_only_that_query(pgcat):
    t = pgcat(pool_size=2)
    with t.connect() as a, t.connect() as b:
        results = {}

        def run_b():
            try:
                results["b"] = b.execute("select pg_sleep(1.5), 'b done'").fetchone()[1]
            except Exception as e:  # noqa: BLE001
                results["b"] = e

        tb = threading.Thread(target=run_b)
        tb.start()

        def cancel_a_soon():
            time.sleep(0.3)
            a.cancel()

        ta = threading.Thread(target=cancel_a_soon)
        ta.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled) as ei:
            a.execute("select pg_sleep(20)")
        assert time.monotonic() - started < 15
        assert "canceling statement due to user request" in str(ei.value)
        ta.join(10)
        tb.join(30)
        assert results.get("b") == "b done", results
        assert a.execute("select 'a again'").fetchone()[0] == "a again"


@pytest.mark.pooler_only
def test_a_cancel_in_flight_never_reaches_the_next_clients_statement(pgcat):
    """One server connection for two clients (transaction mode): a keeps cancelling its own short statements, b
    never cancels anything. A cancel that is still on its way when a's statement ends must not cancel b's statement
    on the same backend: the connection is held back until the cancel is done (as PgBouncer does)."""
    t = pgcat(pool_size=1)
    a, b = t.connect(prepare_threshold=None), t.connect(prepare_threshold=None)
    stop = threading.Event()
    b_errors: list[str] = []
    counts = {"a": 0, "b": 0, "cancels": 0}

    def run_a():
        while not stop.is_set():
            try:
                a.execute("select pg_sleep(0.001)")
            except psycopg.errors.QueryCanceled:
                pass
            counts["a"] += 1

    def cancel_a():
        while not stop.is_set():
            a.cancel_safe()
            counts["cancels"] += 1

    def run_b():
        while not stop.is_set():
            try:
                b.execute("select pg_sleep(0.002)")
                counts["b"] += 1
            except psycopg.Error as e:  # noqa: PERF203
                b_errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=f) for f in (run_a, cancel_a, run_b)]
    for th in threads:
        th.start()
    time.sleep(4)
    stop.set()
    for th in threads:
        th.join(30)
    a.close()
    b.close()
    assert counts["b"] > 20 and counts["cancels"] > 20, counts
    assert b_errors == [], (len(b_errors), b_errors[:3], counts)


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_a_late_cancel_does_not_hit_the_clients_next_statement(pgcat, mode):
    """libpq's PQcancel (psycopg's cancel(), and asyncpg's timeouts alike) returns when its cancel connection is
    closed and takes that to mean the cancel was handled, then sends its next statement. The pooler closes the
    requester's connection only once the server has handled the forwarded cancel: before, a cancel of a statement
    that had just ended still reached the backend behind the next statement and cancelled it (48 of 50, where
    Postgres cancels none). In transaction mode the client holds its server inside a transaction."""
    t = pgcat(pool_size=2, pool={"pool_mode": mode})
    with t.connect(autocommit=mode == "session", prepare_threshold=None) as c:
        cancelled = 0
        for _ in range(20):
            c.execute("select 1")
            c.cancel()
            try:
                c.execute("select pg_sleep(0.02)")
            except psycopg.errors.QueryCanceled:
                cancelled += 1
                c.rollback()
        assert cancelled == 0


@pytest.mark.pooler_only
def test_cancel_while_waiting_for_a_server_connection(pgcat):
    """The client's query has not reached any server yet (the pool is saturated): a CancelRequest ends it with
    57014 "canceling statement due to user request", and the client keeps working afterwards."""
    t = pgcat(pool_size=1, general={"connect_timeout": 30000})
    holder = t.connect(autocommit=False)
    holder.execute("select 1")  # holds the only server connection
    waiter = t.connect()
    errors = {}

    def run():
        try:
            waiter.execute("select 'never'")
        except Exception as e:  # noqa: BLE001
            errors["e"] = e

    th = threading.Thread(target=run)
    th.start()
    time.sleep(0.5)
    started = time.monotonic()
    waiter.cancel()
    th.join(10)
    assert not th.is_alive(), "the waiting query was not cancelled"
    assert time.monotonic() - started < 5
    assert isinstance(errors.get("e"), psycopg.errors.QueryCanceled), errors
    assert "canceling statement due to user request" in str(errors["e"])
    holder.commit()
    assert waiter.execute("select 'again'").fetchone() == ("again",)
    holder.close()
    waiter.close()


def test_cancel_request_with_unknown_key_is_harmless(pgcat):
    t = pgcat()
    with t.connect() as c:
        s = socket.create_connection((t.host, t.port), timeout=5)
        s.sendall(struct.pack("!IIii", 16, CANCEL_REQUEST_CODE, 12345, 67890))
        s.settimeout(5)
        try:
            assert s.recv(100) == b""  # closed without a reply
        except ConnectionResetError:
            pass
        s.close()
        assert c.execute("select 1").fetchone()[0] == 1


def test_flush_without_sync(pgcat):
    """Parse + Describe + Flush must produce ParseComplete, ParameterDescription, RowDescription before any Sync
    (asyncpg and postgres.js wait for them)."""
    t = pgcat()
    with RawConn(t.host, t.port, timeout=10) as c:
        c.startup("app", "app", "app")
        c.send(parse_msg("select $1::int + 1") + message(b"D", b"S\x00") + FLUSH)
        assert [c.read_message()[0] for _ in range(3)] == [b"1", b"t", b"T"]
        c.send(bind_msg(params=(b"41",)) + execute_msg() + FLUSH)
        types = []
        rows = []
        while len(types) < 3:
            typ, payload = c.read_message()
            types.append(typ)
            if typ == b"D":
                rows.append(payload[6:].decode())
        assert types == [b"2", b"D", b"C"]
        assert rows == ["42"]
        c.send(SYNC)
        assert read_types_until(c, b"Z") == [b"Z"]
        assert c.query("select 'after flush'") == [["after flush"]]


def test_portal_row_limit(pgcat):
    t = pgcat()
    with RawConn(t.host, t.port) as c:
        c.startup("app", "app", "app")
        c.send(parse_msg("select generate_series(1, 5)") + bind_msg() + execute_msg(max_rows=2)
               + execute_msg(max_rows=2) + execute_msg(max_rows=2) + SYNC)
        assert read_types_until(c, b"Z") == [b"1", b"2", b"D", b"D", b"s", b"D", b"D", b"s", b"D", b"C", b"Z"]


def test_pipelined_extended_queries_one_sync(pgcat):
    t = pgcat()
    with RawConn(t.host, t.port) as c:
        c.startup("app", "app", "app")
        batch = b""
        for i in range(50):
            batch += parse_msg("select $1::int * 10") + bind_msg(params=(str(i).encode(),)) + execute_msg()
        c.send(batch + SYNC)
        rows = []
        while True:
            typ, payload = c.read_message()
            if typ == b"D":
                rows.append(int(payload[6:].decode()))
            if typ == b"Z":
                break
        assert rows == [i * 10 for i in range(50)]


def test_pipelined_error_skips_to_sync(pgcat):
    """After an error, the server skips messages until Sync; the next Sync batch runs normally."""
    t = pgcat()
    with RawConn(t.host, t.port) as c:
        c.startup("app", "app", "app")
        c.send(parse_msg("select 1/0") + bind_msg() + execute_msg()
               + parse_msg("select 2") + bind_msg() + execute_msg() + SYNC
               + parse_msg("select 3") + bind_msg() + execute_msg() + SYNC)
        first = read_types_until(c, b"Z")
        # 1/0 is constant-folded when the unnamed statement is planned at Bind: the error replaces BindComplete
        assert first == [b"1", b"E", b"Z"]
        second = read_types_until(c, b"Z")
        assert second == [b"1", b"2", b"D", b"C", b"Z"]


def test_function_call(pgcat, primary):
    oid = primary.value("select 'int4pl'::regproc::oid")
    t = pgcat()
    with RawConn(t.host, t.port) as c:
        c.startup("app", "app", "app")
        args = struct.pack("!i", 4) + struct.pack("!i", 40) + struct.pack("!i", 4) + struct.pack("!i", 2)
        body = struct.pack("!I", oid) + struct.pack("!HH", 1, 1) + struct.pack("!H", 2) + args + struct.pack("!H", 1)
        c.send(message(b"F", body))
        typ, payload = c.read_message()
        assert typ == b"V", typ
        (ln,) = struct.unpack("!i", payload[:4])
        assert ln == 4 and struct.unpack("!i", payload[4:8])[0] == 42
        assert read_types_until(c, b"Z") == [b"Z"]
        assert c.query("select 'after fastpath'") == [["after fastpath"]]


def test_extended_protocol_copy_from_releases_the_connection(pgcat, primary):
    """COPY FROM started with Parse/Bind/Execute/Sync: Postgres ignores the Sync that arrives during copy-in and
    answers only the Sync sent after CopyDone (what libpq does). The server connection must then go back to the
    pool: with pool_size 1, another client gets it while the first stays connected."""
    table = primary.make_table("it_copy_extended")
    t = pgcat(pool_size=1, general={"connect_timeout": 3000})
    with RawConn(t.host, t.port) as c:
        c.startup("app", "app", "app")
        c.send(parse_msg(f"copy {table} from stdin") + bind_msg() + execute_msg() + message(b"S", b""))
        assert read_types_until(c, b"G")[-1] == b"G"
        rows = b"".join(message(b"d", f"{i}\tv{i}\n".encode()) for i in range(1000))
        c.send(rows + message(b"c", b"") + message(b"S", b""))
        types = read_types_until(c, b"Z")
        assert b"C" in types and b"E" not in types, types
        with t.connect() as other:  # the only server connection was released
            assert other.execute(f"select count(*) from {table}").fetchone() == (1000,)
        assert c.query("select 1") == [["1"]]
