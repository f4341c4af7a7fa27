"""Sharding with PgCat's commands and comments, on three shard databases whose `data` table is PARTITION BY HASH
(id) with modulus 3 and only the partition of their own remainder (PgCat's query_routing_setup.sql pattern): a row
sent to the wrong shard is refused by Postgres itself, so every successful insert proves the hash agrees."""

import time

import psycopg
import pytest

from support import HOST

pytestmark = pytest.mark.pooler_only


@pytest.fixture(scope="module")
def shard_tables(cluster):
    for shard in range(3):
        with psycopg.connect(host=HOST, port=cluster.primary, user="postgres", password="postgres",
                             dbname=f"shard{shard}", autocommit=True) as su:
            su.execute("drop table if exists data cascade")
            su.execute("create table data (id bigint not null, v text) partition by hash (id)")
            su.execute(f"create table data_p{shard} partition of data for values with (modulus 3, remainder {shard})")
            su.execute("grant all on data to public")
            su.execute(f"grant all on data_p{shard} to public")
    return True


def sharded(pgcat, cluster, **pool):
    config_pool = {"sharding_function": "pg_bigint_hash"}
    config_pool.update(pool)
    shards = {str(n): {"database": f"shard{n}", "servers": [[HOST, cluster.primary, "primary"]]} for n in range(3)}
    from support import build_config, free_port
    port = free_port()
    config = build_config(cluster, port, users=["app"], pool=config_pool, databases=("sharded",))
    config["pools"]["sharded"]["shards"] = shards
    return pgcat(config=config)


def test_sharding_key_routes_rows_where_postgres_puts_them(pgcat, cluster, shard_tables):
    t = sharded(pgcat, cluster)
    with t.connect(dbname="sharded") as c:
        assert c.execute("SHOW SHARD").fetchone() == ("unset",)
        for key in range(1, 31):
            assert c.execute(f"SET SHARDING KEY TO '{key}'").statusmessage == "SET SHARDING KEY"
            shard = int(c.execute("SHOW SHARD").fetchone()[0])
            assert c.execute("select current_database()").fetchone()[0] == f"shard{shard}"
            c.execute("insert into data values (%s, 'x')", (key,))  # Postgres refuses a wrong partition
    total = 0
    for shard in range(3):
        with psycopg.connect(host=HOST, port=cluster.primary, user="postgres", password="postgres",
                             dbname=f"shard{shard}") as direct:
            total += direct.execute("select count(*) from data where id between 1 and 30").fetchone()[0]
    assert total == 30


def test_set_shard_and_its_errors(pgcat, cluster, shard_tables):
    t = sharded(pgcat, cluster)
    with t.connect(dbname="sharded") as c:
        for shard in (2, 0, 1):
            assert c.execute(f"SET SHARD TO '{shard}'").statusmessage == "SET SHARD"
            assert c.execute("select current_database()").fetchone()[0] == f"shard{shard}"
        with pytest.raises(psycopg.errors.InvalidParameterValue,
                           match="shard 5 is not configured 3, staying on shard 1"):
            c.execute("SET SHARD TO '5'")
        assert c.execute("select current_database()").fetchone()[0] == "shard1"
        c.execute("SET SHARD TO 'ANY'")
        assert c.execute("SHOW SHARD").fetchone()[0] in {"0", "1", "2"}


def test_comment_routing(pgcat, cluster, shard_tables):
    t = sharded(pgcat, cluster, shard_id_regex=r"/\* shard_id: (\d+) \*/",
                sharding_key_regex=r"/\* sharding_key: (\d+) \*/")
    with t.connect(dbname="sharded") as c:
        for shard in (1, 2, 0):
            assert c.execute(f"/* shard_id: {shard} */ select current_database()").fetchone()[0] == f"shard{shard}"
        for key in range(100, 120):
            c.execute(f"/* sharding_key: {key} */ insert into data values ({key}, 'c')")
        # A shard the pool does not have is refused, in both protocols, and the client's shard stays as it was.
        c.execute("/* shard_id: 2 */ select 1")
        for query in ("/* shard_id: 9 */ select current_database()", "/* shard_id: 99999999999999999999 */ select 1"):
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="is not configured: the pool has 3 shards"):
                c.execute(query)
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="is not configured"):
                c.execute(query + " where %s = 1", (1,))
        assert c.execute("select current_database()").fetchone()[0] == "shard2"
        # A sharding key that is no bigint is refused too (before, ignored: the statement ran on shard 2).
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="sharding key 99999999999999999999 named in "
                           "the query's comment is not a bigint"):
            c.execute("/* sharding_key: 99999999999999999999 */ select current_database()")
        assert c.execute("select current_database()").fetchone()[0] == "shard2"


@pytest.mark.parametrize("mode", ["shard_1", "random"])
def test_default_shard(pgcat, cluster, shard_tables, mode):
    t = sharded(pgcat, cluster, default_shard=mode)
    seen = set()
    for _ in range(30):
        with t.connect(dbname="sharded") as c:
            seen.add(c.execute("select current_database()").fetchone()[0])
    if mode == "shard_1":
        assert seen == {"shard1"}
    else:
        assert len(seen) >= 2, seen


