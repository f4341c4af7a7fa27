"""PgCat's plugins on real servers: table_access refuses listed tables (simple and extended protocol, inside
transactions too), intercept answers listed queries itself, query_logger logs query texts, prewarmer runs its
queries on every new server connection (and a failing one fails the connection). Also a user's statement_timeout
(PgCat's pooler-side timeout)."""

import time

import psycopg
import pytest

from support import build_config, free_port, psql

pytestmark = pytest.mark.pooler_only

SECRET_TABLE = "plugin_secrets"
OPEN_TABLE = "plugin_open"


@pytest.fixture
def tables(primary):
    primary.sql(f"drop table if exists {SECRET_TABLE}, {OPEN_TABLE}, plugin_prewarm_log")
    primary.sql(f"create table {SECRET_TABLE} (id int primary key, v text)")
    primary.sql(f"create table {OPEN_TABLE} (id int primary key, v text)")
    primary.sql(f"insert into {SECRET_TABLE} values (1, 'hidden')")
    primary.sql(f"insert into {OPEN_TABLE} values (1, 'visible')")
    primary.sql("create table plugin_prewarm_log (pid int, at timestamptz default now())")
    primary.sql(f"grant all on {SECRET_TABLE}, {OPEN_TABLE}, plugin_prewarm_log to public")
    yield
    primary.sql(f"drop table if exists {SECRET_TABLE}, {OPEN_TABLE}, plugin_prewarm_log")


def with_plugins(plugins: dict, **pool) -> dict:
    return {"pool": {"query_parser_enabled": True, "plugins": plugins, **pool}}


