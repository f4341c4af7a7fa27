"""Settings a client asks for at login: the `options` startup parameter (libpq's `options`, PGOPTIONS) and startup
parameters PostgreSQL takes as settings (asyncpg's `server_settings`). They hold for the whole session as they would
on PostgreSQL, on every server connection the client uses, and never reach another client; a value PostgreSQL would
refuse fails the login with PostgreSQL's error. Unmarked tests also pass straight against PostgreSQL
(PGCAT_TEST_DIRECT=1)."""

import asyncio

import psycopg
import pytest

from pgwire import PgError, RawConn
from support import PASSWORDS, ensure_role


def show(conn, name: str) -> str:
    return conn.execute(f"show {name}").fetchone()[0]


def refused_login(t, **params) -> PgError:
    with RawConn(t.host, t.port) as c:
        with pytest.raises(PgError) as refused:
            c.startup("app", "app", PASSWORDS["app"], **params)
        return refused.value


@pytest.mark.parametrize("name, value", [("client_encoding", "BOGUS"), ("DateStyle", "bogus"),
                                         ("TimeZone", "Nowhere/Land"), ("IntervalStyle", "nope"),
                                         ("standard_conforming_strings", "maybe")])
def test_a_reported_parameter_postgres_refuses_fails_the_login(pgcat, name, value):
    """A reported parameter in the startup packet with a value PostgreSQL refuses fails the login with FATAL 22023,
    as PostgreSQL does. Before stop 25 the login succeeded, every replay of the client's parameters failed unseen,
    and the session ran with the previous client's application_name and TimeZone (exploratory round)."""
    t = pgcat(pool_size=1)
    with RawConn(t.host, t.port) as prev:  # leaves its values on the only server connection
        prev.startup("app", "app", PASSWORDS["app"], application_name="previous_client", TimeZone="Asia/Tokyo")
        prev.query("select 1")
    e = refused_login(t, **{name: value})
    assert (e.severity, e.sqlstate) == ("FATAL", "22023"), e.fields
    with RawConn(t.host, t.port) as c:  # a valid value still logs in, with its own settings
        c.startup("app", "app", PASSWORDS["app"], TimeZone="Europe/Paris")
        [[zone, app]] = c.query("select current_setting('TimeZone'), current_setting('application_name')")
        assert zone == "Europe/Paris" and app != "previous_client", (zone, app)


def test_options_setting_holds_for_the_session(pgcat):
    t = pgcat()
    with t.connect(options="-c statement_timeout=1234") as conn:
        for _ in range(3):
            assert show(conn, "statement_timeout") == "1234ms"
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("select pg_sleep(3)")
        assert show(conn, "statement_timeout") == "1234ms"


def test_options_forms_as_postgres_reads_them(pgcat):
    """`-c name=value`, `-cname=value` and `--name=value`; a dash in a name is an underscore; a backslash keeps a
    space inside a value."""
    t = pgcat()
    options = r"-c work_mem=7MB -cmaintenance_work_mem=9MB --lock-timeout=4s -c search_path=pg_catalog,\ public"
    with t.connect(options=options) as conn:
        assert show(conn, "work_mem") == "7MB"
        assert show(conn, "maintenance_work_mem") == "9MB"
        assert show(conn, "lock_timeout") == "4s"
        assert show(conn, "search_path") == "pg_catalog, public"


def test_a_value_beyond_ascii_under_another_client_encoding(pgcat):
    """The value reaches the server as the client meant it when the client's encoding is not UTF-8: the pooler's
    own statements applying it must not depend on the encoding of the server connection they run on."""
    t = pgcat(pool_size=1)
    with t.connect(client_encoding="LATIN1") as first:  # leaves the one server connection in LATIN1
        assert first.execute("show client_encoding").fetchone()[0] == "LATIN1"
    with t.connect(options="-c pgcat_it.greeting=h\u00e9llo", client_encoding="LATIN1") as conn:
        for _ in range(3):
            assert conn.execute("select current_setting('pgcat_it.greeting')").fetchone()[0] == "h\u00e9llo"


