"""auth_query (issue 8): users listed without a password get it looked up on the server as auth_query_user, with
SCRAM verifiers and MD5 hashes; a bare $1 is bound, a quoted '$1' is an escaped literal; the lookup runs with
search_path pg_catalog; VALID UNTIL in the past and NOLOGIN roles are refused like a wrong password."""

from __future__ import annotations

import psycopg
import pytest

from support import build_config, free_port, to_yaml

pytestmark = pytest.mark.pooler_only

BOUND = "SELECT usename, passwd FROM pg_shadow WHERE usename = $1"
QUOTED = "SELECT usename, passwd FROM pg_shadow WHERE usename = '$1'"


@pytest.fixture(scope="module")
def aq_roles(primary):
    with primary.connect(dbname="postgres") as su:
        su.execute("""
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'aq_reader') THEN CREATE ROLE aq_reader LOGIN SUPERUSER; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'aq_expired') THEN CREATE ROLE aq_expired LOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'aq_nologin') THEN CREATE ROLE aq_nologin NOLOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'aq_rotate') THEN CREATE ROLE aq_rotate LOGIN; END IF;
END $$""")
        su.execute("SET password_encryption = 'scram-sha-256'")
        su.execute("ALTER ROLE aq_reader PASSWORD 'aq_reader'")
        su.execute("ALTER ROLE aq_expired PASSWORD 'aq_expired' VALID UNTIL '2001-01-01'")
        su.execute("ALTER ROLE aq_nologin PASSWORD 'aq_nologin'")
        su.execute("ALTER ROLE aq_rotate PASSWORD 'rotate1'")
        su.execute("GRANT ALL ON SCHEMA public TO aq_rotate, aq_expired")
    with primary.connect(dbname="app") as su:
        # A trap: with the role's own search_path, an unqualified pg_shadow would be this table.
        su.execute("CREATE SCHEMA IF NOT EXISTS aq_evil")
        su.execute("CREATE TABLE IF NOT EXISTS aq_evil.pg_shadow (usename name, passwd text)")
        su.execute("TRUNCATE aq_evil.pg_shadow")
        su.execute("INSERT INTO aq_evil.pg_shadow VALUES ('app', 'md5' || md5('evil' || 'app')), "
                   "('md5_user', 'md5' || md5('evil' || 'md5_user'))")
    with primary.connect(dbname="postgres") as su:
        su.execute("ALTER ROLE aq_reader SET search_path = aq_evil, pg_catalog")
    return True


def aq_config(cluster, port, query=BOUND, users=None, **general) -> dict:
    users = users or {"app": {"auth_type": "scram-sha-256"}, "md5_user": {"auth_type": "md5"}}
    g = {"auth_query": query, "auth_query_user": "aq_reader", "auth_query_password": "aq_reader"}
    g.update(general)
    cfg = build_config(cluster, port, users=users, general=g)
    for pool in cfg["pools"].values():
        for entry in pool["users"].values():
            entry.pop("password", None)
    return cfg


def login(t, user, password, **kw):
    return psycopg.connect(host=t.host, port=t.port, user=user, password=password, dbname="app", autocommit=True,
                           connect_timeout=10, **kw)


def test_trap_is_real(aq_roles, primary):
    """Without the pooler's search_path the lookup role would read the planted table."""
    with primary.connect() as c:
        c.execute("SET ROLE aq_reader")
        c.execute("SET search_path = aq_evil, pg_catalog")
        assert c.execute("SELECT passwd FROM pg_shadow WHERE usename = 'app'").fetchone()[0].startswith("md5")


@pytest.mark.parametrize("query", [BOUND, QUOTED], ids=["bound", "quoted"])
def test_scram_and_md5_secrets(pgcat, cluster, aq_roles, query):
    t = pgcat(config=aq_config(cluster, free_port(), query=query))
    with login(t, "app", "app") as c:  # SCRAM verifier from pg_shadow; the server login uses the ClientKey
        assert c.execute("select current_user").fetchone()[0] == "app"
    with login(t, "md5_user", "md5_user") as c:  # MD5 hash; the server login answers md5 with it
        assert c.execute("select current_user").fetchone()[0] == "md5_user"
    for user, wrong in (("app", "nope"), ("app", "evil"), ("md5_user", "evil")):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            login(t, user, wrong)


def test_expired_and_nologin_roles_are_refused(pgcat, cluster, aq_roles):
    users = {"aq_expired": {"auth_type": "scram-sha-256"}, "aq_nologin": {"auth_type": "scram-sha-256"}}
    # pg_authid (unlike pg_shadow) lists NOLOGIN roles too: the pooler's own check must refuse them
    query = "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = $1"
    t = pgcat(config=aq_config(cluster, free_port(), query=query, users=users))
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        login(t, "aq_expired", "aq_expired")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        login(t, "aq_nologin", "aq_nologin")
    assert "VALID UNTIL" in t.log() and "NOLOGIN" in t.log()


