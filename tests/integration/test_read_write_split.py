"""Read/write splitting with the PostgreSQL parser (query_parser_enabled + query_parser_read_write_splitting) on a
real primary and two streaming replicas: where each statement ran is read back with pg_is_in_recovery() and
inet_server_port(). Also PgCat's SET SERVER ROLE / SET PRIMARY READS and their SHOW commands."""

import psycopg
import pytest

from pgwire import RawConn, query_message
from support import HOST, wait_on_replicas

pytestmark = pytest.mark.pooler_only


def servers(cluster):
    return [[HOST, cluster.primary, "primary"], [HOST, cluster.replica1, "replica"], [HOST, cluster.replica2, "replica"]]


@pytest.fixture
def split(pgcat, cluster):
    def start(**pool):
        settings = {"query_parser_enabled": True, "query_parser_read_write_splitting": True,
                    "primary_reads_enabled": False}
        settings.update(pool)
        return pgcat(pool_size=3, users=["app"], servers=servers(cluster), pool=settings)
    return start


def where(conn, sql="select pg_is_in_recovery(), inet_server_port()", params=None) -> tuple[bool, int]:
    return conn.execute(sql, params).fetchone()


def test_reads_go_to_replicas_and_writes_to_the_primary(split, cluster, primary):
    table = primary.make_table("rw_split_t")
    primary.sql("drop sequence if exists rw_split_seq; create sequence rw_split_seq; grant all on rw_split_seq to public")
    primary.sql(f"insert into {table} values (0, 'seed')")
    primary.wait_until(f"select count(*) from {table}", expect=1)
    t = split()
    with t.connect() as c:
        ports = set()
        for _ in range(30):
            in_recovery, port = where(c)
            assert in_recovery is True
            ports.add(port)
        assert ports == {cluster.replica1, cluster.replica2}, "reads spread over both replicas"
        # writes and everything that must run on the primary
        c.execute(f"insert into {table} values (1, 'w')")
        assert where(c, f"select pg_is_in_recovery(), inet_server_port() from {table} where id = 0 for update") == (False, cluster.primary)
        assert where(c, "select pg_is_in_recovery(), nextval('rw_split_seq')")[0] is False
        assert where(c, f"with moved as (update {table} set v = 'u' where id = 1 returning id) "
                        "select pg_is_in_recovery(), inet_server_port() from moved") == (False, cluster.primary)
        assert where(c, "select pg_is_in_recovery(), pg_try_advisory_xact_lock(7)")[0] is False
        # extended protocol with parameters, and named prepared statements
        assert where(c, "select pg_is_in_recovery(), %s::int", (5,))[0] is True
    with t.connect(prepare_threshold=0) as p:
        for _ in range(3):
            assert where(p, "select pg_is_in_recovery(), %s::int", (1,))[0] is True
            p.execute(f"update {table} set v = %s where id = 0", ("p",))
    assert primary.value(f"select v from {table} where id = 0") == "p"


def test_transactions_follow_their_begin(split, cluster):
    t = split()
    with t.connect(autocommit=False) as c:  # psycopg sends a plain BEGIN first
        assert where(c)[0] is False
        assert where(c)[1] == cluster.primary, "the whole transaction stays on the primary"
        c.commit()
    with t.connect() as c:
        c.execute("begin read only")
        in_recovery, port = where(c)
        assert in_recovery is True
        assert where(c) == (True, port), "a read-only transaction stays on its replica"
        c.execute("commit")
        c.execute("start transaction isolation level repeatable read")
        assert where(c)[0] is False
        c.execute("rollback")
        # a hot standby refuses serializable transactions (0A000): READ ONLY or not, they need the primary
        c.execute("begin isolation level serializable read only deferrable")
        assert where(c) == (False, cluster.primary)
        c.execute("commit")


def test_unparseable_text_goes_to_the_primary_and_shows_the_server_error(split):
    t = split()
    with t.connect() as c:
        with pytest.raises(psycopg.errors.SyntaxError):
            c.execute("selec 1")
        assert where(c)[0] is True, "the session goes on"


def test_primary_reads_enabled_spreads_reads_over_all_servers(split, cluster):
    t = split(primary_reads_enabled=True)
    with t.connect() as c:
        ports = {where(c)[1] for _ in range(60)}
    assert ports == {cluster.primary, cluster.replica1, cluster.replica2}


