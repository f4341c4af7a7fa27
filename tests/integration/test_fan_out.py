"""fan_out (issue 7, beyond PgCat): in a sharded pool, a statement with no shard key runs on every shard when the
combined replies are the right answer. The same rows live in three hash-partitioned shard databases (placed by the
pooler's automatic sharding key, Postgres refusing a wrong partition) and in one plain table of the app database;
every query through the pooler must give exactly what the plain table gives."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from support import HOST, build_config, ensure_role, free_port, psql, superuser

pytestmark = pytest.mark.pooler_only

COLUMNS = "id bigint not null, v text, n numeric, f float8, ts timestamptz, d date, ok boolean"


def rows():
    out = []
    for i in range(1, 61):
        v = None if i % 11 == 0 else f"{'abcABC_é'[i % 8]}{i % 7}"
        n = None if i % 13 == 0 else f"{(i * 37) % 50 - 25}.{i % 3}"
        f = float("inf") if i == 17 else (i * 7919) % 97 / 3.0
        ts = f"2024-0{1 + i % 9}-1{i % 10} {i % 24:02d}:0{i % 6}:00.{i:03d}+0{i % 5}"
        d = f"202{i % 5}-0{1 + i % 9}-2{i % 8}"
        out.append((i, v, n, f, ts, d, i % 3 == 0))
    return out


@pytest.fixture(scope="module")
def fan_tables(cluster):
    for shard in range(3):
        with psycopg.connect(host=HOST, port=cluster.primary, user="postgres", password="postgres",
                             dbname=f"shard{shard}", autocommit=True) as su:
            su.execute("drop table if exists fo cascade")
            su.execute(f"create table fo ({COLUMNS}) partition by hash (id)")
            su.execute(f"create table fo_p{shard} partition of fo for values with (modulus 3, remainder {shard})")
            su.execute("grant all on fo to public")
            su.execute(f"grant all on fo_p{shard} to public")
    with psycopg.connect(host=HOST, port=cluster.primary, user="postgres", password="postgres", dbname="app",
                         autocommit=True) as su:
        su.execute("drop table if exists fo")
        su.execute(f"create table fo ({COLUMNS})")
        su.execute("grant all on fo to public")
        with su.cursor() as cur:
            cur.executemany("insert into fo values (%s, %s, %s, %s, %s, %s, %s)", rows())
    return True


def sharded(pgcat, cluster, pool_size: int = 5, **pool):
    config_pool = {"sharding_function": "pg_bigint_hash", "automatic_sharding_key": "fo.id", "fan_out": True}
    config_pool.update(pool)
    config = build_config(cluster, free_port(), users=["app"], pool_size=pool_size, pool=config_pool,
                          databases=("sharded",))
    config["pools"]["sharded"]["shards"] = {
        str(n): {"database": f"shard{n}", "servers": [[HOST, cluster.primary, "primary"]]} for n in range(3)}
    return pgcat(config=config)


@pytest.fixture
def fan(pgcat, cluster, fan_tables):
    t = sharded(pgcat, cluster)
    with t.connect(dbname="sharded") as c:
        if c.execute("select count(*) from fo where id = 1").fetchone()[0] == 0:
            for shard in range(3):
                with psycopg.connect(host=HOST, port=cluster.primary, user="postgres", password="postgres",
                                     dbname=f"shard{shard}", autocommit=True) as su:
                    su.execute("truncate fo")
            for row in rows():
                c.execute("insert into fo (id, v, n, f, ts, d, ok) values (%s, %s, %s, %s, %s, %s, %s)", row)
    return t


def reference(primary, sql):
    with primary.connect() as c:
        return c.execute(sql).fetchall()


ORDERED = [
    "select id, v from fo order by id",
    "select id, n from fo order by n desc nulls last, id limit 7",
    "select id, n from fo order by n, id desc",
    "select v, id from fo order by v collate \"C\" nulls first, id",
    "select id, f from fo order by f desc, id limit 5",
    "select id, ts from fo order by ts, id",
    "select d, id from fo order by d desc, id limit 12",
    "select ok, id from fo order by ok, 2 desc",
    "select id, v from fo where v like 'a%' order by 1 desc limit 3",
    "select fo.id as key, fo.v from fo order by key limit 0",
    "select id from fo order by id limit all",
]


@pytest.mark.parametrize("sql", ORDERED)
def test_ordered_selects_match_one_table(fan, primary, sql):
    expected = reference(primary, sql)
    with fan.connect(dbname="sharded") as c:  # extended protocol, unnamed statements
        assert c.execute(sql).fetchall() == expected


def test_simple_protocol_matches_one_table(fan, cluster):
    sql = "select id, n, ts from fo order by n nulls first, id limit 9"
    want = psql((HOST, cluster.primary), sql, user="postgres", dbname="app").stdout
    got = psql(fan, sql, dbname="sharded").stdout
    assert got == want and len(got.strip().splitlines()) == 9


def test_unordered_select_gets_every_row(fan, primary):
    with fan.connect(dbname="sharded") as c:
        got = c.execute("select id, v from fo where ok").fetchall()
    assert sorted(got) == sorted(reference(primary, "select id, v from fo where ok"))
    assert len(got) == 20


def test_keyed_statements_still_go_to_one_shard(fan):
    with fan.connect(dbname="sharded") as c:
        assert c.execute("select id from fo where id = 5").fetchall() == [(5,)]
        assert c.execute("select current_database()").fetchone()[0] == "shard0"  # no table: default_shard


@pytest.mark.parametrize("sql,why", [
    ("select count(*) from fo", "aggregates"),
    ("select v, min(id) from fo group by v", "GROUP BY"),
    ("select v from fo group by v", "GROUP BY"),
    ("select distinct v from fo", "DISTINCT"),
    ("select id from fo order by id offset 3", "OFFSET"),
    ("select id, v from fo order by v", "COLLATE"),
    ("select id from fo where id in (select id from fo where ok)", "subqueries"),
    ("select id, row_number() over () from fo", "window functions"),
    ("update fo set v = 'y' where v = 'x'", "UPDATE"),
    ("delete from fo where ok", "DELETE"),
    ("select id from fo order by id + 1", "expression"),
    ("select 1 from fo union all select 2 from fo", "UNION"),
])
def test_statements_without_a_correct_combined_answer_are_refused(fan, sql, why):
    with fan.connect(dbname="sharded") as c:
        with pytest.raises(psycopg.errors.FeatureNotSupported) as e:
            c.execute(sql)
        assert "cannot run across shards" in str(e.value) and why in str(e.value), str(e.value)
        assert c.execute("select 1").fetchone() == (1,)  # the session goes on


def test_ddl_and_set_run_on_every_shard(fan, cluster):
    with fan.connect(dbname="sharded") as c:
        c.execute("drop table if exists fo_ddl")
        assert c.execute("create table fo_ddl (x int)").statusmessage == "CREATE TABLE"
        assert c.execute("set statement_timeout = '5s'").statusmessage == "SET"
    for shard in range(3):
        with psycopg.connect(host=HOST, port=cluster.primary, user="postgres", password="postgres",
                             dbname=f"shard{shard}") as direct:
            assert direct.execute("select to_regclass('fo_ddl') is not null").fetchone()[0]
    with fan.connect(dbname="sharded") as c:
        c.execute("drop table fo_ddl")


def test_an_error_on_one_shard_reaches_the_client(fan):
    with fan.connect(dbname="sharded") as c:
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("select id, 1 / (id - 7) from fo order by id")
        assert c.execute("select count(*) from fo where id = 7").fetchone()[0] == 1


def test_cancel_reaches_every_shard(fan):
    with fan.connect(dbname="sharded") as c:
        timer = threading.Timer(0.5, c.cancel_safe)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("select fo.id from fo, pg_sleep(20) where fo.id < 3")
        timer.join()
        assert time.monotonic() - started < 10
        assert c.execute("select id from fo order by id limit 1").fetchone() == (1,)


def test_a_cancel_while_a_shard_is_awaited_runs_the_statement_nowhere(pgcat, cluster, fan_tables):
    """A cancel that comes while the fan-out still waits for a shard's connection (another client's transaction
    holds it) ends the statement with 57014 at once, and the shards not reached yet never run it: before, the
    cancel was dropped and the DDL ran on every shard once the connection came free."""
    t = sharded(pgcat, cluster, pool_size=1)
    table = "fo_cancelled_probe"
    for shard in range(3):
        with psycopg.connect(host=HOST, port=cluster.primary, user="postgres", password="postgres",
                             dbname=f"shard{shard}", autocommit=True) as su:
            su.execute(f"drop table if exists {table}")
    with t.connect(dbname="sharded") as holder, t.connect(dbname="sharded") as c:
        holder.execute("set shard to '0'")
        holder.execute("begin")
        holder.execute("select 1")  # holds shard 0's only connection
        timer = threading.Timer(0.5, c.cancel_safe)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute(f"create table {table} (id int)")
        timer.join()
        assert time.monotonic() - started < 3
        holder.execute("commit")
        time.sleep(0.5)
        for shard in range(3):
            with psycopg.connect(host=HOST, port=cluster.primary, user="postgres", password="postgres",
                                 dbname=f"shard{shard}") as su:
                assert su.execute("select to_regclass(%s)", (table,)).fetchone()[0] is None, shard
        assert c.execute("select id from fo order by id limit 1").fetchone() == (1,)  # the client goes on


def test_without_fan_out_unkeyed_statements_go_to_the_default_shard(pgcat, cluster, fan_tables):
    t = sharded(pgcat, cluster, fan_out=False, default_shard="shard_2")
    with t.connect(dbname="sharded") as c:
        assert c.execute("select current_database()").fetchone()[0] == "shard2"
        c.execute("select count(*) from fo")  # PgCat's behaviour: whatever shard 2 holds


def test_login_settings_hold_on_every_shard_and_a_refused_one_runs_nothing(pgcat, cluster, fan):
    """A client's login settings (here a role) reach each shard before its statement. When a shard refuses them
    (the role was revoked after the login), the statement fails and runs on no shard: a DDL never runs without
    the role."""
    role = "pgcat_fan_out_role"
    ensure_role(cluster, role)
    t = sharded(pgcat, cluster, pool_size=1)  # one connection per shard, taken in turns
    probe = "select current_user, id from fo order by id limit 5"
    try:
        with t.connect(dbname="sharded", options=f"-c role={role}") as a, t.connect(dbname="sharded") as b:
            assert {row[0] for row in a.execute(probe).fetchall()} == {role}
            ensure_role(cluster, role, member=False)
            assert {row[0] for row in b.execute(probe).fetchall()} == {"app"}  # resets the role on every shard
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                a.execute("create table fo_refused_probe (x int)")
            assert {row[0] for row in b.execute(probe).fetchall()} == {"app"}
        for shard in range(3):
            with superuser(cluster.primary, f"shard{shard}") as su:
                assert su.execute("select to_regclass('fo_refused_probe')").fetchone()[0] is None, shard
    finally:
        ensure_role(cluster, role)
        for shard in range(3):
            with superuser(cluster.primary, f"shard{shard}") as su:
                su.execute("drop table if exists fo_refused_probe")


def test_a_set_run_on_every_shard_does_not_reach_the_next_client(pgcat, cluster, fan):
    """Transaction mode: a SET fanned out to every shard is reset (RESET ALL) before another client gets those
    connections, as for any SET."""
    t = sharded(pgcat, cluster, pool_size=1)  # one connection per shard, taken in turns
    probe = "select current_setting('work_mem'), id from fo order by id limit 5"
    with t.connect(dbname="sharded") as a, t.connect(dbname="sharded") as b:
        default = {row[0] for row in b.execute(probe).fetchall()}
        assert default != {"7MB"}
        a.execute("set work_mem = '7MB'")
        assert {row[0] for row in b.execute(probe).fetchall()} == default


def test_a_lone_bind_after_a_fanned_out_parse_is_26000(fan):
    """The unnamed statement of a batch that ran on every shard is not this client's on any one server connection:
    a later lone Bind gets 26000, never the client's earlier unnamed statement (one keyed to a shard) run again."""
    import struct

    from pgwire import PgError, RawConn, message

    def parse(sql: str) -> bytes:
        return message(b"P", b"\0" + sql.encode() + b"\0" + struct.pack("!H", 0))

    bind = message(b"B", b"\0\0" + struct.pack("!HHH", 0, 0, 0))
    execute = message(b"E", b"\0" + struct.pack("!i", 0))
    sync = message(b"S", b"")
    c = RawConn(fan.host, fan.port)
    c.startup("app", "sharded", "app")
    c.send(parse("select v from fo where id = 5") + bind + execute + sync)
    assert len(c.read_until_ready()) == 1
    c.send(parse("select id from fo order by id limit 2") + bind + message(b"D", b"P\0") + execute + sync)
    assert c.read_until_ready() == [["1"], ["2"]]
    c.send(bind + execute + sync)
    with pytest.raises(PgError) as e:
        c.read_until_ready()
    assert e.value.sqlstate == "26000", e.value.fields
    c.terminate()