def test_reported_parameter_from_options_is_reported_at_login(pgcat):
    t = pgcat()
    with t.connect(options="-c TimeZone=Asia/Tokyo -c application_name=from_options") as conn:
        assert conn.info.parameter_status("TimeZone") == "Asia/Tokyo"
        assert show(conn, "timezone") == "Asia/Tokyo"
        assert show(conn, "application_name") == "from_options"


def test_startup_parameter_taken_as_setting(pgcat):
    t = pgcat()
    with RawConn(t.host, t.port) as c:
        c.startup("app", "app", PASSWORDS["app"], statement_timeout="4321", extra_float_digits="2")
        assert c.query("show statement_timeout") == [["4321ms"]]
        assert c.query("show extra_float_digits") == [["2"]]
        c.terminate()


def test_asyncpg_server_settings(pgcat):
    t = pgcat()

    async def run():
        conn = await t.aconnect(server_settings={"statement_timeout": "2500", "search_path": "pg_catalog"})
        try:
            return [await conn.fetchval("show statement_timeout") for _ in range(2)] + [await conn.fetchval("show search_path")]
        finally:
            await conn.close()

    assert asyncio.run(run()) == ["2500ms", "2500ms", "pg_catalog"]


@pytest.mark.parametrize("params, sqlstate", [
    ({"options": "-c statement_timeout=soon"}, "22023"),  # an invalid value
    ({"options": "-c TimeZone=Nowhere/Atlantis"}, "22023"),  # of a reported parameter too
    ({"options": "-c no_such_setting=1"}, "42704"),  # an unknown setting
    ({"no_such_setting": "1"}, "42704"),  # also as a startup parameter of its own
    ({"options": "-c statement_timeout"}, "42601"),  # no value
], ids=["invalid-value", "invalid-reported", "unknown-in-options", "unknown-parameter", "no-value"])
def test_settings_postgres_would_refuse_refuse_the_login(pgcat, params, sqlstate):
    t = pgcat()
    e = refused_login(t, **params)
    assert (e.severity, e.sqlstate) == ("FATAL", sqlstate), e.fields


@pytest.mark.pooler_only  # PostgreSQL applies -B (shared_buffers) and refuses it later, with 55P02
def test_server_switch_refused_0a000(pgcat):
    t = pgcat()
    e = refused_login(t, options="-B 100")
    assert (e.severity, e.sqlstate) == ("FATAL", "0A000"), e.fields


@pytest.mark.pooler_only
def test_a_refused_login_leaves_the_pool_serving(pgcat):
    t = pgcat(pool_size=1)
    for _ in range(3):
        refused_login(t, options="-c statement_timeout=soon")
    with t.connect() as conn:
        assert show(conn, "statement_timeout") == "0"


@pytest.mark.pooler_only
def test_login_settings_never_reach_another_client(pgcat):
    """One server connection, taken in turns: each client sees its own settings, one without any sees the
    server's defaults."""
    t = pgcat(pool_size=1)
    with (
        t.connect(options="-c statement_timeout=1234 -c work_mem=7MB") as a,
        t.connect(options="-c statement_timeout=5678") as b,
        t.connect() as plain,
    ):
        default_work_mem = show(plain, "work_mem")
        for _ in range(2):
            assert show(a, "statement_timeout") == "1234ms"
            assert show(a, "work_mem") == "7MB"
            assert show(b, "statement_timeout") == "5678ms"
            assert show(b, "work_mem") == default_work_mem
            assert show(plain, "statement_timeout") == "0"
            assert show(plain, "work_mem") == default_work_mem


@pytest.mark.pooler_only
def test_login_settings_come_back_after_a_set_in_transaction_mode(pgcat):
    """In transaction mode a SET lasts for its transaction's server connection only (then RESET ALL, as for any
    SET); the login's settings are applied again on the next one."""
    t = pgcat(pool_size=1)
    with t.connect(options="-c statement_timeout=1234") as a, t.connect() as b:
        a.execute("set statement_timeout = 99")
        assert show(b, "statement_timeout") == "0"
        assert show(a, "statement_timeout") == "1234ms"