def test_set_server_role_and_primary_reads(split, cluster):
    t = split()
    with t.connect() as c:
        assert c.execute("SHOW SERVER ROLE").fetchone() == ("auto",)
        assert c.execute("SHOW PRIMARY READS").fetchone() == ("off",)
        assert c.execute("SET SERVER ROLE TO 'primary'").statusmessage == "SET SERVER ROLE"
        assert c.execute("show server role").fetchone() == ("primary",)
        assert {where(c) for _ in range(5)} == {(False, cluster.primary)}
        c.execute("set server role to 'replica';")
        assert {where(c)[0] for _ in range(5)} == {True}
        c.execute("SET SERVER ROLE TO 'auto'")
        assert where(c)[0] is True
        c.execute("SET PRIMARY READS TO on")
        assert c.execute("SHOW PRIMARY READS").fetchone() == ("on",)
        assert cluster.primary in {where(c)[1] for _ in range(60)}
        c.execute("SET PRIMARY READS TO default")
        assert c.execute("SHOW PRIMARY READS").fetchone() == ("off",)
        c.execute("SET SERVER ROLE TO 'default'")
        assert c.execute("SHOW SERVER ROLE").fetchone() == ("auto",)
        # Not PgCat's syntax (no quotes): passed to Postgres, which refuses it.
        with pytest.raises(psycopg.errors.SyntaxError):
            c.execute("SET SERVER ROLE TO primary")


def test_parser_off_uses_the_default_role(pgcat, cluster):
    t = pgcat(pool_size=2, users=["app"], servers=servers(cluster),
              pool={"query_parser_enabled": False, "default_role": "primary"})
    with t.connect() as c:
        assert {where(c)[1] for _ in range(10)} == {cluster.primary}
        assert c.execute("SHOW SERVER ROLE").fetchone() == ("primary",)


def test_least_outstanding_avoids_the_busy_replica(split, cluster):
    t = split(load_balancing_mode="loc")
    with t.connect() as holder:
        holder.execute("begin read only")
        busy_port = where(holder)[1]
        with t.connect() as c:
            ports = {where(c)[1] for _ in range(20)}
        assert ports == {cluster.replica1, cluster.replica2} - {busy_port}
        holder.execute("commit")


def test_weights_steer_reads(pgcat, cluster):
    weighted = [[HOST, cluster.primary, "primary"],
                {"host": HOST, "port": cluster.replica1, "role": "replica", "weight": 9},
                {"host": HOST, "port": cluster.replica2, "role": "replica", "weight": 1}]
    t = pgcat(pool_size=2, users=["app"], servers=weighted,
              pool={"query_parser_enabled": True, "query_parser_read_write_splitting": True,
                    "primary_reads_enabled": False})
    with t.connect() as c:
        ports = [where(c)[1] for _ in range(100)]
    assert ports.count(cluster.replica1) > 70, ports.count(cluster.replica1)


def test_pipelined_reads_and_writes_each_go_where_they_must(split, cluster, primary):
    """A read and a write in one network write (pipelining): the write must not follow the read to a replica."""
    import struct

    from pgwire import RawConn, message, query_message

    table = primary.make_table("rw_split_pipelined")
    t = split()
    sync = message(b"S", b"")

    def extended(sql: str) -> bytes:
        parse = message(b"P", b"\0" + sql.encode() + b"\0" + struct.pack("!H", 0))
        bind = message(b"B", b"\0\0" + struct.pack("!HHH", 0, 0, 0))
        return parse + bind + message(b"E", b"\0" + struct.pack("!i", 0)) + sync

    c = RawConn(t.host, t.port)
    c.startup("app", "app", "app")
    for i in range(20):
        # simple protocol: read, write, read
        c.send(query_message("select pg_is_in_recovery()") + query_message(f"insert into {table} values ({2 * i}, 's')")
               + query_message("select pg_is_in_recovery()"))
        assert c.read_until_ready() == [["t"]]
        assert c.read_until_ready() == []
        assert len(c.read_until_ready()) == 1  # a read after the write may stay on the primary
        # extended protocol: read then write, two Syncs in one write
        c.send(extended("select pg_is_in_recovery()") + extended(f"insert into {table} values ({2 * i + 1}, 'e')"))
        assert c.read_until_ready() == [["t"]]
        assert c.read_until_ready() == []
    assert primary.value(f"select count(*) from {table}") == 40
    c.terminate()

    # psycopg's pipeline mode: reads, then writes in the same implicit transaction (one Sync at the end), which
    # therefore runs on the primary as a whole; then reads alone go to the replicas again.
    with t.connect() as conn:
        with conn.pipeline():
            reads = [conn.execute("select pg_is_in_recovery()") for _ in range(5)]
            for i in range(100, 110):
                conn.execute(f"insert into {table} values (%s, 'p')", (i,))
        assert all(cur.fetchone() == (False,) for cur in reads)
        with conn.pipeline():
            reads = [conn.execute("select pg_is_in_recovery()") for _ in range(5)]
        assert all(cur.fetchone() == (True,) for cur in reads)
    assert primary.value(f"select count(*) from {table}") == 50


