"""Session state in transaction mode: what one client sets on a server connection must not reach the next client
(SET/RESET → RESET ALL, SQL-level PREPARE → DEALLOCATE ALL before reuse), while the reported parameters a client
chose (application_name, TimeZone, ...) follow that client to every server connection it uses."""

import psycopg
import pytest

from support import ensure_role

pytestmark = pytest.mark.pooler_only


def show(conn, name: str) -> str:
    return conn.execute(f"show {name}").fetchone()[0]


def test_set_does_not_leak_to_the_next_client(pgcat):
    t = pgcat(pool_size=1)
    with t.connect() as a, t.connect() as b:
        default_path = show(b, "search_path")
        a.execute("set search_path to pg_catalog")
        a.execute("set statement_timeout = 12345")
        assert show(b, "search_path") == default_path
        assert show(b, "statement_timeout") == "0"


def test_reported_parameters_another_client_set_do_not_reach_a_client_that_never_set_them(pgcat):
    t = pgcat(pool_size=1)
    with t.connect() as b:
        zone, style = show(b, "timezone"), show(b, "datestyle")
    with t.connect() as a, t.connect() as b:
        a.execute("set timezone = 'Asia/Tokyo'")
        a.execute("set datestyle = 'German'")
        assert (show(b, "timezone"), show(b, "datestyle")) == (zone, style)
        assert (show(a, "timezone"), show(a, "datestyle")) == ("Asia/Tokyo", "German, DMY")
        assert (show(b, "timezone"), show(b, "datestyle")) == (zone, style)


def test_set_role_does_not_leak_to_the_next_client(pgcat, cluster):
    """RESET ALL leaves the role alone (PostgreSQL's GUC_NO_RESET_ALL): the cleanup resets it by itself."""
    ensure_role(cluster, "pgcat_set_role")
    t = pgcat(pool_size=1)
    with t.connect() as a, t.connect() as b:
        a.execute("set role pgcat_set_role")
        assert b.execute("select current_user").fetchone()[0] == "app"
        a.execute("set session authorization app")
        assert b.execute("select current_user, session_user").fetchone() == ("app", "app")


@pytest.mark.parametrize("how", ["select", "prepared", "sql_prepare", "do_block", "role"])
def test_set_config_does_not_leak_to_the_next_client(pgcat, cluster, how):
    """set_config(name, value, false) changes the session like SET, but its command tag is SELECT: the pooler
    sees the call in the text (before, a tenant id a row-level policy reads, a search_path or even a role reached
    the next client on the same server connection)."""
    ensure_role(cluster, "pgcat_set_role")
    t = pgcat(pool_size=1)
    with t.connect() as b:
        default_path = show(b, "search_path")
    call = "select set_config('app.tenant_id', '42', false), set_config('search_path', 'pg_catalog', false)"
    with t.connect(prepare_threshold=0 if how == "prepared" else None) as a, t.connect() as b:
        if how == "select":
            a.execute(call)
        elif how == "prepared":  # a named statement of the statement cache, bound twice (prepared once)
            for _ in range(2):
                a.execute("select set_config('app.tenant_id', %s, false), set_config('search_path', %s, false)",
                          ("42", "pg_catalog"))
                assert b.execute("select current_setting('app.tenant_id', true)").fetchone()[0] in ("", None)
        elif how == "sql_prepare":
            a.execute("prepare tenant as " + call)
            b.execute("select 1")  # the PREPARE's server goes to b (reset) and back
            a.execute("execute tenant")
        elif how == "do_block":
            a.execute("do $$ begin perform set_config('app.tenant_id', '42', false); "
                      "perform set_config('search_path', 'pg_catalog', false); end $$")
        else:
            a.execute("select set_config('role', 'pgcat_set_role', false), set_config('app.tenant_id', '42', false), "
                      "set_config('search_path', 'pg_catalog', false)")
        assert b.execute("select current_setting('app.tenant_id', true), current_user").fetchone() in \
            (("", "app"), (None, "app"))
        assert show(b, "search_path") == default_path