def test_automatic_sharding_key(pgcat, cluster, shard_tables):
    t = sharded(pgcat, cluster, automatic_sharding_key="data.id")
    with t.connect(dbname="sharded") as c:
        for key in range(200, 230):
            c.execute(f"insert into data (id, v) values ({key}, 'a')")          # simple protocol, literal
        # Negative literals and literals beyond int4, whose values libpg_query 15's JSON leaves out or writes as
        # floats: read from the text, so they reach their shard (Postgres refuses a row on the wrong one).
        for key in [*range(-20, 0), 4294967296, 5000000000, -2147483649, -9223372036854775808, 9223372036854775807]:
            c.execute(f"insert into data (id, v) values ({key}, 'big')")
            assert c.execute(f"select v from data where id = {key}").fetchone() == ("big",), key
            assert c.execute(f"select v from data where id = - {abs(key)}" if key < 0
                             else f"select v from data where id = {key}").fetchone() == ("big",), key
            if key != -9223372036854775808:  # (its magnitude is no bigint: -(9223372036854775808::bigint) fails)
                # A cast binds tighter than the sign: -(20::bigint), and a unary plus.
                assert c.execute(f"select v from data where id = {key}::bigint").fetchone() == ("big",), key
                assert c.execute(f"select v from data where id = +{key}" if key > 0 else
                                 f"select v from data where id = -({abs(key)})").fetchone() == ("big",), key
    with t.connect(dbname="sharded", prepare_threshold=0) as p:
        for key in range(300, 330):
            p.execute("insert into data (id, v) values (%s, 'p')", (key,))     # prepared, key from Bind
        for key in range(300, 330, 7):
            assert p.execute("select v from data where id = %s", (key,)).fetchone() == ("p",)
    with t.connect(dbname="sharded") as c:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="belong on different shards"):
            c.execute("insert into data (id, v) values " + ", ".join(f"({k}, 'm')" for k in range(400, 410)))
        assert c.execute("select 1").fetchone() == (1,), "the session goes on"


def test_updating_the_sharding_key_is_refused(pgcat, cluster, shard_tables):
    t = sharded(pgcat, cluster, automatic_sharding_key="data.id")
    with t.connect(dbname="sharded") as c:
        c.execute("insert into data (id, v) values (500, 'a')")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="sharding key data.id cannot be updated"):
            c.execute("update data set id = 501 where id = 500")
        c.execute("update data set v = 'b' where id = 500")
        assert c.execute("select v from data where id = 500").fetchone() == ("b",)


def test_shards_show_in_admin_and_metrics(pgcat, cluster, shard_tables):
    import urllib.request

    from support import build_config, free_port

    metrics_port = free_port()
    config = build_config(cluster, free_port(), users=["app"], databases=("sharded",),
                          general={"enable_prometheus_exporter": True, "prometheus_exporter_port": metrics_port})
    config["pools"]["sharded"]["shards"] = {
        str(n): {"database": f"shard{n}", "servers": [[HOST, cluster.primary, "primary"]]} for n in range(3)}
    t = pgcat(config=config)
    with t.connect(dbname="sharded") as c:
        for shard in range(3):
            c.execute(f"SET SHARD TO '{shard}'")
            c.execute("select 1")
    with psycopg.connect(host=t.host, port=t.port, user="pgcat_admin", password="pgcat_admin", dbname="pgcat",
                         autocommit=True) as a:
        cur = a.execute("SHOW DATABASES")
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
    shards = {(r["name"], r["database"]) for r in rows}
    assert shards == {(f"sharded_shard_{n}_primary", f"shard{n}") for n in range(3)}
    text = urllib.request.urlopen(f"http://{t.host}:{metrics_port}/metrics", timeout=10).read().decode()
    for n in range(3):
        assert any(line.startswith("pgcat_stats_total_query_count{") and f'shard="{n}"' in line
                   and f'database="shard{n}"' in line for line in text.splitlines()), n


@pytest.mark.parametrize("cache", [0, 100])
def test_asyncpg_statements_go_to_the_shard_of_their_bind(pgcat, cluster, shard_tables, cache):
    """asyncpg prepares a new statement (Parse, Describe, Flush) before it binds it: the key arrives with the Bind,
    so each execution, the first included, goes to its key's shard (Postgres refuses a row on the wrong shard)."""
    import asyncio

    t = sharded(pgcat, cluster, automatic_sharding_key="data.id")
    base = 700 + cache * 10

    async def run():
        conn = await t.aconnect(dbname="sharded", statement_cache_size=cache)
        try:
            for key in range(base, base + 9):
                await conn.execute("insert into data (id, v) values ($1, 'asyncpg')", key)
            for key in range(base, base + 9):
                assert await conn.fetchval("select v from data where id = $1", key) == "asyncpg", key
                assert await conn.fetchval(f"select {key}::int + 0 from data where id = $1", key) == key
        finally:
            await conn.close()

    asyncio.run(asyncio.wait_for(run(), 60))


