"""Extended query protocol with unnamed statements: psycopg 3 (prepare_threshold=None: never prepares) and asyncpg
(statement_cache_size=0: unnamed statements only). Named prepared statements through the pooler come with issue 3."""

import asyncio
import datetime as dt
import decimal
import json
import uuid

import asyncpg
import psycopg
import pytest
from psycopg.types.json import Jsonb

PARAMS = [
    ("int4", 42, "%s::int4"),
    ("int8", 9_000_000_000, "%s::int8"),
    ("text", "héllo wörld ✓", "%s::text"),
    ("numeric", decimal.Decimal("12345.6789"), "%s::numeric"),
    ("bool", True, "%s::bool"),
    ("null", None, "%s::text"),
    ("date", dt.date(2024, 2, 29), "%s::date"),
    ("timestamptz", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), "%s::timestamptz"),
    ("bytea", b"\x00\x01\xffbinary", "%s::bytea"),
    ("float8", 3.5, "%s::float8"),
    ("int[]", [1, 2, 3], "%s::int[]"),
    ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678"), "%s::uuid"),
]


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_psycopg_parameter_types(pgcat, binary):
    t = pgcat()
    with t.connect() as c:
        cur = c.cursor(binary=binary)
        for name, value, expr in PARAMS:
            got = cur.execute(f"select {expr}", (value,)).fetchone()[0]
            assert got == value, (name, got)
        got = cur.execute("select %s::jsonb", (Jsonb({"a": [1, "x"]}),)).fetchone()[0]
        assert got == {"a": [1, "x"]}
        row = cur.execute("select %s::int, %s::text, %s::bool", (1, "two", False)).fetchone()
        assert row == (1, "two", False)
        assert [d.name for d in cur.description] == ["int4", "text", "bool"]


def test_psycopg_error_then_connection_works(pgcat):
    t = pgcat()
    with t.connect() as c:
        assert c.execute("select %s::int", (1,)).fetchone()[0] == 1
        with pytest.raises(psycopg.errors.DivisionByZero) as ei:
            c.execute("select 1/%s::int", (0,))
        assert ei.value.diag.sqlstate == "22012"
        assert c.execute("select %s::int", (2,)).fetchone()[0] == 2
        with pytest.raises(psycopg.errors.UndefinedTable):
            c.execute("select * from no_such_table_x where a = %s", (1,))
        assert c.execute("select %s::text", ("still ok",)).fetchone()[0] == "still ok"


def test_psycopg_error_inside_transaction(pgcat, primary):
    table = primary.make_table("it_ext_txn")
    t = pgcat()
    with t.connect(autocommit=False) as c:
        c.execute(f"insert into {table} values (%s, %s)", (1, "x"))
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("select 1/0")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            c.execute("select 1")
        c.rollback()
        assert c.execute(f"select count(*) from {table}").fetchone()[0] == 0
        c.execute(f"insert into {table} values (%s, %s)", (2, "y"))
        c.commit()
    assert primary.value(f"select count(*) from {table}") == 1


def test_psycopg_executemany_pipeline(pgcat, primary):
    table = primary.make_table("it_ext_many")
    t = pgcat()
    with t.connect() as c:
        with c.cursor() as cur:
            cur.executemany(f"insert into {table} values (%s, %s)", [(i, f"v{i}") for i in range(200)])
        assert c.execute(f"select count(*), sum(id) from {table}").fetchone() == (200, sum(range(200)))


def test_psycopg_explicit_pipeline(pgcat):
    t = pgcat()
    with t.connect() as c:
        with c.pipeline():
            curs = [c.execute("select %s::int * 2", (i,)) for i in range(20)]
        assert [cur.fetchone()[0] for cur in curs] == [i * 2 for i in range(20)]


def test_psycopg_server_side_cursor(pgcat):
    t = pgcat()
    with t.connect(autocommit=False) as c:
        with c.cursor(name="it_cursor") as cur:
            cur.execute("select g from generate_series(1, 1000) g")
            first = cur.fetchmany(100)
            rest = cur.fetchall()
        c.commit()
    assert [r[0] for r in first + rest] == list(range(1, 1001))


def test_psycopg_transactions_in_transaction_mode(pgcat, primary):
    table = primary.make_table("it_ext_ctx")
    t = pgcat(pool_size=1)
    with t.connect() as a, t.connect() as b:
        with a.transaction():
            a.execute(f"insert into {table} values (%s, %s)", (1, "a"))
        with pytest.raises(RuntimeError):
            with b.transaction():
                b.execute(f"insert into {table} values (%s, %s)", (2, "b"))
                raise RuntimeError("roll back")
        assert a.execute(f"select array_agg(id order by id) from {table}").fetchone()[0] == [1]


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_asyncpg_fetch_fetchval_execute(pgcat, primary):
    table = primary.make_table("it_asyncpg_basic")
    t = pgcat()

    async def main():
        conn = await t.aconnect()
        try:
            assert await conn.fetchval("select $1::int + $2::int", 40, 2) == 42
            rows = await conn.fetch("select g, g::text as s from generate_series(1, $1::int) g", 5)
            assert [(r["g"], r["s"]) for r in rows] == [(i, str(i)) for i in range(1, 6)]
            status = await conn.execute(f"insert into {table} values ($1, $2)", 1, "one")
            assert status == "INSERT 0 1"
            await conn.executemany(f"insert into {table} values ($1, $2)", [(i, str(i)) for i in range(2, 12)])
            assert await conn.fetchval(f"select count(*) from {table}") == 11
            row = await conn.fetchrow(f"select id, v from {table} where id = $1", 1)
            assert tuple(row) == (1, "one")
            assert await conn.fetchval("select $1::text", None) is None
            assert await conn.fetchval("select $1::jsonb", json.dumps({"k": 1})) == '{"k": 1}'
            assert await conn.fetchval("select $1::numeric", decimal.Decimal("1.50")) == decimal.Decimal("1.50")
            assert await conn.fetchval("select $1::bytea", b"\x00\x01") == b"\x00\x01"
            assert await conn.fetchval("select $1::int[]", [1, 2]) == [1, 2]
        finally:
            await conn.close()

    run(main())


def test_asyncpg_error_then_works(pgcat):
    t = pgcat()

    async def main():
        conn = await t.aconnect()
        try:
            with pytest.raises(asyncpg.DivisionByZeroError):
                await conn.fetchval("select 1/$1::int", 0)
            assert await conn.fetchval("select $1::int", 5) == 5
            with pytest.raises(asyncpg.UndefinedTableError):
                await conn.execute("select * from no_such_table_y")
            assert await conn.fetchval("select 'ok'") == "ok"
        finally:
            await conn.close()

    run(main())


def test_asyncpg_transaction_block(pgcat, primary):
    table = primary.make_table("it_asyncpg_txn")
    t = pgcat(pool_size=1)

    async def main():
        a = await t.aconnect()
        b = await t.aconnect()
        try:
            async with a.transaction():
                await a.execute(f"insert into {table} values ($1, $2)", 1, "kept")
            with pytest.raises(asyncpg.UniqueViolationError):
                async with b.transaction():
                    await b.execute(f"insert into {table} values ($1, $2)", 2, "gone")
                    await b.execute(f"insert into {table} values ($1, $2)", 1, "dup")
            assert await b.fetchval(f"select array_agg(id order by id) from {table}") == [1]
        finally:
            await a.close()
            await b.close()

    run(main())