@pytest.mark.pooler_only
def test_login_settings_in_session_mode(pgcat):
    t = pgcat(pool_mode="session", pool_size=1)
    with t.connect(options="-c statement_timeout=1234") as a:
        assert show(a, "statement_timeout") == "1234ms"
    with t.connect() as b:
        assert show(b, "statement_timeout") == "0"


def test_role_from_options(pgcat, cluster):
    ensure_role(cluster, "pgcat_options_role")
    t = pgcat()
    with t.connect(options="-c role=pgcat_options_role") as conn:
        for _ in range(2):
            assert conn.execute("select current_user").fetchone()[0] == "pgcat_options_role"


@pytest.mark.pooler_only
def test_role_from_options_never_reaches_another_client(pgcat, cluster):
    """Also after the client's own SET: RESET ALL leaves the role alone, so the cleanup resets it by itself."""
    ensure_role(cluster, "pgcat_options_role")
    t = pgcat(pool_size=1)
    with t.connect(options="-c role=pgcat_options_role") as a, t.connect() as b:
        assert a.execute("select current_user").fetchone()[0] == "pgcat_options_role"
        assert b.execute("select current_user").fetchone()[0] == "app"
        a.execute("set work_mem = '5MB'")
        assert b.execute("select current_user").fetchone()[0] == "app"
        assert a.execute("select current_user").fetchone()[0] == "pgcat_options_role"


@pytest.mark.pooler_only
def test_settings_refused_after_login_fail_the_request_not_silently(pgcat, cluster):
    """The role was revoked after the login's check: the next server connection refuses it, and the client's
    statement fails with PostgreSQL's error instead of running as `app`; other clients go on."""
    ensure_role(cluster, "pgcat_revoked_role")
    t = pgcat(pool_size=1)
    try:
        with t.connect(options="-c role=pgcat_revoked_role") as a, t.connect() as b:
            assert a.execute("select current_user").fetchone()[0] == "pgcat_revoked_role"
            ensure_role(cluster, "pgcat_revoked_role", member=False)
            assert b.execute("select current_user").fetchone()[0] == "app"  # the connection moves to b (RESET)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                a.execute("select current_user")
            assert b.execute("select current_user").fetchone()[0] == "app"
    finally:
        ensure_role(cluster, "pgcat_revoked_role")