def test_a_request_whose_statements_span_shards_is_refused(pgcat, cluster, shard_tables):
    """A multi-statement Query, or extended-protocol statements under one Sync, whose keys belong on different
    shards are refused with 0A000 (the pooler does not split a request); on one shard they run; statements each
    with its own Sync, pipelined in one network write, each go to their own shard."""
    import struct

    from pgwire import PgError, RawConn, message

    t = sharded(pgcat, cluster, automatic_sharding_key="data.id")
    keys = [k for k in range(800, 900)]
    by_shard: dict[int, list[int]] = {}
    with t.connect(dbname="sharded") as c:
        for k in keys[:12]:
            c.execute("SET SHARDING KEY TO %s" % f"'{k}'")
            by_shard.setdefault(int(c.execute("SHOW SHARD").fetchone()[0]), []).append(k)
    a, b = by_shard[0][0], by_shard[1][0]
    same = by_shard[2][:2]
    with t.connect(dbname="sharded") as c:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="statements of this request belong on different"):
            c.execute(f"insert into data (id, v) values ({a}, 'm'); insert into data (id, v) values ({b}, 'm')")
        c.execute(f"insert into data (id, v) values ({same[0]}, 'm'); insert into data (id, v) values ({same[1]}, 'm')")
        assert c.execute(f"select count(*) from data where id in ({same[0]}, {same[1]})").fetchone() == (2,)

    def extended(sql: str, *params: str) -> bytes:
        parse = message(b"P", b"\0" + sql.encode() + b"\0" + struct.pack("!H", 0))
        body = b"\0\0" + struct.pack("!HH", 0, len(params))
        for p in params:
            body += struct.pack("!i", len(p)) + p.encode()
        return parse + message(b"B", body + struct.pack("!H", 0)) + message(b"E", b"\0" + struct.pack("!i", 0))

    sync = message(b"S", b"")
    r = RawConn(t.host, t.port)
    r.startup("app", "sharded", "app")
    insert = "insert into data (id, v) values ($1::bigint, 'x')"
    r.send(extended(insert, str(by_shard[0][1])) + extended(insert, str(by_shard[1][1])) + sync)
    with pytest.raises(PgError) as e:
        r.read_until_ready()
    assert e.value.sqlstate == "0A000", e.value.fields
    # One Sync each: every statement goes to its own shard, in one network write.
    r.send(b"".join(extended(insert, str(k)) + sync for k in (by_shard[0][2], by_shard[1][2], by_shard[2][2])))
    for _ in range(3):
        r.read_until_ready()
    r.terminate()
    with t.connect(dbname="sharded") as c:
        for k in (by_shard[0][2], by_shard[1][2], by_shard[2][2]):
            assert c.execute("select v from data where id = %s", (k,)).fetchone() == ("x",)
        for k in (by_shard[0][1], by_shard[1][1], a, b):
            assert c.execute("select count(*) from data where id = %s", (k,)).fetchone() == (0,), k


def test_copy_from_stdin_in_a_pool_with_automatic_sharding(pgcat, cluster, shard_tables):
    """COPY FROM STDIN streams its rows while its Query is unanswered: routing each transaction by its key must
    not hold them back."""
    t = sharded(pgcat, cluster, automatic_sharding_key="data.id", default_shard="shard_0")
    with t.connect(dbname="sharded") as c:
        c.execute("SET SHARD TO '0'")
        keys = []
        for k in range(900, 1000):
            c.execute(f"SET SHARDING KEY TO '{k}'")
            if c.execute("SHOW SHARD").fetchone()[0] == "0":
                keys.append(k)
    with t.connect(dbname="sharded") as c:
        with c.cursor().copy("copy data (id, v) from stdin") as copy:
            for k in keys[:5]:
                copy.write_row((k, "copied"))
        assert c.execute("select count(*) from data where v = 'copied'").fetchone() == (5,)


def test_an_error_before_the_poolers_own_sync_skips_the_clients_pipelined_messages(pgcat, cluster, shard_tables):
    """Parse (failing), Describe, Flush, then Bind, Execute, Sync without waiting, with the key a parameter: the
    client gets the one error and one ReadyForQuery, as from PostgreSQL, which skips to the client's Sync."""
    import struct

    from pgwire import RawConn, message

    t = sharded(pgcat, cluster, automatic_sharding_key="data.id")
    r = RawConn(t.host, t.port)
    r.startup("app", "sharded", "app")
    parse = message(b"P", b"\0select no_such_column from data where id = $1\0" + struct.pack("!H", 0))
    bind = message(b"B", b"\0\0" + struct.pack("!HH", 0, 1) + struct.pack("!i", 1) + b"5" + struct.pack("!H", 0))
    r.send(parse + message(b"D", b"S\0") + message(b"H", b""))
    time.sleep(0.2)  # (the Bind in a later read: the pooler routed the Parse without it)
    r.send(bind + message(b"E", b"\0" + struct.pack("!i", 0)) + message(b"S", b""))
    kinds = []
    while not kinds or kinds[-1] != b"Z":
        kinds.append(r.read_message()[0])
    assert kinds.count(b"E") == 1, kinds
    assert r.query("select 'next'") == [["next"]]
    r.terminate()