def test_md5_secret_with_scram_auth_type_is_refused(pgcat, cluster, aq_roles):
    t = pgcat(config=aq_config(cluster, free_port(),
                               users={"md5_user": {"auth_type": "scram-sha-256"}}))
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        login(t, "md5_user", "md5_user")


def test_changed_password_is_picked_up(pgcat, cluster, primary, aq_roles):
    t = pgcat(config=aq_config(cluster, free_port(),
                               users={"aq_rotate": {"auth_type": "scram-sha-256"}}))
    held = login(t, "aq_rotate", "rotate1")
    try:
        with primary.connect(dbname="postgres") as su:
            su.execute("ALTER ROLE aq_rotate PASSWORD 'rotate2'")
        # the cached secret may answer the first attempt; a failure makes the next one ask again
        try:
            login(t, "aq_rotate", "rotate2").close()
        except psycopg.OperationalError:
            login(t, "aq_rotate", "rotate2").close()
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            login(t, "aq_rotate", "rotate1")
        assert held.execute("select 1").fetchone()[0] == 1  # a client already in keeps working
    finally:
        held.close()
        with primary.connect(dbname="postgres") as su:
            su.execute("ALTER ROLE aq_rotate PASSWORD 'rotate1'")


def test_lookup_failure_is_a_clear_error(pgcat, cluster, aq_roles):
    t = pgcat(config=aq_config(cluster, free_port(), auth_query_password="wrong"))
    with pytest.raises(psycopg.OperationalError, match="auth_query failed"):
        login(t, "app", "app")
    assert "auth_query failed" in t.log()


def test_connected_clients_go_on_after_a_reload_replaces_the_pool(pgcat, cluster, aq_roles):
    """The replacement pool keeps the secret auth_query found and the ClientKey of the client's SCRAM proof, so a
    connected client's next query opens a server connection without a new login (before: "no usable password")."""
    port = free_port()
    t = pgcat(config=aq_config(cluster, port))
    with login(t, "app", "app") as c:
        assert c.execute("select current_user").fetchone()[0] == "app"
        t.config_path.write_text(to_yaml(aq_config(cluster, port, idle_timeout=23456)))
        with psycopg.connect(host=t.host, port=t.port, user="pgcat_admin", password="pgcat_admin", dbname="pgcat",
                             autocommit=True) as a:
            assert a.execute("RELOAD").statusmessage == "RELOAD"
        for i in range(3):
            assert c.execute("select %s::int", (i,)).fetchone() == (i,)


def test_reload_applies_a_changed_general_auth_query_password(pgcat, cluster, aq_roles):
    """auth_query set in `general` is part of every pool it reaches: rotating its password and reloading must take
    effect (before, the pools were kept with the old password and every lookup failed until a restart)."""
    port = free_port()
    t = pgcat(config=aq_config(cluster, port, auth_query_password="wrong"))
    with pytest.raises(psycopg.OperationalError, match="auth_query failed"):
        login(t, "app", "app")
    t.config_path.write_text(to_yaml(aq_config(cluster, port)))
    with psycopg.connect(host=t.host, port=t.port, user="pgcat_admin", password="pgcat_admin", dbname="pgcat",
                         autocommit=True) as a:
        assert a.execute("RELOAD").statusmessage == "RELOAD"
        shown = {row[0]: row[1] for row in a.execute("SHOW CONFIG").fetchall()}
        assert shown["auth_query"] == BOUND and shown["auth_query_user"] == "aq_reader"
        assert "auth_query_password" not in shown
    with login(t, "app", "app") as c:
        assert c.execute("select current_user").fetchone()[0] == "app"


def test_connected_clients_go_on_after_a_reload_changes_the_auth_query(pgcat, cluster, aq_roles):
    """A changed auth_query (a rotated password, a new query) replaces the pools that use it; their connected clients
    keep what the lookup found, so their next transactions open server connections (before: 08006 "no usable
    password" until another client of the user logged in)."""
    port = free_port()
    t = pgcat(config=aq_config(cluster, port))
    with login(t, "app", "app") as c:
        assert c.execute("select current_user").fetchone()[0] == "app"
        t.config_path.write_text(to_yaml(aq_config(cluster, port, query=QUOTED)))
        with psycopg.connect(host=t.host, port=t.port, user="pgcat_admin", password="pgcat_admin", dbname="pgcat",
                             autocommit=True) as a:
            assert a.execute("RELOAD").statusmessage == "RELOAD"
        for i in range(3):
            assert c.execute("select %s::int", (i,)).fetchone() == (i,)
