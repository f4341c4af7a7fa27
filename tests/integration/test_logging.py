"""Logs: logfmt or JSON lines with client ids; connection logging per log_client_connections and
log_client_disconnections; a password never appears in the log, whatever the level."""

import json

import psycopg
import pytest

pytestmark = pytest.mark.pooler_only

SECRET = "Zq9-very-secret-pw"


@pytest.fixture
def secret_role(primary):
    drop = ("do $$ begin if exists (select from pg_roles where rolname = 'log_secret_user') then "
            "revoke all on database app from log_secret_user; drop role log_secret_user; end if; end $$")
    primary.sql(drop)
    primary.sql(f"create role log_secret_user login password '{SECRET}'")
    yield "log_secret_user"
    primary.sql(drop)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_connection_logging_and_no_passwords(pgcat, secret_role, fmt):
    users = {secret_role: {"password": SECRET, "auth_type": "scram-sha-256"},
             "md5_user": {"auth_type": "md5"}}
    t = pgcat(users=users, args=("-l", "trace", "-F", fmt),
              general={"log_client_connections": True, "log_client_disconnections": True})
    conninfo = t.conninfo(user=secret_role, password=SECRET)
    with psycopg.connect(conninfo, autocommit=True) as c:
        c.execute("select %s::text", (SECRET + "-as-a-parameter",))
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(t.conninfo(user=secret_role, password=SECRET + "-wrong")).close()
    with t.connect(user="md5_user") as c:
        c.execute("select 1")
    log = t.log()
    assert SECRET not in log, "a password reached the log"
    lines = [line for line in log.splitlines() if line.strip()]
    if fmt == "json":
        records = [json.loads(line) for line in lines]  # every line is one JSON object
        connected = [r for r in records if r.get("msg") == "client connected"]
        disconnected = [r for r in records if r.get("msg") == "client disconnected"]
        assert connected and all("client_id" in r for r in connected), records[:5]
        assert any(r.get("user") == secret_role for r in connected)
        assert disconnected and all("session_seconds" in r for r in disconnected)
    else:
        assert any("client connected" in line and "client_id=" in line for line in lines)
        assert any("client disconnected" in line for line in lines)


def test_connection_logging_off_by_default(pgcat):
    t = pgcat()
    with t.connect() as c:
        c.execute("select 1")
    assert "client connected" not in t.log()


def test_pgcats_own_command_line_values_are_accepted(pgcat):
    """PgCat's systemd units and Helm values pass `-l warn` (tracing's name), `-F debug` or `-F structured`, and
    `-n/--no-color`: the pooler starts with them (before: "unknown log level warn", "unknown option -n")."""
    for args in (("-l", "warn", "-F", "debug", "-n"), ("--log-level", "WARN", "--log-format", "structured", "--no-color")):
        t = pgcat(args=args)
        with t.connect() as c:
            assert c.execute("select 1").fetchone() == (1,)
    t = pgcat(args=("-l", "warn", "-F", "structured"), general={"log_client_connections": True})
    with t.connect() as c:
        c.execute("select 1")
    assert "client connected" not in t.log(), "an info line at level warn"