def test_a_bind_after_a_flush_for_another_shard_is_refused_and_the_unit_rolled_back(pgcat, cluster, shard_tables):
    """Statements of one unit that arrive after a Flush (so after the lease was decided) are checked too: a Bind
    whose key belongs on another shard is refused with 0A000, and the server rolls back what the unit did."""
    import struct

    from pgwire import PgError, RawConn, message

    t = sharded(pgcat, cluster, automatic_sharding_key="data.id")
    by_shard: dict[int, list[int]] = {}
    with t.connect(dbname="sharded") as c:
        for k in range(1100, 1130):
            c.execute(f"SET SHARDING KEY TO '{k}'")
            by_shard.setdefault(int(c.execute("SHOW SHARD").fetchone()[0]), []).append(k)

    def insert(key: int) -> bytes:
        parse = message(b"P", b"\0insert into data (id, v) values ($1::bigint, 'f')\0" + struct.pack("!H", 0))
        body = b"\0\0" + struct.pack("!HH", 0, 1) + struct.pack("!i", len(str(key))) + str(key).encode()
        return parse + message(b"B", body + struct.pack("!H", 0)) + message(b"E", b"\0" + struct.pack("!i", 0))

    r = RawConn(t.host, t.port)
    r.startup("app", "sharded", "app")
    first, second = by_shard[0][0], by_shard[1][0]
    r.send(insert(first) + message(b"H", b""))
    assert [r.read_message()[0] for _ in range(3)] == [b"1", b"2", b"C"]
    r.send(insert(second) + message(b"S", b""))
    with pytest.raises(PgError) as e:
        r.read_until_ready()
    assert e.value.sqlstate == "0A000" and "belongs on shard 1" in e.value.message, e.value.fields
    assert r.query("select 1") == [["1"]]
    r.terminate()
    with t.connect(dbname="sharded") as c:
        for k in (first, second):
            assert c.execute("select count(*) from data where id = %s", (k,)).fetchone() == (0,), k


def keys_by_shard(t, keys) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    with t.connect(dbname="sharded") as c:
        for k in keys:
            c.execute(f"SET SHARDING KEY TO '{k}'")
            found.setdefault(int(c.execute("SHOW SHARD").fetchone()[0]), []).append(k)
    return found


def test_a_transaction_opened_by_a_bare_begin_goes_to_its_first_keys_shard(pgcat, cluster, shard_tables):
    """psycopg outside autocommit and asyncpg's transaction() open a transaction with a BEGIN Query of its own,
    which names no key: the pooler answers it and sends it ahead of the transaction's first statement, on that
    statement's shard. Before, the whole transaction went to default_shard with BEGIN: its reads found nothing and
    its inserts landed on the wrong shard (exploratory round 26; the partitions here refuse a misplaced row)."""
    import asyncio

    t = sharded(pgcat, cluster, automatic_sharding_key="data.id")
    by_shard = keys_by_shard(t, range(1200, 1260))
    with t.connect(dbname="sharded") as c:  # psycopg's default: BEGIN before the first statement
        c.autocommit = False
        for shard in (1, 2, 0):
            key = by_shard[shard][0]
            c.execute("insert into data (id, v) values (%s, 'tx')", (key,))
            c.execute(f"insert into data (id, v) values ({by_shard[shard][1]}, 'tx')")  # simple protocol
            assert c.execute("select current_database()").fetchone() == (f"shard{shard}",)
            assert c.execute(f"select count(*) from data where id in ({key}, {by_shard[shard][1]})").fetchone() == (2,)
            c.commit()
        # A statement for another shard inside the transaction is refused, and the transaction fails with it.
        c.execute("select v from data where id = %s", (by_shard[0][0],))
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="transaction it is part of on shard 0"):
            c.execute(f"insert into data (id, v) values ({by_shard[1][2]}, 'no')")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            c.execute("select 1")
        c.rollback()
        # BEGIN with options: they reach the server; an empty transaction commits.
        c.autocommit = True
        c.execute("begin isolation level repeatable read")
        assert c.execute(f"select current_database(), current_setting('transaction_isolation') from data "
                         f"where id = {by_shard[2][0]}").fetchone() == ("shard2", "repeatable read")
        c.execute("commit")
        c.execute("begin")
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        c.execute("commit")
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with t.connect(dbname="sharded") as c:
        assert c.execute("select count(*) from data where v = 'no'").fetchone() == (0,)
    with t.connect(dbname="sharded") as c:  # psycopg's pipeline mode: BEGIN as Parse, Bind, Execute, Sync
        c.autocommit = False
        for shard in (1, 2):
            with c.pipeline():
                c.execute("insert into data (id, v) values (%s, 'pipeline')", (by_shard[shard][4],))
                c.execute("insert into data (id, v) values (%s, 'pipeline')", (by_shard[shard][5],))
                cur = c.execute("select current_database()")
            assert cur.fetchone() == (f"shard{shard}",)
            c.commit()

    async def run():
        conn = await t.aconnect(dbname="sharded")
        try:
            for shard in (2, 1):
                async with conn.transaction():
                    await conn.execute("insert into data (id, v) values ($1, 'asyncpg tx')", by_shard[shard][3])
                    assert await conn.fetchval("select current_database()") == f"shard{shard}"
        finally:
            await conn.close()

    asyncio.run(asyncio.wait_for(run(), 60))