def test_table_access_refuses_listed_tables(pgcat, tables):
    t = pgcat(**with_plugins({"table_access": {"enabled": True, "tables": [SECRET_TABLE, "pg_authid"]}}))
    with t.connect() as c:
        # Extended protocol (psycopg sends parameters with an unnamed Parse).
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f'permission for table "{SECRET_TABLE}" denied'):
            c.execute(f"select v from {SECRET_TABLE} where id = %s", (1,))
        assert c.execute(f"select v from {OPEN_TABLE} where id = %s", (1,)).fetchone() == ("visible",)
        # Subqueries, CTEs, other statements, other spellings.
        for sql in (f"select 1 where exists (select 1 from public.{SECRET_TABLE.upper()})",
                    f"with s as (select * from {SECRET_TABLE}) select count(*) from s",
                    f"update {SECRET_TABLE} set v = 'changed'",
                    "select rolname from pg_catalog.pg_authid"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(sql)
        # Named prepared statements.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute(f"select v from {SECRET_TABLE} where id = %s", (1,), prepare=True)
        # Inside a transaction: refused too, and the transaction failed, as by Postgres's own error: the next
        # statement gets 25P02 and the earlier write is not committed.
        c.autocommit = False
        assert c.execute(f"select v from {OPEN_TABLE}").fetchone() == ("visible",)
        c.execute(f"insert into {OPEN_TABLE} values (2, 'written before the refusal')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute(f"select v from {SECRET_TABLE}")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            c.execute("select 1")
        c.rollback()
        c.autocommit = True
        assert c.execute("select 1").fetchone() == (1,)
        # In one pipeline (one Sync): the refused Parse fails the unit, so the INSERT before it is rolled back.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            with c.pipeline():
                c.execute(f"insert into {OPEN_TABLE} values (3, 'same unit as the refusal')")
                c.execute(f"select v from {SECRET_TABLE}")
        assert c.execute(f"select count(*) from {OPEN_TABLE}").fetchone() == (1,)

    # Simple protocol (psql), also inside an explicit transaction and as the second statement of a Query.
    r = psql(t, f"select v from {SECRET_TABLE}", check=False)
    assert r.returncode != 0 and f'permission for table "{SECRET_TABLE}" denied' in r.stderr, r.stderr
    r = psql(t, stdin=f"begin;\ninsert into {OPEN_TABLE} values (4, 'x');\nselect v from {SECRET_TABLE};\n"
                      "select 1;\ncommit;\n", check=False, on_error_stop=False)
    assert f'permission for table "{SECRET_TABLE}" denied' in r.stderr, r.stderr
    # The block failed on the server as well: the next statement is refused and COMMIT rolls back (the row count
    # below).
    assert "current transaction is aborted" in r.stderr, r.stderr
    r = psql(t, f"select 1; select v from {SECRET_TABLE}", check=False)
    assert r.returncode != 0 and "denied" in r.stderr, r.stderr
    # SQL-level PREPARE names the table too (its EXECUTE would not)
    r = psql(t, f"prepare p as select v from {SECRET_TABLE}", check=False)
    assert r.returncode != 0 and "denied" in r.stderr, r.stderr
    # a CTE of the same name elsewhere does not hide the table
    r = psql(t, f"select v from {SECRET_TABLE} where exists (with {SECRET_TABLE} as (select 1) select 1 from {SECRET_TABLE})",
             check=False)
    assert r.returncode != 0 and "denied" in r.stderr, r.stderr
    assert psql(t, f"select v from {OPEN_TABLE}").stdout.strip() == "visible"
    # Nothing refused ever reached the server: the row is unchanged.
    assert psql(t, f"select count(*) from {OPEN_TABLE}").stdout.strip() == "1"


def test_table_access_in_session_mode(pgcat, tables, primary):
    t = pgcat(pool_mode="session", **with_plugins({"table_access": {"enabled": True, "tables": [SECRET_TABLE]}}))
    with t.connect() as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute(f"delete from {SECRET_TABLE}")
        assert c.execute(f"select count(*) from {OPEN_TABLE}").fetchone() == (1,)
    assert primary.value(f"select count(*) from {SECRET_TABLE}") == 1, "the refused DELETE ran"


def test_global_plugins_apply_only_where_the_parser_is_on(pgcat, cluster, tables):
    """A global plugins block does not apply to a pool whose parser is off (documented; a pool's own block needs the
    parser)."""
    plugins = {"table_access": {"enabled": True, "tables": [SECRET_TABLE]}}
    config = build_config(cluster, free_port(), pool={"query_parser_enabled": False})
    config["plugins"] = plugins
    off = pgcat(config=config)
    assert psql(off, f"select v from {SECRET_TABLE}").stdout.strip() == "hidden"
    config = build_config(cluster, free_port(), pool={"query_parser_enabled": True})
    config["plugins"] = plugins
    on = pgcat(config=config)
    r = psql(on, f"select v from {SECRET_TABLE}", check=False)
    assert r.returncode != 0 and "denied" in r.stderr, r.stderr


def test_intercept_answers_listed_queries(pgcat, tables):
    canned = {
        "enabled": True,
        "queries": {
            "0": {"query": "select 'who answers' as a, current_schemas(false) as b",
                  "schema": [["a", "text"], ["b", "anyarray"]],
                  "result": [["pgcat for ${USER} in ${DATABASE}", "{public}"], ["", "{x}"]]},
        },
    }
    t = pgcat(**with_plugins({"intercept": canned}))
    out = psql(t, "SELECT 'who answers' AS a,\n current_schemas(false) AS b;").stdout.splitlines()
    assert out == ["pgcat for app in app|{public}", "|{x}"], out
    # Inside a transaction too, and other queries still reach the server.
    out = psql(t, stdin="begin;\nselect 'who answers' as a, current_schemas(false) as b;\n"
                        f"select v from {OPEN_TABLE};\ncommit;\n").stdout.splitlines()
    assert out == ["pgcat for app in app|{public}", "|{x}", "visible"], out
    assert psql(t, "select 'who answers'").stdout.strip() == "who answers"
    # In a failed transaction block the server's 25P02 answers it, as any statement there (not the canned rows).
    with t.connect() as c:
        c.execute("begin")
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("select 1/0")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            c.execute("select 'who answers' as a, current_schemas(false) as b")
        c.execute("rollback")
        assert c.execute("select 'who answers' as a, current_schemas(false) as b").fetchone()[0] == \
            "pgcat for app in app"


def test_query_logger_logs_each_text(pgcat, tables):
    t = pgcat(**with_plugins({"query_logger": {"enabled": True}}))
    with t.connect() as c:
        c.execute("select 4242 as logged_simple")
        c.execute("select %s::int as logged_extended", (7,))
        c.autocommit = False
        c.execute("select 4343 as logged_in_transaction")
        c.commit()
    log = t.log()
    for text in ("select 4242 as logged_simple", "select $1::int as logged_extended",
                 "select 4343 as logged_in_transaction"):
        lines = [line for line in log.splitlines() if text in line]
        assert len(lines) == 1, f"{text!r} logged {len(lines)} times:\n{log[-3000:]}"
        assert "[pool: app][user: app]" in lines[0]


def test_query_logger_masks_passwords(pgcat, tables):
    """The spec's "never a password" holds for query_logger too: the literal after PASSWORD is logged as
    '********' (here in statements the server refuses: the logger writes before the server answers)."""
    t = pgcat(**with_plugins({"query_logger": {"enabled": True}}))
    with t.connect() as c:
        for sql in ("alter role no_such_role_q1 password 'Qry-Secret-91'",
                    "create role app with encrypted password $p$Qry-Secret-92$p$"):
            with pytest.raises(psycopg.Error):
                c.execute(sql)
        c.execute("select 'password' as kept_word")
    log = t.log()
    assert "Qry-Secret" not in log, log[-3000:]
    assert "alter role no_such_role_q1 password '********'" in log, log[-3000:]
    assert "select 'password' as kept_word" in log


def test_no_logging_without_the_plugin(pgcat, tables):
    t = pgcat(pool={"query_parser_enabled": True})
    with t.connect() as c:
        c.execute("select 4545 as not_logged")
    assert "not_logged" not in t.log()


def test_prewarmer_runs_on_every_new_server_connection(pgcat, tables, primary):
    t = pgcat(pool_size=3, **with_plugins({"prewarmer": {"enabled": True, "queries": [
        "insert into plugin_prewarm_log (pid) values (pg_backend_pid())",
        "select 1",
    ]}}))
    pids = set()
    conns = [t.connect(autocommit=False) for _ in range(3)]
    try:
        for c in conns:  # three transactions at once: three server connections
            pids.add(c.execute("select pg_backend_pid()").fetchone()[0])
        for c in conns:
            c.commit()
    finally:
        for c in conns:
            c.close()
    logged = {row[0] for row in primary.sql("select pid from plugin_prewarm_log")}
    assert pids <= logged, f"server connections {pids} were not all prewarmed ({logged})"
    assert len(logged) == len(primary.sql("select pid from plugin_prewarm_log")), "a connection was prewarmed twice"


def test_a_failing_prewarmer_fails_the_connection(pgcat, tables):
    t = pgcat(general={"connect_timeout": 2000},
              **with_plugins({"prewarmer": {"enabled": True, "queries": ["select * from plugin_no_such_table"]}}))
    start = time.monotonic()
    with pytest.raises(psycopg.Error) as failure:
        with t.connect() as c:
            c.execute("select 1")
    assert time.monotonic() - start < 15, "the client waited past connect_timeout"
    assert "plugin_no_such_table" in t.log() and "prewarmer query failed" in t.log(), t.log()[-3000:]
    assert failure.value.sqlstate in (None, "08006", "08001", "57014"), failure.value.sqlstate


def test_a_users_statement_timeout_ends_a_slow_statement(pgcat):
    t = pgcat(users={"app": {"statement_timeout": 300}, "md5_user": {}})
    with t.connect() as c:
        assert c.execute("select pg_sleep(0.05), 1").fetchone()[1] == 1
        start = time.monotonic()
        with pytest.raises(psycopg.OperationalError, match="pool statement timeout"):
            c.execute("select pg_sleep(3)")
        assert time.monotonic() - start < 2.5
    # The pooler goes on; the other user has no timeout.
    with t.connect(user="app") as c:
        assert c.execute("select 1").fetchone() == (1,)
    with t.connect(user="md5_user") as c:
        assert c.execute("select pg_sleep(0.5), 2").fetchone()[1] == 2


def test_statement_timeout_counts_flushed_waits_and_not_the_clients_think_time(pgcat):
    """Extended protocol with Flush (no Sync): an Execute the client flushed is a wait for the server, so a slow one
    ends the session; the time a client spends between a flushed Describe's answer and its Bind is not a wait."""
    import struct

    from pgwire import RawConn, message

    def parse(sql: str) -> bytes:
        return message(b"P", b"\0" + sql.encode() + b"\0" + struct.pack("!H", 0))

    bind = message(b"B", b"\0\0" + struct.pack("!HHH", 0, 0, 0))
    execute = message(b"E", b"\0" + struct.pack("!i", 0))
    flush, sync = message(b"H", b""), message(b"S", b"")
    t = pgcat(users={"app": {"statement_timeout": 1000}})
    c = RawConn(t.host, t.port)
    c.startup("app", "app", "app")
    c.send(parse("select pg_sleep(0.6), 7") + message(b"D", b"S\0") + flush)
    assert c.read_message()[0] == b"1" and c.read_message()[0] == b"t" and c.read_message()[0] == b"T"
    time.sleep(1.5)  # thinking, with the answer in hand
    c.send(bind + execute + sync)
    assert c.read_until_ready() == [["", "7"]]
    # A flushed Execute that takes longer than the limit: FATAL 57014 after about a second, not after 3 s.
    c.send(parse("select pg_sleep(3)") + bind + execute + flush)
    start = time.monotonic()
    error = c.read_error()
    assert error.sqlstate == "57014" and "pool statement timeout" in error.message, error.fields
    assert time.monotonic() - start < 2.5


def test_query_logger_logs_a_batch_split_across_reads_once(pgcat, cluster, tables):
    """With read/write splitting a Parse waits at the pooler for the rest of its batch; it is logged once, not once
    per read that brings more of the batch."""
    import struct

    from pgwire import RawConn, message

    servers = [["127.0.0.1", cluster.primary, "primary"], ["127.0.0.1", cluster.replica1, "replica"]]
    t = pgcat(servers=servers, users=["app"], pool={"query_parser_enabled": True,
                                                     "query_parser_read_write_splitting": True,
                                                     "plugins": {"query_logger": {"enabled": True}}})
    c = RawConn(t.host, t.port)
    c.startup("app", "app", "app")
    c.send(message(b"P", b"\0select 4646 as split_batch\0" + struct.pack("!H", 0)))
    time.sleep(0.3)
    c.send(message(b"B", b"\0\0" + struct.pack("!HHH", 0, 0, 0)))
    time.sleep(0.3)
    c.send(message(b"E", b"\0" + struct.pack("!i", 0)) + message(b"S", b""))
    assert c.read_until_ready() == [["4646"]]
    c.terminate()
    assert t.log().count("select 4646 as split_batch") == 1, t.log()[-3000:]
