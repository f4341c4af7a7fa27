"""Simple-query basics through the pooler with psql (and the raw protocol client for start-up parameters)."""

import pytest

from pgwire import RawConn
from support import psql


def test_select_1(pgcat):
    t = pgcat()
    assert psql(t, "select 1").stdout.strip() == "1"


def test_multi_statement_query_string(pgcat):
    t = pgcat()
    # psql sends the whole -c string as one Query message; psql 15 prints every result
    r = psql(t, "select 1; select 2")
    assert r.stdout.split() == ["1", "2"]


def test_error_inside_transaction_then_rollback(pgcat):
    t = pgcat()
    script = "begin;\nselect 1/0;\nselect 1;\nrollback;\nselect 42;\n"
    r = psql(t, stdin=script, on_error_stop=False)
    assert "division by zero" in r.stderr
    assert "current transaction is aborted" in r.stderr
    assert r.stdout.split() == ["42"], r.stdout


def test_error_outside_transaction_keeps_connection(pgcat):
    t = pgcat()
    r = psql(t, stdin="select 1/0;\nselect 3;\n", on_error_stop=False)
    assert "division by zero" in r.stderr
    assert r.stdout.split() == ["3"]


def test_error_with_on_error_stop_fails_psql(pgcat):
    t = pgcat()
    r = psql(t, "select 1/0", check=False)
    assert r.returncode != 0
    assert "ERROR:  division by zero" in r.stderr


def test_transaction_commit_visible(pgcat, primary):
    table = primary.make_table("it_basic_commit")
    t = pgcat()
    psql(t, stdin=f"begin;\ninsert into {table} values (1, 'a');\ninsert into {table} values (2, 'b');\ncommit;\n")
    assert primary.value(f"select count(*) from {table}") == 2


def test_show_server_version(pgcat):
    t = pgcat()
    r = psql(t, "show server_version")
    assert r.stdout.strip().startswith("15"), r.stdout


def test_startup_parameter_status(pgcat):
    """Clients (asyncpg, JDBC) parse these ParameterStatus messages at start-up."""
    t = pgcat()
    with RawConn(t.host, t.port) as c:
        c.startup("app", "app", "app")
        assert c.parameters.get("server_version", "").startswith("15"), c.parameters
        assert c.parameters.get("client_encoding") == "UTF8", c.parameters
        assert c.parameters.get("standard_conforming_strings") == "on", c.parameters
        assert c.txn_status == "I"
        assert c.query("select 7") == [["7"]]


def test_application_name_reaches_server(pgcat):
    t = pgcat()
    r = psql(t, "select current_setting('application_name')", conninfo="application_name=itest_app_name")
    assert r.stdout.strip() == "itest_app_name"


def test_application_name_per_client_on_shared_server(pgcat):
    """Two clients sharing one server connection (pool_size 1) each see their own application_name."""
    t = pgcat(pool_size=1)
    with t.connect(application_name="alpha") as a, t.connect(application_name="beta") as b:
        for _ in range(3):
            assert a.execute("select current_setting('application_name')").fetchone()[0] == "alpha"
            assert b.execute("select current_setting('application_name')").fetchone()[0] == "beta"


def test_large_result_set(pgcat):
    t = pgcat()
    r = psql(t, "select g, repeat('x', 100) from generate_series(1, 50000) g")
    lines = r.stdout.splitlines()
    assert len(lines) == 50000
    assert lines[-1] == "50000|" + "x" * 100


def test_large_query_text(pgcat):
    t = pgcat()
    literal = "y" * 200_000
    r = psql(t, stdin=f"select length('{literal}');\n")
    assert r.stdout.strip() == "200000"


def test_many_sequential_connections(pgcat):
    t = pgcat(pool_size=2)
    for i in range(20):
        assert psql(t, f"select {i}").stdout.strip() == str(i)