def test_fan_out_inside_a_transaction_is_refused(pgcat, cluster, shard_tables):
    """A statement for every shard cannot run inside a transaction, which runs on one shard: refused with 0A000
    rather than answered from one shard."""
    t = sharded(pgcat, cluster, automatic_sharding_key="data.id", fan_out=True)
    with t.connect(dbname="sharded") as c:
        c.execute("begin")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="inside a transaction"):
            c.execute("select id from data where v = 'x'")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):  # the transaction failed with it
            c.execute("select 1")
        c.execute("rollback")
        assert c.execute("select 1").fetchone() == (1,)


def test_a_known_statement_prepared_before_its_bind_goes_to_the_binds_shard(pgcat, cluster, shard_tables):
    """asyncpg's Parse, Describe, Flush, then Bind, on new connections: from the second one on, the pooler knows
    the statement and answers its Parse itself, so the Describe comes alone. It is still described on any shard and
    the Bind routed to its key's shard. Before, the Describe's lease decided the shard and the Bind was refused with
    0A000 on every new connection (exploratory round 26)."""
    import struct

    from pgwire import RawConn, message

    t = sharded(pgcat, cluster, automatic_sharding_key="data.id")
    key = keys_by_shard(t, range(1300, 1320))[2][0]
    sql = b"select current_database() from data where id = $1"
    for attempt in range(3):
        r = RawConn(t.host, t.port)
        r.startup("app", "sharded", "app")
        r.send(message(b"P", b"s1\0" + sql + b"\0" + struct.pack("!H", 0)) + message(b"D", b"Ss1\0")
               + message(b"H", b""))
        kinds = [r.read_message()[0] for _ in range(3)]
        assert kinds == [b"1", b"t", b"T"], (attempt, kinds)
        r.send(message(b"B", b"\0s1\0" + struct.pack("!HH", 0, 1) + struct.pack("!i", len(str(key)))
                       + str(key).encode() + struct.pack("!H", 0)) + message(b"E", b"\0" + struct.pack("!i", 0))
               + message(b"S", b""))
        seen = []
        while not seen or seen[-1][0] != b"Z":
            seen.append(r.read_message())
        assert [k for k, _ in seen] == [b"2", b"C", b"Z"], (attempt, seen)  # (no such row: no DataRow)
        r.terminate()


def test_a_shard_removed_by_a_reload_is_refused_not_replaced(pgcat, cluster, shard_tables):
    """A client's SET SHARD names a shard a reload then removes: its statements are refused with 22023 until it
    chooses another (PgCat's checkout fails too). Before, they went to shard 0 without a word."""
    import signal

    from support import build_config, to_yaml, wait_for

    t = sharded(pgcat, cluster)
    with t.connect(dbname="sharded") as c:
        c.execute("SET SHARD TO '2'")
        assert c.execute("select current_database()").fetchone() == ("shard2",)
        config = build_config(cluster, t.port, users=["app"], pool={"sharding_function": "pg_bigint_hash"},
                              databases=("sharded",))
        config["pools"]["sharded"]["shards"] = {
            str(n): {"database": f"shard{n}", "servers": [[HOST, cluster.primary, "primary"]]} for n in range(2)}
        t.config_path.write_text(to_yaml(config))
        t.proc.send_signal(signal.SIGHUP)

        def refused() -> bool:
            try:
                c.execute("select current_database()")
                return False
            except psycopg.errors.InvalidParameterValue as e:
                assert "shard 2 is not configured" in str(e), e
                return True
        assert wait_for(refused, 10)
        assert c.execute("SHOW SHARD").fetchone() == ("2",)
        c.execute("SET SHARD TO '1'")
        assert c.execute("select current_database()").fetchone() == ("shard1",)


