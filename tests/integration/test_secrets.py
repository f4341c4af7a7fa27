"""No password or verifier ever shows (issue 8): not in the log at trace level, not in any admin SHOW, not in the
Prometheus metrics, not in error messages, whatever the clients do (good and bad logins, queries, admin commands)."""

from __future__ import annotations

import hashlib
import urllib.request

import psycopg
import pytest

from support import free_port

pytestmark = pytest.mark.pooler_only

ADMIN_SECRET = "Adm1n-Secret-77"
CLIENT_SECRET = "Cl1ent-Secret-42"
AQ_SECRET = "Aq-Secret-55"
MD5_STORED = "md5" + hashlib.md5(b"md5_user" + b"md5_user").hexdigest()


def test_secrets_never_show(pgcat, primary):
    verifier = primary.value("select rolpassword from pg_authid where rolname = 'app'")
    metrics_port = free_port()
    users = {
        "app": {"password": CLIENT_SECRET, "server_password": "app", "auth_type": "scram-sha-256"},
        "md5_user": {"password": MD5_STORED, "auth_type": "md5"},
        "plain_user": {"password": verifier, "server_password": "plain_user", "auth_type": "scram-sha-256"},
    }
    t = pgcat(users=users, args=("-l", "trace"), general={
        "admin_password": ADMIN_SECRET, "enable_prometheus_exporter": True, "prometheus_exporter_port": metrics_port,
        "auth_query": "SELECT usename, passwd FROM pg_shadow WHERE usename = $1", "auth_query_user": "aq_reader",
        "auth_query_password": AQ_SECRET})
    secrets = [ADMIN_SECRET, CLIENT_SECRET, AQ_SECRET, MD5_STORED, MD5_STORED[3:], verifier, verifier.split("$")[2]]

    seen: list[str] = []
    with psycopg.connect(host=t.host, port=t.port, user="app", password=CLIENT_SECRET, dbname="app",
                         autocommit=True) as c:
        c.execute("select 1")
    with psycopg.connect(host=t.host, port=t.port, user="md5_user", password="md5_user", dbname="app",
                         autocommit=True) as c:
        c.execute("select 1")
    for user, bad in (("app", "wrong"), ("md5_user", MD5_STORED), ("pgcat_admin", "wrong")):
        with pytest.raises(psycopg.OperationalError) as e:
            psycopg.connect(host=t.host, port=t.port, user=user, password=bad,
                            dbname="pgcat" if user == "pgcat_admin" else "app")
        seen.append(str(e.value))
    with psycopg.connect(host=t.host, port=t.port, user="pgcat_admin", password=ADMIN_SECRET, dbname="pgcat",
                         autocommit=True) as a:
        for what in ("CONFIG", "USERS", "POOLS", "DATABASES", "SERVERS", "CLIENTS", "STATS", "LISTS", "VERSION"):
            seen.extend(repr(row) for row in a.execute(f"SHOW {what}").fetchall())
    seen.append(urllib.request.urlopen(f"http://{t.host}:{metrics_port}/metrics", timeout=10).read().decode())
    seen.append(t.log())
    assert "password" in t.log() or "auth" in t.log()  # the trace log did record the logins
    text = "\n".join(seen)
    for secret in secrets:
        assert secret not in text, f"a secret shows: {secret[:12]}..."