def test_set_inside_a_committed_transaction_does_not_leak(pgcat):
    t = pgcat(pool_size=1)
    with t.connect(autocommit=False) as a, t.connect() as b:
        a.execute("set work_mem = '7MB'")
        a.commit()
        assert show(b, "work_mem") != "7MB"


def test_sql_prepare_does_not_leak(pgcat):
    t = pgcat(pool_size=1)
    with t.connect() as a, t.connect() as b:
        a.execute("prepare q as select 1")
        b.execute("prepare q as select 2")  # would fail with 42P05 if A's statement were still there


def test_reported_parameters_follow_their_client(pgcat):
    t = pgcat(pool_size=1)
    with t.connect(application_name="client_b") as b, t.connect() as a:
        a.execute("set application_name = 'client_a'")
        a.execute("set timezone = 'Asia/Tokyo'")
        assert show(b, "application_name") == "client_b"
        assert show(b, "timezone") != "Asia/Tokyo"
        assert show(a, "application_name") == "client_a"
        assert show(a, "timezone") == "Asia/Tokyo"


def test_a_client_without_an_application_name_does_not_run_under_anothers(pgcat):
    """A client that gives no application_name at login runs under the name it was told (ParameterStatus), not under
    the name of the client that used the server connection before it."""
    t = pgcat(pool_size=1)
    with t.connect(application_name="secret_app_a") as a:
        assert show(a, "application_name") == "secret_app_a"
    for _ in range(2):
        with t.connect() as b:
            told = b.info.parameter_status("application_name")
            assert told != "secret_app_a"
            assert show(b, "application_name") == told
        with t.connect(application_name="secret_app_a") as a:
            assert show(a, "application_name") == "secret_app_a"


def test_cleanup_server_connections_false_keeps_state(pgcat):
    """PgCat's `cleanup_server_connections: false`: the pooler resets nothing (documented footgun, kept for
    compatibility)."""
    t = pgcat(pool_size=1, pool={"cleanup_server_connections": False})
    with t.connect() as a, t.connect() as b:
        a.execute("set statement_timeout = 12345")
        assert show(b, "statement_timeout") == "12345ms"


def test_sql_prepare_is_replayed_where_execute_lands(pgcat):
    """A client's SQL-level PREPARE outlives the server connection it ran on: the pooler replays it on whichever
    connection its EXECUTE lands on, even after another client used (and reset) that connection."""
    t = pgcat(pool_size=1)
    with t.connect() as a, t.connect() as b:
        a.execute("prepare double(int) as select $1 * 2")
        b.execute("prepare double(int) as select $1 * 3")  # b's own statement of the same name
        assert a.execute("execute double(21)").fetchone() == (42,)
        assert b.execute("execute double(21)").fetchone() == (63,)
        assert a.execute("execute double(5)").fetchone() == (10,)
        a.execute("deallocate double")
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            a.execute("execute double(1)")
        assert b.execute("execute double(2)").fetchone() == (6,)


def test_set_config_in_an_unnamed_statement_bound_later_does_not_leak(pgcat):
    """lib/pq and pgx prepare the unnamed statement in a unit of its own (Parse, Describe, Sync) and bind it in the
    next: the Bind's server must be marked for reset too (before, the next client saw the tenant id)."""
    import struct

    from pgwire import RawConn, message

    def cstr(text: str) -> bytes:
        return text.encode() + b"\0"

    t = pgcat(pool_size=1)
    with RawConn(t.host, t.port) as a, t.connect() as b:
        a.startup("app", "app", "app")
        a.send(message(b"P", cstr("") + cstr("select set_config('app.tenant_id', '42', false)") + struct.pack("!H", 0))
               + message(b"D", b"S" + cstr("")) + message(b"S", b""))
        while a.read_message()[0] != b"Z":
            pass
        a.send(message(b"B", cstr("") + cstr("") + struct.pack("!HHH", 0, 0, 0)) + message(b"E", cstr("") + struct.pack("!i", 0))
               + message(b"S", b""))
        kinds = []
        while (kind := a.read_message()[0]) != b"Z":
            kinds.append(kind)
        assert b"D" in kinds, kinds  # set_config ran
        assert b.execute("select current_setting('app.tenant_id', true)").fetchone()[0] in ("", None)