def test_pgcat_commands_through_the_extended_protocol(pgcat, cluster, shard_tables):
    """psycopg prepares a text it has run five times (a named Parse, then Bind, Describe, Execute, Sync): PgCat's
    commands then came to the pooler that way and reached Postgres, which refused them (42704), so a loop of SET
    SHARD broke at its sixth turn (exploratory round 26). Now the pooler answers them as it answers a Query."""
    import struct

    from pgwire import PgError, RawConn, message

    t = sharded(pgcat, cluster)
    with t.connect(dbname="sharded", prepare_threshold=5) as c:  # psycopg's default: prepared from the sixth run
        for turn in range(12):
            shard = turn % 3
            assert c.execute(f"SET SHARD TO '{shard}'").statusmessage == "SET SHARD", turn
            assert c.execute("SHOW SHARD").fetchone() == (str(shard),), turn
            assert c.execute("select current_database()").fetchone() == (f"shard{shard}",), turn
        assert c.execute("SET SHARD TO '1'", prepare=True).statusmessage == "SET SHARD"
        assert c.execute("SHOW SHARD", prepare=True).fetchone() == ("1",)
        cur = c.execute("SHOW SERVER ROLE", prepare=True)
        assert [d.name for d in cur.description] == ["server role"] and cur.fetchone() is not None
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="shard 7 is not configured"):
            c.execute("SET SHARD TO '7'", prepare=True)
        assert c.execute("SHOW SHARD").fetchone() == ("1",)
        c.execute("deallocate all")  # (psycopg forgets its prepared statements)

    r = RawConn(t.host, t.port)
    r.startup("app", "sharded", "app")
    parse = message(b"P", b"cmd\0SHOW SHARD\0" + struct.pack("!H", 0))
    bind = message(b"B", b"\0cmd\0" + struct.pack("!HH", 0, 0) + struct.pack("!H", 0))
    execute = message(b"E", b"\0" + struct.pack("!i", 0))
    r.send(parse + message(b"D", b"Scmd\0") + bind + execute + message(b"S", b""))
    kinds = []
    while not kinds or kinds[-1] != b"Z":
        kinds.append(r.read_message()[0])
    assert kinds == [b"1", b"t", b"T", b"2", b"D", b"C", b"Z"], kinds
    # A unit that mixes a command with another statement: refused, the session goes on.
    other = message(b"P", b"\0select 1\0" + struct.pack("!H", 0)) + message(b"B", b"\0\0" + struct.pack("!HHH", 0, 0, 0))
    r.send(bind + execute + other + execute + message(b"S", b""))
    with pytest.raises(PgError) as e:
        r.read_until_ready()
    assert e.value.sqlstate == "0A000", e.value.fields
    r.send(message(b"C", b"Scmd\0") + message(b"S", b""))
    assert [r.read_message()[0] for _ in range(2)] == [b"3", b"Z"]
    assert r.query("select 'next'") == [["next"]]
    r.terminate()

    # asyncpg prepares every fetch (Parse, Describe, Flush; then Bind, Execute, Sync).
    import asyncio

    async def run():
        conn = await t.aconnect(dbname="sharded")
        try:
            for shard in ("2", "0", "2"):
                await conn.execute(f"SET SHARD TO '{shard}'")
                assert await conn.fetchval("SHOW SHARD") == shard
                assert await conn.fetchval("select current_database()") == f"shard{shard}"
        finally:
            await conn.close()

    asyncio.run(asyncio.wait_for(run(), 60))


def test_a_deferred_begin_keeps_the_transaction_status_and_role(pgcat, cluster, shard_tables):
    """Inside a transaction whose BEGIN the pooler deferred: a unit that only prepares a statement (psycopg's Parse
    and Sync before its first Bind) leaves the client in its transaction (ReadyForQuery T, not the describing
    server's I); with read/write splitting a plain BEGIN still takes the transaction to the primary, so a write after
    a read works (before the review's mends: 25006 on a replica), and BEGIN READ ONLY goes to a replica; an empty
    transaction's COMMIT or ROLLBACK is answered without a server."""
    shards = {str(n): {"database": f"shard{n}", "servers": [[HOST, cluster.primary, "primary"],
                                                               [HOST, cluster.replica1, "replica"]]}
              for n in range(3)}
    from support import build_config, free_port
    config = build_config(cluster, free_port(), users=["app"], databases=("sharded",),
                          pool={"sharding_function": "pg_bigint_hash", "automatic_sharding_key": "data.id",
                                "query_parser_enabled": True, "query_parser_read_write_splitting": True,
                                "primary_reads_enabled": False})
    config["pools"]["sharded"]["shards"] = shards
    t = pgcat(config=config)
    by_shard = keys_by_shard(t, range(1400, 1460))
    for shard in range(3):
        with t.connect(dbname="sharded") as c:
            c.execute("insert into data (id, v) values (%s, 'rw')", (by_shard[shard][0],))
    time.sleep(0.5)  # (the replica replays the inserts)
    with t.connect(dbname="sharded", prepare_threshold=0) as c:  # every statement prepared: Parse, Sync first
        c.autocommit = False
        for shard in (2, 1):
            key = by_shard[shard][0]
            assert c.execute("select v, pg_is_in_recovery() from data where id = %s", (key,)).fetchone() == ("rw", False)
            assert c.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            c.execute("update data set v = 'rw2' where id = %s", (key,))
            assert c.execute("select current_database()").fetchone() == (f"shard{shard}",)
            c.commit()
        c.execute("update data set v = 'rw3' where id = %s", (by_shard[0][0],))
        c.rollback()
    with t.connect(dbname="sharded") as c:
        c.execute("SET SERVER ROLE TO 'primary'")  # (the replica may not have replayed the commits yet)
        assert c.execute("select v from data where id = %s", (by_shard[1][0],)).fetchone() == ("rw2",)
        assert c.execute("select v from data where id = %s", (by_shard[0][0],)).fetchone() == ("rw",)
        c.execute("SET SERVER ROLE TO 'default'")
        c.execute("begin read only")
        assert c.execute(f"select pg_is_in_recovery(), current_database() from data where id = {by_shard[2][0]}"
                         ).fetchone() == (True, "shard2")
        c.execute("commit")
        for end in ("commit", "ROLLBACK", "end"):
            c.execute("begin")
            c.execute(end)
            assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE, end
    # A BEGIN the server refuses (READ WRITE on a standby) fails the transaction's first request with its error;
    # the client is idle after it and goes on.
    with t.connect(dbname="sharded") as c:
        c.execute("SET SERVER ROLE TO 'replica'")
        c.execute("begin read write")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="read-write mode during recovery"):
            c.execute(f"select v from data where id = {by_shard[2][0]}")
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert c.execute(f"select pg_is_in_recovery() from data where id = {by_shard[2][0]}").fetchone() == (True,)
    # The same at the protocol level: BEGIN, then a unit that only prepares (Parse, Sync): ReadyForQuery T.
    import struct

    from pgwire import RawConn, message

    r = RawConn(t.host, t.port)
    r.startup("app", "sharded", "app")
    r.send(message(b"Q", b"BEGIN\0"))
    assert [r.read_message() for _ in range(2)] == [(b"C", b"BEGIN\0"), (b"Z", b"T")]
    r.send(message(b"P", b"s1\0select v from data where id = $1\0" + struct.pack("!H", 0)) + message(b"S", b""))
    assert [r.read_message() for _ in range(2)] == [(b"1", b""), (b"Z", b"T")]
    key = str(by_shard[1][0]).encode()
    r.send(message(b"B", b"\0s1\0" + struct.pack("!HH", 0, 1) + struct.pack("!i", len(key)) + key
                   + struct.pack("!H", 0)) + message(b"E", b"\0" + struct.pack("!i", 0)) + message(b"S", b""))
    replies = []
    while not replies or replies[-1][0] != b"Z":
        replies.append(r.read_message())
    assert [k for k, _ in replies] == [b"2", b"D", b"C", b"Z"] and replies[-1][1] == b"T", replies
    assert r.query("select current_database()") == [["shard1"]]
    r.send(message(b"Q", b"ROLLBACK\0"))
    assert [r.read_message() for _ in range(2)] == [(b"C", b"ROLLBACK\0"), (b"Z", b"I")]
    r.terminate()