def test_held_pipelines_go_on_inside_transactions_and_after_commit(split, cluster, primary):
    """What the relay holds behind a possible transaction end continues when the transaction goes on (no hang),
    and a write pipelined behind the COMMIT of a read-only transaction reaches the primary."""
    from pgwire import RawConn, query_message

    table = primary.make_table("rw_split_held")
    t = split()
    c = RawConn(t.host, t.port, timeout=10)
    c.startup("app", "app", "app")
    c.send(query_message("begin read only") + query_message("select pg_is_in_recovery()")
           + query_message("select 2") + query_message("commit")
           + query_message(f"insert into {table} values (1, 'after commit')"))
    assert c.read_until_ready() == []
    assert c.read_until_ready() == [["t"]]
    assert c.read_until_ready() == [["2"]]
    assert c.read_until_ready() == []
    assert c.read_until_ready() == []
    assert primary.value(f"select v from {table} where id = 1") == "after commit"
    c.terminate()


def test_a_lone_function_call_is_answered_with_splitting_on(split):
    """A FunctionCall message (libpq's PQfn, large objects in autocommit) ends its unit: it must not wait for a Sync."""
    import struct

    from pgwire import RawConn, message

    t = split()
    c = RawConn(t.host, t.port, timeout=10)
    c.startup("app", "app", "app")
    # pg_backend_pid() is OID 2026: no arguments, text result
    c.send(message(b"F", struct.pack("!iHHH", 2026, 0, 0, 0)))
    kinds = []
    while True:
        kind, _ = c.read_message()
        kinds.append(kind)
        if kind == b"Z":
            break
    assert kinds == [b"V", b"Z"], kinds
    c.terminate()


def test_sql_execute_follows_its_prepared_statement(split, cluster, primary):
    """SQL-level PREPARE/EXECUTE: the pooler replays the PREPARE wherever the EXECUTE lands, so the prepared
    statement's own intent routes it. A prepared read runs on a replica, a prepared write and a read whose EXECUTE
    argument calls nextval() on the primary; an unknown name goes to the primary, which answers 26000."""
    table = primary.make_table("rw_split_exec")
    primary.sql("drop sequence if exists rw_exec_seq; create sequence rw_exec_seq; grant all on rw_exec_seq to public")
    wait_on_replicas(cluster, f"select to_regclass('{table}') is not null", "the table")  # PREPARE r/w run there
    t = split()
    with t.connect() as c:
        c.execute("prepare r(int) as select pg_is_in_recovery(), inet_server_port(), $1")
        c.execute(f"prepare w(int) as insert into {table} values ($1, 'x') returning pg_is_in_recovery()")
        ports = set()
        for i in range(20):
            in_recovery, port, value = c.execute(f"execute r({i})").fetchone()
            assert in_recovery is True and value == i
            ports.add(port)
        assert ports <= {cluster.replica1, cluster.replica2}
        for i in range(3):
            assert c.execute(f"execute w({i})").fetchone()[0] is False
        assert c.execute("execute r(nextval('rw_exec_seq')::int)").fetchone()[0] is False
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            c.execute("execute nosuch(1)")
        c.execute("deallocate r")
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            c.execute("execute r(1)")
    assert primary.value(f"select count(*) from {table}") == 3


def test_a_write_pipelined_after_a_reset_still_goes_to_the_primary(split, cluster, primary):
    """A client with login settings: its RESET ALL is followed by the pooler's own query setting them again. A
    write pipelined behind them (one network write: a read, RESET ALL, an INSERT) is routed anew, not sent to the
    replica the read and the RESET ran on (it would fail there with 25006)."""
    table = primary.make_table("rw_split_reset")
    wait_on_replicas(cluster, f"select to_regclass('{table}') is not null", "the table")
    t = split()
    with RawConn(t.host, t.port) as c:
        c.startup("app", "app", "app", application_name="resetting-client")
        for i in range(5):
            c.send(query_message("select pg_is_in_recovery()") + query_message("RESET ALL")
                   + query_message(f"insert into {table} values ({i}, 'x') returning pg_is_in_recovery()"))
            results = [c.read_until_ready() for _ in range(3)]
            assert results[0] == [["t"]], results
            assert results[2] == [["f"]], results
    assert primary.value(f"select count(*) from {table}") == 5