@pytest.mark.pooler_only
def test_idle_session_timeout_refused_in_transaction_mode(pgcat):
    t = pgcat()
    e = refused_login(t, options="-c idle_session_timeout=5s")
    assert (e.severity, e.sqlstate) == ("FATAL", "0A000"), e.fields


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_a_reset_brings_back_the_login_values(pgcat, mode):
    """As in PostgreSQL, a session's defaults are the values it logged in with: RESET ALL, DISCARD ALL, RESET name
    and SET name TO DEFAULT bring those back (asyncpg's pool runs RESET ALL whenever a connection is released), not
    the server's own defaults, and the ParameterStatus the client is sent says so. (Before, TimeZone, DateStyle and
    application_name fell back to the server's UTC, ISO and 'pgcat', as they do in PgBouncer.)"""
    t = pgcat(pool_mode=mode, pool_size=2)
    settings = {"TimeZone": "Asia/Tokyo", "DateStyle": "SQL, DMY", "application_name": "myapp",
                "statement_timeout": "2500"}
    names = ("timezone", "datestyle", "application_name", "statement_timeout")
    login = ("Asia/Tokyo", "SQL, DMY", "myapp", "2500ms")

    async def run():
        conn = await t.aconnect(server_settings=settings)

        async def values():
            return tuple([await conn.fetchval(f"show {name}") for name in names])

        try:
            assert await values() == login
            asyncpg_pool_reset = "SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;"
            for reset in ("RESET ALL", "DISCARD ALL", "reset all;", asyncpg_pool_reset, "/* app=x */ RESET ALL",
                          "RESET ALL -- traced", "SET TimeZone=DEFAULT; RESET datestyle; reset application_name; "
                          "reset statement_timeout"):
                await conn.execute("set timezone = 'UTC'; set datestyle = 'ISO, MDY'; set application_name = 'x';"
                                   " set statement_timeout = 10")
                await conn.execute(reset)
                assert await values() == login, reset
                assert conn.get_settings().TimeZone == "Asia/Tokyo", reset  # the ParameterStatus it was sent
            await conn.execute("set timezone = 'UTC'; set datestyle = 'ISO, MDY'")
            await conn.execute("reset timezone")
            assert (await conn.fetchval("show timezone"), await conn.fetchval("show datestyle")) == ("Asia/Tokyo", "ISO, MDY")
            await conn.execute("set timezone = 'UTC'")
            await conn.execute("SET TIME ZONE DEFAULT")
            assert await conn.fetchval("show timezone") == "Asia/Tokyo"
            await conn.execute("set statement_timeout = 10")
            await conn.execute("SET statement_timeout TO DEFAULT")
            assert await conn.fetchval("show statement_timeout") == "2500ms"
            # Inside a transaction that rolls back, the reset is undone with it, as in PostgreSQL.
            await conn.execute("set timezone = 'UTC'")
            await conn.execute("begin")
            await conn.execute("reset all")
            assert await conn.fetchval("show timezone") == "Asia/Tokyo"
            await conn.execute("rollback")
            assert await conn.fetchval("show timezone") == "UTC"
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_a_reset_through_the_extended_protocol_brings_back_the_login_values(pgcat, mode):
    """The same through Parse/Bind/Execute: a named prepared RESET ALL (psycopg prepares a statement after five
    runs, or at once with prepare=True), an unnamed one (psycopg's pipeline mode), a prepared RESET name run again
    later, and asyncpg's fetch (prepared through its statement cache). Before stop 25 only a simple Query restored
    the login values."""
    t = pgcat(pool_mode=mode, pool_size=2)
    with t.connect(options="-c TimeZone=Asia/Tokyo -c DateStyle=SQL,DMY", prepare_threshold=5) as c:
        for n in range(3):  # a named prepared statement
            c.execute("set timezone to 'UTC'")
            c.execute("RESET ALL", prepare=True)
            assert show(c, "timezone") == "Asia/Tokyo", n
            assert c.info.parameter_status("TimeZone") == "Asia/Tokyo", n
        for n in range(2):  # in pipeline mode psycopg sends even a statement without parameters as an unnamed Parse
            c.execute("set timezone to 'UTC'")
            with c.pipeline():
                c.execute("RESET ALL")
            assert show(c, "timezone") == "Asia/Tokyo", n
        c.execute("set timezone to 'UTC'")
        c.execute("\n  RESET ALL", prepare=True)  # (white space first)
        assert show(c, "timezone") == "Asia/Tokyo"
        for n in range(2):
            c.execute("set timezone to 'UTC'; set datestyle to 'ISO, MDY'")
            c.execute("reset timezone", prepare=True)
            assert (show(c, "timezone"), show(c, "datestyle")) == ("Asia/Tokyo", "ISO, MDY"), n
        c.execute("set timezone to 'UTC'")
        c.execute("select 1", prepare=True)  # another prepared statement: no restore
        assert show(c, "timezone") == "UTC"

    async def run():
        conn = await t.aconnect(server_settings={"TimeZone": "Asia/Tokyo"}, statement_cache_size=100)
        try:
            for _ in range(2):
                await conn.execute("set timezone = 'UTC'")
                await conn.fetch("RESET ALL")
                assert await conn.fetchval("show timezone") == "Asia/Tokyo"
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_a_restore_keeps_a_later_set_and_skips_a_reset_that_did_not_run(pgcat, mode):
    """The restore after a reset runs once the reset's Query or unit is answered: a SET after the reset in the same
    Query or pipeline keeps its value, and a reset the server skipped (an error earlier in the unit) or that failed
    restores nothing, as in PostgreSQL. (Before, the restore went right after the client's Sync or Query: it undid
    the later SET and ran even when the reset had not.)"""
    t = pgcat(pool_mode=mode, pool_size=2)
    login = ("Asia/Tokyo", "SQL, DMY")
    with t.connect(options="-c TimeZone=Asia/Tokyo -c DateStyle=SQL,DMY") as c:
        def values():
            return show(c, "timezone"), show(c, "datestyle")

        # One simple Query: RESET ALL, then a SET of one setting.
        c.execute("set timezone to 'UTC'; set datestyle to 'ISO, MDY'")
        c.execute("reset all; set timezone to UTC")
        assert values() == ("UTC", "SQL, DMY")
        # One pipeline (one Sync): the same through Parse/Bind/Execute.
        c.execute("set timezone to 'Europe/Paris'; set datestyle to 'ISO, MDY'")
        with c.pipeline():
            c.execute("RESET ALL")
            c.execute("SET TimeZone TO 'UTC'")
        assert values() == ("UTC", "SQL, DMY")
        # An error before the reset in its unit: the server skipped the reset, so nothing is restored.
        c.execute("set timezone to 'UTC'; set datestyle to 'ISO, MDY'")
        with pytest.raises(psycopg.errors.DivisionByZero):
            with c.pipeline():
                c.execute("select 1/0")
                c.execute("RESET ALL")
        assert values() == ("UTC", "ISO, MDY")
        c.execute("set timezone to 'UTC'")
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("select 1/0; reset all")
        assert values() == ("UTC", "ISO, MDY")
        # A reset in a failed transaction block fails itself: nothing is restored either.
        c.autocommit = False
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("select 1/0")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            c.execute("reset all")
        c.rollback()
        c.autocommit = True
        assert values() == ("UTC", "ISO, MDY")
        # And a plain reset still restores the login values.
        c.execute("reset all")
        assert values() == login