def test_an_error_inside_a_deferred_begin_fails_the_transaction(pgcat, cluster, shard_tables):
    """An error the pooler raises before a deferred BEGIN reached any server (a table_access refusal, a bad SET
    SHARD, statements across shards) fails the transaction, as an error on a server would: what follows gets 25P02
    until ROLLBACK or COMMIT, which the pooler answers with ROLLBACK (no server holds the transaction). Before, the
    client was told it was idle and its next statements autocommitted (exploratory round 26b)."""
    from pgwire import PgError, RawConn

    t = sharded(pgcat, cluster, automatic_sharding_key="data.id", query_parser_enabled=True,
                plugins={"table_access": {"enabled": True, "tables": ["pg_authid"]}})
    key = keys_by_shard(t, range(1500, 1520))[1][0]
    r = RawConn(t.host, t.port)
    r.startup("app", "sharded", "app")
    for refused in ("select rolname from pg_authid", "SET SHARD TO '9'"):
        r.query("begin")
        with pytest.raises(PgError) as e:
            r.query(refused)
        assert e.value.sqlstate in ("42501", "22023"), e.value.fields
        assert r.txn_status == "E", refused
        with pytest.raises(PgError) as e:
            r.query(f"insert into data (id, v) values ({key}, 'must roll back')")
        assert e.value.sqlstate == "25P02", e.value.fields
        r.query("rollback")
        assert r.txn_status == "I"
    r.terminate()
    with t.connect(dbname="sharded") as c:  # psycopg outside autocommit: its rollback() after the error
        c.autocommit = False
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("select rolname from pg_authid")
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            c.execute("insert into data (id, v) values (%s, 'must roll back')", (key,))
        c.rollback()
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert c.execute("select count(*) from data where id = %s", (key,)).fetchone() == (0,)
        c.commit()


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_transactions_on_a_sharded_pool(pgcat, cluster, shard_tables, tmp_path, mode):
    """pgbench's own BEGIN ... COMMIT scripts on a pool with automatic sharding: each transaction goes to its key's
    shard (the partitions refuse a misplaced row) in every protocol mode. With -M extended and -M prepared the BEGIN
    comes as Parse, Bind, Execute and Sync (named P_n once, then bound again), which the pooler defers as it does a
    BEGIN Query; before, every such transaction went to default_shard and its keyed statements were refused."""
    from support import pgbench

    t = sharded(pgcat, cluster, automatic_sharding_key="data.id")
    script = tmp_path / "shard.sql"
    script.write_text("\\set k random(2000000, 2999999)\nBEGIN;\nSELECT v FROM data WHERE id = :k;\n"
                      f"INSERT INTO data (id, v) VALUES (:k, 'pgbench-{mode}');\nCOMMIT;\n")
    r = pgbench(t, ["-n", "-M", mode, "-c", "4", "-j", "2", "-t", "50", "-f", str(script)], dbname="sharded")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "number of transactions actually processed: 200/200" in r.stdout, r.stdout
    total = 0
    for shard in range(3):
        with psycopg.connect(host=HOST, port=cluster.primary, user="postgres", password="postgres",
                             dbname=f"shard{shard}") as direct:
            total += direct.execute("select count(*) from data where v = %s", (f"pgbench-{mode}",)).fetchone()[0]
    assert total == 200


