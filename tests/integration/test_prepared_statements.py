"""Named prepared statements in transaction mode under contention: the pooler renames them per server connection,
re-prepares them where they are missing, answers Close/DEALLOCATE/DISCARD ALL per client, and every reply reaches
the client that asked (every query is tagged with values unique to its client)."""

import asyncio
import threading
import time

import asyncpg
import psycopg
import pytest

from pgwire import PgError, RawConn, message, parse_error_fields
from support import pgbench

pytestmark = pytest.mark.pooler_only


def cstr(s: str) -> bytes:
    return s.encode() + b"\x00"


def parse_msg(name: str, sql: str) -> bytes:
    return message(b"P", cstr(name) + cstr(sql) + b"\x00\x00")


def bind_msg(stmt: str, params: list[bytes] = ()) -> bytes:
    body = cstr("") + cstr(stmt) + b"\x00\x00" + len(params).to_bytes(2, "big")
    for p in params:
        body += len(p).to_bytes(4, "big") + p
    return message(b"B", body + b"\x00\x00")


EXECUTE = message(b"E", cstr("") + b"\x00\x00\x00\x00")
SYNC = message(b"S", b"")


def exchange(c: RawConn, data: bytes) -> list[tuple[bytes, bytes]]:
    """Sends `data` (ending with Sync) and returns every reply up to ReadyForQuery."""
    c.send(data)
    replies = []
    while True:
        t, p = c.read_message()
        replies.append((t, p))
        if t == b"Z":
            return replies


def errors(replies) -> list[PgError]:
    return [PgError(parse_error_fields(p)) for t, p in replies if t == b"E"]


def rows(replies) -> list[list[str]]:
    out = []
    for t, p in replies:
        if t == b"D":
            n = int.from_bytes(p[:2], "big")
            i, row = 2, []
            for _ in range(n):
                length = int.from_bytes(p[i:i + 4], "big", signed=True)
                i += 4
                row.append(None if length < 0 else p[i:i + length].decode())
                i += max(length, 0)
            out.append(row)
    return out


@pytest.mark.parametrize("script", ["-S", ""], ids=["select-only", "tpcb"])
def test_pgbench_prepared_under_contention(pgcat, pgbench_tables, script):
    t = pgcat(pool_size=2)
    args = ["-M", "prepared", "-c", "20", "-j", "2", "-t", "100"] + ([script] if script else [])
    result = pgbench(t, args, timeout=280)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "number of transactions actually processed: 2000/2000" in result.stdout, result.stdout


def test_asyncpg_prepared_statements_under_contention(pgcat, primary):
    table = primary.make_table("it_ps_asyncpg", "id int primary key, client int, v text")
    t = pgcat(pool_size=2)

    async def client(i: int) -> set[int]:
        conn = await t.aconnect(statement_cache_size=100)  # asyncpg's own named statements
        pids = set()
        try:
            stmt = await conn.prepare("select $1::int * 1000 + $2::int, pg_backend_pid()")
            for k in range(30):
                value, pid = await stmt.fetchrow(i, k)
                assert value == i * 1000 + k
                pids.add(pid)
                assert await conn.fetchval("select $1::text || ':' || $2::text", f"c{i}", str(k)) == f"c{i}:{k}"
            await conn.executemany(f"insert into {table} values ($1, $2, $3)",
                                   [(i * 100 + k, i, f"c{i}-{k}") for k in range(10)])
            async with conn.transaction():
                got = [r["v"] async for r in conn.cursor(f"select v from {table} where client = $1 order by id", i)]
            assert got == [f"c{i}-{k}" for k in range(10)]
        finally:
            await conn.close()
        return pids

    async def main():
        return await asyncio.wait_for(asyncio.gather(*[client(i) for i in range(20)]), 120)

    pid_sets = asyncio.run(main())
    # The same statement ran on both server connections of the pool: it was prepared where it was missing.
    assert len(set().union(*pid_sets)) == 2, pid_sets