@pytest.mark.pooler_only
def test_a_restore_waits_neither_for_a_split_sync_nor_for_copy_data(pgcat, primary):
    """The restore after a reset waits for the reset's answer, and the client's next messages with it; that wait
    must not hold back what the answer itself needs: the rest of a Sync that came in two reads, or the COPY data
    of a `RESET ALL; COPY ... FROM STDIN` Query (both hung before the review's mends)."""
    import struct
    import time

    from pgwire import RawConn, message

    primary.sql("drop table if exists restore_copy; create table restore_copy (x int)")
    primary.sql("grant all on restore_copy to public")
    t = pgcat(pool_size=2)
    r = RawConn(t.host, t.port)
    r.startup("app", "app", "app", options="-c TimeZone=Asia/Tokyo")
    r.query("set timezone to 'UTC'")
    unit = (message(b"P", b"r\0RESET ALL\0" + struct.pack("!H", 0))
            + message(b"B", b"\0r\0" + struct.pack("!HHH", 0, 0, 0)) + message(b"E", b"\0" + struct.pack("!i", 0))
            + message(b"S", b""))
    r.send(unit[:-2])
    time.sleep(0.2)
    r.send(unit[-2:])
    kinds = []
    while not kinds or kinds[-1] != b"Z":
        kinds.append(r.read_message()[0])
    assert [k for k in kinds if k != b"S"] == [b"1", b"2", b"C", b"Z"], kinds  # (S: ParameterStatus)
    assert r.query("show timezone") == [["Asia/Tokyo"]]
    r.query("set timezone to 'UTC'")
    r.send(message(b"Q", b"RESET ALL; COPY restore_copy FROM STDIN\0"))
    kinds = []
    while not kinds or kinds[-1] != b"G":
        kinds.append(r.read_message()[0])
    r.send(message(b"d", b"1\n2\n") + message(b"c", b""))
    while kinds[-1] != b"Z":
        kinds.append(r.read_message()[0])
    assert [k for k in kinds if k != b"S"] == [b"C", b"G", b"C", b"Z"], kinds
    assert r.query("select count(*) from restore_copy") == [["2"]]
    assert r.query("show timezone") == [["Asia/Tokyo"]]
    r.terminate()


def test_a_discard_all_leaves_no_login_setting_for_the_next_client(pgcat):
    """After a client's DISCARD ALL the pooler sets that client's login settings again; the connection is reset
    before another client gets it (one server connection, so the next client gets the same one)."""
    t = pgcat(pool_size=1)
    with t.connect(options="-c search_path=pg_catalog -c statement_timeout=4321") as a:
        a.execute("discard all")
        assert (show(a, "search_path"), show(a, "statement_timeout")) == ("pg_catalog", "4321ms")
    with t.connect() as b:
        assert (show(b, "search_path"), show(b, "statement_timeout")) == ('"$user", public', "0")