def test_a_named_begin_the_pooler_answered_works_where_it_is_bound_later(pgcat, cluster, shard_tables):
    """A named BEGIN the pooler answered (pgbench -M prepared prepares each command alone first) is the client's
    statement too: bound later in a unit with other statements (pgbench's pipelines), the usual way prepares it on
    that server. And a prepare that fails inside a deferred BEGIN (asyncpg: Parse, Describe, Flush) fails the
    transaction (review of this stop)."""
    import struct

    from pgwire import PgError, RawConn, message

    t = sharded(pgcat, cluster, automatic_sharding_key="data.id")
    key = keys_by_shard(t, range(1600, 1620))[2][0]

    def unit(name: bytes, sql: bytes, *params: bytes) -> bytes:
        body = b"\0" + name + b"\0" + struct.pack("!HH", 0, len(params))
        for p in params:
            body += struct.pack("!i", len(p)) + p
        return message(b"B", body + struct.pack("!H", 0)) + message(b"E", b"\0" + struct.pack("!i", 0))

    r = RawConn(t.host, t.port)
    r.startup("app", "sharded", "app")
    r.send(message(b"P", b"P_0\0BEGIN\0" + struct.pack("!H", 0)) + message(b"S", b""))
    assert [r.read_message() for _ in range(2)] == [(b"1", b""), (b"Z", b"I")]
    r.send(message(b"P", b"P_1\0insert into data (id, v) values ($1::bigint, 'named')\0" + struct.pack("!H", 0))
           + message(b"S", b""))
    assert [r.read_message()[0] for _ in range(2)] == [b"1", b"Z"]
    r.send(unit(b"P_0", b"") + unit(b"P_1", b"", str(key).encode()) + message(b"S", b""))
    replies = []
    while not replies or replies[-1][0] != b"Z":
        replies.append(r.read_message())
    assert [k for k, _ in replies] == [b"2", b"C", b"2", b"C", b"Z"], replies
    r.send(message(b"Q", b"COMMIT\0"))
    assert [r.read_message()[0] for _ in range(2)] == [b"C", b"Z"]
    assert r.query(f"select v from data where id = {key}") == [["named"]]
    # A failed prepare inside a deferred BEGIN: the transaction fails (E, then 25P02) until ROLLBACK.
    r.query("begin")
    r.send(message(b"P", b"bad\0select no_such_column from data where id = $1\0" + struct.pack("!H", 0))
           + message(b"D", b"Sbad\0") + message(b"H", b""))
    assert r.read_message()[0] == b"E"
    r.send(message(b"S", b""))
    assert r.read_message() == (b"Z", b"E")
    with pytest.raises(PgError) as e:
        r.query("select 1")
    assert e.value.sqlstate == "25P02"
    r.query("rollback")
    assert r.txn_status == "I"
    r.terminate()


@pytest.mark.parametrize("prepare", [None, 0], ids=["unnamed", "named"])
def test_session_mode_checks_extended_statements_against_the_sessions_shard(pgcat, cluster, shard_tables, prepare):
    """In session mode the first keyed request decides the session's shard; a later extended-protocol statement
    whose key belongs elsewhere is refused with 0A000 like a simple Query (before, it ran on the session's shard:
    its read found nothing, its write landed on the wrong shard: here Postgres refuses the partition)."""
    import asyncio

    t = sharded(pgcat, cluster, automatic_sharding_key="data.id", pool_mode="session")
    shards = keys_by_shard(t, range(9_100_000, 9_100_060))
    home, other = shards[0][0], shards[1][0]
    with t.connect(dbname="sharded", prepare_threshold=prepare) as c:
        assert c.execute("select current_database() from data where id = %s limit 0", (home,)).fetchall() == []
        assert c.execute("select current_database()").fetchone() == ("shard0",)
        c.execute("insert into data (id, v) values (%s, 'home')", (shards[0][1],))
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="belongs on shard 1"):
            c.execute("insert into data (id, v) values (%s, 'other')", (other,))
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="belongs on shard 1"):
            c.execute("select v from data where id = %s", (other,))
        assert c.execute("select v from data where id = %s", (shards[0][1],)).fetchone() == ("home",)

    async def asyncpg_session():  # asyncpg describes before it binds: its session starts on default_shard (0)
        conn = await t.aconnect(dbname="sharded", statement_cache_size=100)
        try:
            assert await conn.fetchval("select current_database() from data where id = $1 limit 0", home) is None
            try:
                await conn.fetchval("select v from data where id = $1", other)
            except Exception as e:  # noqa: BLE001
                return getattr(e, "sqlstate", repr(e))
            return "no error"
        finally:
            await conn.close()

    assert asyncio.run(asyncio.wait_for(asyncpg_session(), 20)) == "0A000"