def test_query_parser_max_length_sends_longer_texts_to_the_primary(split, cluster):
    """`query_parser_max_length`: a text longer than it is not parsed and goes to the primary (as unparseable text
    does); a shorter read still goes to a replica."""
    t = split(query_parser_max_length=80)
    with t.connect() as c:
        short = "select pg_is_in_recovery(), inet_server_port()"
        assert len(short) <= 80
        assert where(c, short)[0] is True
        long = short + " /* " + "x" * 80 + " */"
        assert where(c, long) == (False, cluster.primary)


def test_asyncpg_statements_described_before_they_are_bound_keep_their_role(split, cluster, primary):
    """asyncpg prepares with Parse, Describe, Flush and sends the Bind later; with the statement cache the pooler
    answers the Parse, so the Describe leases: a write must lease the primary there, and a read a replica."""
    import asyncio

    table = primary.make_table("rw_split_asyncpg")
    wait_on_replicas(cluster, f"select to_regclass('{table}') is not null", table)
    t = split()

    async def run():
        results = []
        for i in range(4):
            conn = await t.aconnect(statement_cache_size=100)  # asyncpg's default: named statements
            try:
                results.append(await conn.fetchrow(
                    f"insert into {table} values ($1, 'a') returning pg_is_in_recovery(), inet_server_port()", i))
                results.append(await conn.fetchrow("select pg_is_in_recovery(), $1::int", i))
            finally:
                await conn.close()
        return results

    results = asyncio.run(asyncio.wait_for(run(), 30))
    assert [tuple(r) for r in results[0::2]] == [(False, cluster.primary)] * 4
    assert [r[0] for r in results[1::2]] == [True] * 4
    assert primary.value(f"select count(*) from {table}") == 4

    async def after_prepare():
        """A read prepared (Parse, Describe, Flush: no Sync) and then a write as a simple Query, or a COPY: the
        write is routed anew, to the primary (before, it stayed on the replica: 25006)."""
        conn = await t.aconnect(statement_cache_size=100)
        try:
            statement = await conn.prepare("select pg_is_in_recovery(), $1::int")
            await conn.execute(f"insert into {table} values (100, 'after prepare')")
            await conn.copy_records_to_table(table, records=[(101, "copied"), (102, "copied")])  # (prepares first)
            return (await statement.fetchrow(7))[1]
        finally:
            await conn.close()

    assert asyncio.run(asyncio.wait_for(after_prepare(), 30)) == 7
    assert primary.value(f"select count(*) from {table} where id >= 100") == 3


def test_a_cursor_with_hold_pins_the_client_to_the_primary(split, cluster, primary):
    """A cursor WITH HOLD pins the session to its server connection: that must be the primary, or every later write
    of the client fails on the replica with 25006 (before, the DECLARE was a read)."""
    table = primary.make_table("rw_split_hold")
    wait_on_replicas(cluster, f"select to_regclass('{table}') is not null", table)
    t = split()
    with t.connect() as c:
        c.execute("declare held cursor with hold for select pg_is_in_recovery(), inet_server_port()")
        assert c.execute("fetch 1 from held").fetchone() == (False, cluster.primary)
        c.execute(f"insert into {table} values (1, 'after the cursor')")
        c.execute("close held")
        c.execute(f"insert into {table} values (2, 'after close')")
    with t.connect() as c:  # psycopg's own WITH HOLD cursor
        with c.cursor(name="psycopg_held", withhold=True) as cursor:
            cursor.execute("select pg_is_in_recovery() from generate_series(1, 3)")
            assert cursor.fetchall() == [(False,)] * 3
        c.execute(f"insert into {table} values (3, 'after psycopg cursor')")
    assert primary.value(f"select count(*) from {table}") == 3


def test_a_fast_path_function_call_goes_to_the_primary(split, cluster, primary):
    """A FunctionCall names its function by OID only (libpq's large-object calls use it): the primary (before, any
    server: lo_creat and nextval failed on a replica)."""
    import struct

    from pgwire import RawConn, message

    oid = primary.value("select 'pg_is_in_recovery'::regproc::oid")
    t = split()
    with RawConn(t.host, t.port) as c:
        c.startup("app", "app", "app")
        answers = []
        for _ in range(12):
            # no arguments, binary result: one byte, 0 on the primary
            c.send(message(b"F", struct.pack("!I", oid) + struct.pack("!H", 0) + struct.pack("!H", 0)
                           + struct.pack("!H", 1)))
            typ, payload = c.read_message()
            assert typ == b"V", (typ, payload)
            answers.append(payload[4:5])
            assert c.read_message()[0] == b"Z"
        assert set(answers) == {b"\x00"}, answers