def test_psycopg_prepared_and_pipeline_under_contention(pgcat):
    t = pgcat(pool_size=2)
    failures = []

    def worker(i: int):
        try:
            with t.connect(prepare_threshold=0) as conn:
                for k in range(20):
                    got = conn.execute("select %s::int * 1000 + %s::int", (i, k)).fetchone()[0]
                    assert got == i * 1000 + k
                with conn.pipeline():
                    curs = [conn.execute("select %s::text || '/' || %s::text", (f"c{i}", k)) for k in range(10)]
                assert [c.fetchone()[0] for c in curs] == [f"c{i}/{k}" for k in range(10)]
        except Exception as e:  # noqa: BLE001
            failures.append((i, repr(e)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not failures, failures


def test_unknown_statement_is_26000_and_the_connection_goes_on(pgcat):
    t = pgcat(pool_size=1)
    with RawConn(t.host, t.port) as c:
        c.startup("app", "app", "app")
        replies = exchange(c, bind_msg("nope") + EXECUTE + SYNC)
        errs = errors(replies)
        assert [e.sqlstate for e in errs] == ["26000"], replies
        assert errs[0].message == 'prepared statement "nope" does not exist'
        assert replies[-1][0] == b"Z"
        assert c.query("select 7") == [["7"]]


def test_failed_parse_shows_the_real_error_and_the_name_stays_free(pgcat):
    t = pgcat(pool_size=1)
    with RawConn(t.host, t.port) as c:
        c.startup("app", "app", "app")
        errs = errors(exchange(c, parse_msg("s1", "select * from no_such_table_x") + SYNC))
        assert errs and errs[0].sqlstate == "42P01", errs  # the real error, not "PGCAT_n does not exist"
        replies = exchange(c, parse_msg("s1", "select 41 + 1") + bind_msg("s1") + EXECUTE + SYNC)
        assert not errors(replies), replies
        assert rows(replies) == [["42"]]


def test_close_deallocate_and_discard_all(pgcat):
    t = pgcat(pool_size=1)
    with RawConn(t.host, t.port) as c:
        c.startup("app", "app", "app")
        assert rows(exchange(c, parse_msg("a", "select 1") + bind_msg("a") + EXECUTE + SYNC)) == [["1"]]
        # Close, then the same name may be prepared again with another query.
        close = message(b"C", b"S" + cstr("a"))
        replies = exchange(c, close + parse_msg("a", "select 2") + bind_msg("a") + EXECUTE + SYNC)
        assert [t for t, _ in replies] == [b"3", b"1", b"2", b"D", b"C", b"Z"], replies
        assert rows(replies) == [["2"]]
        # SQL DEALLOCATE of a protocol-level statement is answered and forgets it.
        assert c.query("deallocate a") == []
        assert [e.sqlstate for e in errors(exchange(c, bind_msg("a") + EXECUTE + SYNC))] == ["26000"]
        # DISCARD ALL forgets every statement of the client.
        exchange(c, parse_msg("b", "select 3") + SYNC)
        c.query("discard all")
        assert [e.sqlstate for e in errors(exchange(c, bind_msg("b") + EXECUTE + SYNC))] == ["26000"]
        # ... and the statement can be prepared again afterwards (the server's copy was discarded too).
        assert rows(exchange(c, parse_msg("b", "select 4") + bind_msg("b") + EXECUTE + SYNC)) == [["4"]]


def test_a_refused_discard_or_deallocate_all_keeps_the_statements(pgcat):
    """PostgreSQL refuses DISCARD ALL inside a transaction block (25001) and DEALLOCATE ALL in a failed transaction
    (25P02), and then keeps every prepared statement: so does the pooler (before, it forgot them at once and the
    next Bind got 26000)."""
    t = pgcat(pool_size=1)
    with RawConn(t.host, t.port) as c:
        c.startup("app", "app", "app")
        assert rows(exchange(c, parse_msg("kept", "select 5") + bind_msg("kept") + EXECUTE + SYNC)) == [["5"]]
        for failing, command, sqlstate in ((None, "discard all", "25001"), ("select 1/0", "deallocate all", "25P02")):
            c.query("begin")
            if failing:
                with pytest.raises(PgError):
                    c.query(failing)  # the transaction fails
            with pytest.raises(PgError) as refused:
                c.query(command)
            assert refused.value.sqlstate == sqlstate
            c.query("rollback")
            assert rows(exchange(c, bind_msg("kept") + EXECUTE + SYNC)) == [["5"]], command
        c.query("deallocate all")  # outside a transaction it succeeds and forgets
        assert [e.sqlstate for e in errors(exchange(c, bind_msg("kept") + EXECUTE + SYNC))] == ["26000"]


@pytest.mark.parametrize("how", ["extended deallocate all", "extended discard all", "comment first",
                                 "among statements", "in a DO block"])
def test_a_statement_drop_the_pooler_cannot_read_keeps_every_statement_usable(pgcat, how):
    """DEALLOCATE ALL or DISCARD ALL in a form the pooler does not read as such (through Parse/Bind/Execute, as
    pgjdbc and Npgsql send everything; behind a comment; among other statements; run by a DO block) still drops
    the server's statements. The pooler sees it in the server's reply (or, for the DO block, not at all) and must
    not go on believing the server holds what it cached: another client's statement on the same server connection,
    and the same text prepared by a new client, keep working, and the dropping client may prepare its names again.
    (Before stop 25 every later use of a cached statement on that connection failed with 26000, for good.)"""
    t = pgcat(pool_size=1)
    with RawConn(t.host, t.port) as a, RawConn(t.host, t.port) as b:
        a.startup("app", "app", "app")
        b.startup("app", "app", "app")
        assert rows(exchange(a, parse_msg("s1", "select 11") + bind_msg("s1") + EXECUTE + SYNC)) == [["11"]]
        assert rows(exchange(b, parse_msg("mine", "select 12") + bind_msg("mine") + EXECUTE + SYNC)) == [["12"]]
        if how.startswith("extended"):
            command = how.removeprefix("extended ")
            replies = exchange(b, parse_msg("", command) + bind_msg("") + EXECUTE + SYNC)
            assert not errors(replies), errors(replies)
        elif how == "comment first":
            b.query("/* reset */ deallocate all")
        elif how == "among statements":
            b.query("select 1; deallocate all")
        else:
            b.query("do $$ begin execute 'deallocate all'; end $$")
        # the other client's statement still runs (re-prepared on the server where needed); a drop inside a DO
        # block is seen only when the server says a cached statement is missing: that one use fails
        if how == "in a DO block":
            assert [e.sqlstate for e in errors(exchange(a, bind_msg("s1") + EXECUTE + SYNC))] == ["26000"]
        for _ in range(2):
            assert rows(exchange(a, bind_msg("s1") + EXECUTE + SYNC)) == [["11"]], how
        # a new client preparing the same text
        with RawConn(t.host, t.port) as c:
            c.startup("app", "app", "app")
            assert rows(exchange(c, parse_msg("x", "select 11") + bind_msg("x") + EXECUTE + SYNC)) == [["11"]], how
        if how != "in a DO block":  # (the pooler cannot know: the client's own names stay, as without a pooler
            # they would be gone; the server's copies are prepared again)
            assert rows(exchange(b, parse_msg("mine", "select 13") + bind_msg("mine") + EXECUTE + SYNC)) == [["13"]]


@pytest.mark.parametrize("failing", ["bind unknown", "describe unknown", "duplicate parse"])
def test_an_error_the_pooler_answers_itself_fails_the_transaction_as_postgres_would(pgcat, primary, failing):
    """26000 (Bind or Describe of an unknown statement) and 42P05 (a second Parse of a name) are answered by the
    pooler, but must have the effect of an error on the server: inside a transaction block the transaction is
    failed (ReadyForQuery 'E', 25P02 for what follows, COMMIT rolls back), and an implicit transaction's earlier
    statements are rolled back. (Before stop 25 the server never heard of the error: ReadyForQuery said 'T' and
    COMMIT committed the earlier insert.)"""
    table = primary.make_table(f"pooler_error_{failing.replace(' ', '_')}", "id int")
    t = pgcat(pool_size=1)
    bad = {"bind unknown": bind_msg("nope") + EXECUTE,
           "describe unknown": message(b"D", b"S" + cstr("nope")),
           "duplicate parse": parse_msg("dup", "select 1")}[failing]
    with RawConn(t.host, t.port) as c:
        c.startup("app", "app", "app")
        exchange(c, parse_msg("dup", "select 1") + SYNC)
        # inside a transaction block
        c.query("begin")
        c.query(f"insert into {table} values (1)")
        replies = exchange(c, bad + SYNC)
        assert [e.sqlstate for e in errors(replies)] == ["42P05" if failing == "duplicate parse" else "26000"]
        assert replies[-1] == (b"Z", b"E"), replies[-1]
        with pytest.raises(PgError) as aborted:
            c.query("select 42")
        assert aborted.value.sqlstate == "25P02"
        c.query("commit")  # (a ROLLBACK, as the transaction failed)
        # an implicit transaction: the insert before the failing message in the same unit is rolled back
        insert = parse_msg("", f"insert into {table} values (2)") + bind_msg("") + EXECUTE
        replies = exchange(c, insert + bad + SYNC)
        assert len(errors(replies)) == 1 and replies[-1] == (b"Z", b"I"), replies
    assert primary.value(f"select count(*) from {table}") == 0


def test_duplicate_statement_name_is_42p05(pgcat):
    t = pgcat(pool_size=1)
    with RawConn(t.host, t.port) as c:
        c.startup("app", "app", "app")
        exchange(c, parse_msg("dup", "select 1") + SYNC)
        replies = exchange(c, parse_msg("dup", "select 2") + bind_msg("dup") + EXECUTE + SYNC)
        assert [e.sqlstate for e in errors(replies)] == ["42P05"], replies
        assert [t for t, _ in replies] == [b"E", b"Z"], replies


def test_without_the_statement_cache_a_named_statement_does_not_reach_the_next_client(pgcat):
    """`prepared_statements_cache_size: 0`: named statements go to the server under the client's own names, so the
    connection is cleaned (DEALLOCATE ALL) before another client gets it, as PgCat does; the next client can prepare
    the same name (before: 42P05 "already exists")."""
    t = pgcat(pool_size=1, users=["app"], pool={"prepared_statements_cache_size": 0})
    with RawConn(t.host, t.port) as a:
        a.startup("app", "app", "app")
        assert rows(exchange(a, parse_msg("s1", "select 1") + bind_msg("s1") + EXECUTE + SYNC)) == [["1"]]
    for value in ("2", "3"):
        with RawConn(t.host, t.port) as b:
            b.startup("app", "app", "app")
            replies = exchange(b, parse_msg("s1", f"select {value}") + bind_msg("s1") + EXECUTE + SYNC)
            assert not errors(replies), replies
            assert rows(replies) == [[value]]
            # (cleaned when the transaction ended, as in PgCat: such statements last one transaction)
            assert b.query("select count(*) from pg_prepared_statements") == [["0"]]


def test_statement_shared_between_clients_on_one_server(pgcat):
    """Two clients prepare the same query under different names: the server prepares it once (pool_size 1)."""
    t = pgcat(pool_size=1)
    with RawConn(t.host, t.port) as a, RawConn(t.host, t.port) as b:
        a.startup("app", "app", "app")
        b.startup("app", "app", "app")
        q = "select count(*) from pg_prepared_statements where name like 'PGCAT_%'"
        exchange(a, parse_msg("mine", "select 'shared'") + SYNC)
        exchange(b, parse_msg("theirs", "select 'shared'") + SYNC)
        assert rows(exchange(b, bind_msg("theirs") + EXECUTE + SYNC)) == [["shared"]]
        assert a.query(q) == [["1"]]


def test_stale_cached_plan_is_recovered_invisibly(pgcat, primary):
    """`cached plan must not change result type` (0A000) after ALTER TABLE: a direct connection gets the error;
    through the pooler the statement is re-prepared and the batch retried, and the client sees the new shape."""
    table = primary.make_table("plan_change", "id int primary key")
    primary.sql(f"insert into {table} values (1)")
    query = f"select * from {table} where id = %s"
    with primary.connect() as direct:
        direct.prepare_threshold = 0
        assert direct.execute(query, (1,)).fetchall() == [(1,)]
        t = pgcat(pool_size=1)
        with t.connect(prepare_threshold=0) as a, t.connect(prepare_threshold=0) as b:
            assert a.execute(query, (1,)).fetchall() == [(1,)]
            primary.sql(f"alter table {table} add column note text default 'added'")
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="cached plan must not change result type"):
                direct.execute(query, (1,))
            # a's statement went stale on the pooler's server connection: retried without an error
            assert a.execute(query, (1,)).fetchall() == [(1, "added")]
            assert b.execute(query, (1,)).fetchall() == [(1, "added")]
            primary.sql(f"alter table {table} add column third int default 3")
            assert b.execute(query, (1,)).fetchall() == [(1, "added", 3)]
            assert a.execute(query, (1,)).fetchall() == [(1, "added", 3)]


def test_stale_cached_plan_in_a_transaction_reaches_the_client_then_recovers(pgcat, primary):
    table = primary.make_table("plan_change_tx", "id int primary key")
    primary.sql(f"insert into {table} values (1)")
    query = f"select * from {table} where id = %s"
    t = pgcat(pool_size=1)
    with t.connect(prepare_threshold=0, autocommit=False) as a:
        assert a.execute(query, (1,)).fetchall() == [(1,)]
        a.commit()
        primary.sql(f"alter table {table} add column note text default 'added'")
        a.execute("select 1")  # a transaction is open: a retry could not undo what ran before
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            a.execute(query, (1,))
        a.rollback()
        assert a.execute(query, (1,)).fetchall() == [(1, "added")]
        a.commit()


def logged_in(t, count: int) -> list[RawConn]:
    """`count` raw protocol clients logged in as app to database app."""
    clients = [RawConn(t.host, t.port) for _ in range(count)]
    for c in clients:
        c.startup("app", "app", "app")
    return clients


def reconnect_servers(t):
    """The admin console's RECONNECT: the pool's server connections are replaced, so statements are prepared anew."""
    with psycopg.connect(host=t.host, port=t.port, user="pgcat_admin", password="pgcat_admin", dbname="pgcat",
                         autocommit=True, prepare_threshold=None, connect_timeout=10) as admin:
        assert admin.execute("RECONNECT").statusmessage == "RECONNECT"


def swap_column_names(primary, table):
    """Same types, names swapped: rows decoded by the old description would read each value under the other name."""
    primary.sql(f"alter table {table} rename column a to c")
    primary.sql(f"alter table {table} rename column b to a")
    primary.sql(f"alter table {table} rename column c to b")


def describe_stmt(name: str) -> bytes:
    return message(b"D", b"S" + cstr(name))


def backend_pid(c: RawConn) -> str:
    return rows(exchange(c, message(b"Q", cstr("select pg_backend_pid()"))))[0][0]


def column_names(replies) -> list[str]:
    """The column names of the RowDescription among `replies`."""
    (payload,) = [p for t, p in replies if t == b"T"]
    names, i = [], 2
    for _ in range(int.from_bytes(payload[:2], "big")):
        end = payload.index(b"\x00", i)
        names.append(payload[i:end].decode())
        i = end + 1 + 18
    return names


def test_statement_prepared_again_after_a_schema_change_keeps_its_described_shape(pgcat, primary):
    """A statement the client described is prepared again on a new server connection after its result changed
    shape: PostgreSQL's own error (0A000, routine RevalidateCachedQuery) instead of rows of the new shape, which the
    client would decode by the old one; a statement prepared and described after the change runs."""
    table = primary.make_table("shape_change", "a text, b text")
    primary.sql(f"insert into {table} values ('A', 'B')")
    t = pgcat(pool_size=1)
    c = RawConn(t.host, t.port)
    c.startup("app", "app", "app")
    replies = exchange(c, parse_msg("s1", f"select * from {table}") + describe_stmt("s1") + SYNC)
    assert column_names(replies) == ["a", "b"]
    assert rows(exchange(c, bind_msg("s1") + EXECUTE + SYNC)) == [["A", "B"]]
    pid = backend_pid(c)
    reconnect_servers(t)  # same schema: prepared again, described, and run
    replies = exchange(c, bind_msg("s1") + EXECUTE + SYNC)
    assert [m for m, _ in replies] == [b"2", b"D", b"C", b"Z"] and rows(replies) == [["A", "B"]]
    assert backend_pid(c) != pid

    swap_column_names(primary, table)
    pid = backend_pid(c)
    reconnect_servers(t)
    replies = exchange(c, bind_msg("s1") + EXECUTE + SYNC)
    assert backend_pid(c) != pid, "a new server connection, whose copy the pooler prepared: its error, not the server's"
    (error,) = errors(replies)
    assert error.sqlstate == "0A000" and error.fields.get("R") == "RevalidateCachedQuery", error.fields
    assert "cached plan must not change result type" in error.message
    assert not rows(replies) and replies[-1] == (b"Z", b"I")
    # As in PostgreSQL the statement stays unusable, inside a transaction block too, which the error fails.
    replies = exchange(c, message(b"Q", cstr("begin")))
    replies = exchange(c, bind_msg("s1") + EXECUTE + SYNC)
    assert [e.sqlstate for e in errors(replies)] == ["0A000"] and replies[-1] == (b"Z", b"E")
    exchange(c, message(b"Q", cstr("rollback")))
    # The same text prepared and described again runs, with the new names.
    replies = exchange(c, parse_msg("s2", f"select * from {table}") + describe_stmt("s2") + SYNC)
    assert column_names(replies) == ["b", "a"]
    assert rows(exchange(c, bind_msg("s2") + EXECUTE + SYNC)) == [["A", "B"]]
    c.close()


def test_asyncpg_after_a_schema_change_reads_the_new_shape(pgcat, primary):
    """asyncpg decodes rows by the description it got when it prepared: through the pooler, a statement prepared
    again on another server connection after a schema change must fail as it does on PostgreSQL, so that asyncpg
    prepares it again (outside a transaction, invisibly) instead of reading values under the wrong names."""
    table = primary.make_table("shape_change_asyncpg", "a text, b text")
    primary.sql(f"insert into {table} values ('A', 'B')")
    t = pgcat(pool_size=1)
    query = f"select * from {table}"

    async def main():
        conn = await t.aconnect(statement_cache_size=100)
        try:
            assert dict(await conn.fetchrow(query)) == {"a": "A", "b": "B"}
            swap_column_names(primary, table)
            reconnect_servers(t)
            assert dict(await conn.fetchrow(query)) == {"b": "A", "a": "B"}
            swap_column_names(primary, table)
            reconnect_servers(t)
            async with conn.transaction():  # in a transaction asyncpg cannot retry: the error reaches the caller
                with pytest.raises(asyncpg.exceptions.InvalidCachedStatementError):
                    await conn.fetchrow(query)
            assert dict(await conn.fetchrow(query)) == {"a": "A", "b": "B"}
        finally:
            await conn.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_stale_plan_reported_by_one_server_connection_refreshes_the_others(pgcat, primary):
    """After a schema change one server connection reports a statement's plan stale (0A000): the copies on the
    others were planned against the same old schema, so a client's fresh Parse of that text there is prepared
    anew instead of being answered from the old copy, whose Describe would fail (asyncpg, preparing again after
    its InvalidCachedStatementError, got that error a second time from its prepare)."""
    table = primary.make_table("stale_elsewhere", "a text")
    primary.sql(f"insert into {table} values ('A')")
    t = pgcat(pool_size=2)
    query = f"select * from {table}"
    c1, c2 = logged_in(t, 2)
    begin, commit = message(b"Q", cstr("begin")), message(b"Q", cstr("commit"))
    # Both server connections get a copy of the statement: c1's transaction holds one while c2 uses the other.
    exchange(c1, begin)
    assert rows(exchange(c1, parse_msg("s", query) + bind_msg("s") + EXECUTE + SYNC)) == [["A"]]
    exchange(c2, begin)
    assert rows(exchange(c2, parse_msg("s", query) + bind_msg("s") + EXECUTE + SYNC)) == [["A"]]
    pid1 = rows(exchange(c1, message(b"Q", cstr("select pg_backend_pid()"))))[0][0]
    pid2 = rows(exchange(c2, message(b"Q", cstr("select pg_backend_pid()"))))[0][0]
    assert pid1 != pid2
    exchange(c1, commit)
    exchange(c2, commit)

    primary.sql(f"alter table {table} add column b text default 'B'")
    exchange(c1, begin)  # c1 holds one connection; c2's Bind runs on the other, which reports the stale plan
    (error,) = errors(exchange(c2, bind_msg("s") + EXECUTE + SYNC))
    assert error.sqlstate == "0A000", error.fields
    # c1 prepares the same text under a new name on its connection: a fresh statement, as on PostgreSQL.
    replies = exchange(c1, parse_msg("fresh", query) + describe_stmt("fresh") + SYNC)
    assert not errors(replies), errors(replies)[0].fields
    assert column_names(replies) == ["a", "b"]
    assert rows(exchange(c1, bind_msg("fresh") + EXECUTE + SYNC)) == [["A", "B"]]
    exchange(c1, commit)
    c1.close()
    c2.close()


def test_a_refused_statement_reports_the_old_copies_on_other_server_connections(pgcat, primary):
    """The pooler's own 0A000 (a fresh copy with another shape than the client described) is a stale report too:
    a fresh Parse of that text on another server connection, whose copy predates the change, is prepared anew
    (asyncpg's retry after the error must not meet the old copy's 0A000 in its prepare)."""
    table = primary.make_table("refused_reports", "a text, b text")
    primary.sql(f"insert into {table} values ('A', 'B')")
    t = pgcat(pool_size=2)
    query = f"select * from {table}"
    a, holder, other = logged_in(t, 3)
    begin, commit = message(b"Q", cstr("begin")), message(b"Q", cstr("commit"))
    assert column_names(exchange(a, parse_msg("s", query) + describe_stmt("s") + SYNC)) == ["a", "b"]
    old = backend_pid(a)  # the only server connection so far holds the described copy
    swap_column_names(primary, table)
    exchange(holder, begin)
    assert backend_pid(holder) == old  # holder's transaction keeps the old copy's connection busy
    (error,) = errors(exchange(a, bind_msg("s") + EXECUTE + SYNC))  # on a second, new connection
    assert error.sqlstate == "0A000" and error.fields.get("R") == "RevalidateCachedQuery", error.fields
    exchange(other, begin)  # now the new connection is busy, and the old one is free again
    assert backend_pid(other) != old
    exchange(holder, commit)
    replies = exchange(a, parse_msg("again", query) + describe_stmt("again") + SYNC)
    assert not errors(replies), errors(replies)[0].fields
    assert column_names(replies) == ["b", "a"]
    assert rows(exchange(a, bind_msg("again") + EXECUTE + SYNC)) == [["A", "B"]]
    assert backend_pid(a) == old
    exchange(other, commit)
    for c in (a, holder, other):
        c.close()


def test_asyncpg_explicit_and_cached_statements_of_one_text_keep_their_own_shapes(pgcat, primary):
    """asyncpg's statement cache and an explicit prepare() of the same text are two client names of one server
    statement; describing one after a schema change must not vouch for the other, which asyncpg decodes by its own
    older description: it fails (InvalidCachedStatementError, re-prepared and retried by fetch) as on PostgreSQL,
    never returning values under each other's column names."""
    table = primary.make_table("alias_shapes", "a text, b text")
    primary.sql(f"insert into {table} values ('a', 'b')")
    t = pgcat(pool_size=1)
    query = f"select * from {table}"

    async def run(connect):
        conn = await connect()
        seen = []
        try:
            seen.append(dict(await conn.fetchrow(query)))  # cached statement, described (a, b)
            swap_column_names(primary, table)
            primary.sql(f"update {table} set a = 'a', b = 'b'")
            reconnect_servers(t)
            for _ in range(3):
                try:
                    explicit = await conn.prepare(query)  # a second name of the same text, described (b, a)
                    seen.append(dict(await explicit.fetchrow()))
                    break
                except asyncpg.exceptions.InvalidCachedStatementError:
                    seen.append("prepare failed")
            seen.append(dict(await conn.fetchrow(query)))  # the cached statement again
        finally:
            await conn.close()
        return seen

    async def main():
        return await run(lambda: t.aconnect(statement_cache_size=100))

    seen = asyncio.run(asyncio.wait_for(main(), 60))
    assert seen[0] == {"a": "a", "b": "b"}
    assert [s for s in seen[1:] if s != "prepare failed"] == [{"b": "b", "a": "a"}] * 2, seen


def test_query_timeout_counts_the_wait_of_a_held_bind(pgcat, primary):
    """query_timeout ends the session of a client whose Bind is held while the pooler prepares and describes its
    statement afresh, when that waits on a lock (a migration's open transaction): not a wait without end."""
    table = primary.make_table("held_timeout", "a text")
    t = pgcat(pool_size=1, general={"query_timeout": 1000})
    c = RawConn(t.host, t.port, timeout=15)
    c.startup("app", "app", "app")
    assert column_names(exchange(c, parse_msg("s", f"select * from {table}") + describe_stmt("s") + SYNC)) == ["a"]
    reconnect_servers(t)
    with primary.connect() as migration:
        migration.autocommit = False
        migration.execute(f"lock table {table} in access exclusive mode")
        started = time.monotonic()
        c.send(bind_msg("s") + EXECUTE + SYNC)
        error = c.read_error()
        elapsed = time.monotonic() - started
        migration.rollback()
    assert error.sqlstate == "57014" and "query_timeout" in error.message, error.fields
    assert elapsed < 6, f"query_timeout 1000 ms fired after {elapsed:.1f}s"
    c.close()


def test_a_fresh_prepare_and_describe_meets_a_copy_planned_now(pgcat, primary):
    """A client's Parse of a text the server connection already holds is answered by the pooler; when its first
    use is a Describe (asyncpg prepares so), the copy is prepared afresh for it. A copy planned before a schema
    change would fail that Describe with 0A000, which PostgreSQL never does to a statement just prepared, and
    which asyncpg does not retry in its prepare."""
    table = primary.make_table("fresh_describe", "a text")
    primary.sql(f"insert into {table} values ('A')")
    t = pgcat(pool_size=1)
    query = f"select * from {table}"
    first, second = logged_in(t, 2)
    assert column_names(exchange(first, parse_msg("s", query) + describe_stmt("s") + SYNC)) == ["a"]
    assert rows(exchange(first, bind_msg("s") + EXECUTE + SYNC)) == [["A"]]
    primary.sql(f"alter table {table} add column b text default 'B'")  # no client has used the copy since
    replies = exchange(second, parse_msg("s", query) + describe_stmt("s") + SYNC)
    assert not errors(replies), errors(replies)[0].fields
    assert [m for m, _ in replies] == [b"1", b"t", b"T", b"Z"] and column_names(replies) == ["a", "b"]
    assert rows(exchange(second, bind_msg("s") + EXECUTE + SYNC)) == [["A", "B"]]
    # The first client's statement is older than the change: refused, as on PostgreSQL.
    (error,) = errors(exchange(first, bind_msg("s") + EXECUTE + SYNC))
    assert error.sqlstate == "0A000", error.fields
    first.close()
    second.close()


def test_asyncpg_connections_opened_after_a_table_is_recreated_prepare_cleanly(pgcat, primary):
    """A table dropped and created again with other columns: asyncpg connections that prepare its query for the
    first time get no error (their prepare describes a copy planned now), as on PostgreSQL."""
    table = primary.make_table("recreated", "a text")
    primary.sql(f"insert into {table} values ('A')")
    t = pgcat(pool_size=2)
    query = f"select * from {table}"

    async def main():
        old = [await t.aconnect(statement_cache_size=100) for _ in range(2)]
        try:
            await asyncio.gather(*[c.fetchrow(query) for c in old])  # both server connections hold a copy
            primary.sql(f"drop table {table}")
            primary.sql(f"create table {table} (x int, a text)")
            primary.sql(f"grant all on {table} to public")
            primary.sql(f"insert into {table} values (1, 'A')")
            fresh = [await t.aconnect(statement_cache_size=100) for _ in range(4)]
            try:
                got = await asyncio.gather(*[c.fetchrow(query) for c in fresh])
            finally:
                for c in fresh:
                    await c.close()
            assert [dict(r) for r in got] == [{"x": 1, "a": "A"}] * 4
        finally:
            for c in old:
                await c.close()

    asyncio.run(asyncio.wait_for(main(), 60))
