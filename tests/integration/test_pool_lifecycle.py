"""Pool sizing over time: min_pool_size, idle_timeout, server_lifetime; client limits (max_client_conn,
max_client_connections); passwords stored as md5 hashes or SCRAM verifiers in the config."""

import hashlib
import time

import psycopg
import pytest

from support import pooler_ports_to, wait_for

pytestmark = pytest.mark.pooler_only


def backend_pid(conn) -> int:
    return conn.execute("select pg_backend_pid()").fetchone()[0]


def test_min_pool_size_opens_connections_without_clients(pgcat, cluster):
    t = pgcat(pool_size=4, users={"app": {"min_pool_size": 2}})
    assert wait_for(lambda: len(pooler_ports_to(t.proc.pid, cluster.primary)) == 2), \
        pooler_ports_to(t.proc.pid, cluster.primary)


def test_idle_timeout_closes_idle_connections_down_to_min(pgcat, cluster):
    t = pgcat(pool_size=3, users={"app": {"min_pool_size": 1, "idle_timeout": 300}})
    conns = [t.connect(autocommit=False) for _ in range(3)]
    for c in conns:
        c.execute("select 1")  # three transactions open at once: three server connections
    assert len(pooler_ports_to(t.proc.pid, cluster.primary)) == 3
    for c in conns:
        c.commit()
        c.close()
    assert wait_for(lambda: len(pooler_ports_to(t.proc.pid, cluster.primary)) == 1), \
        pooler_ports_to(t.proc.pid, cluster.primary)


def test_server_lifetime_retires_old_connections(pgcat):
    t = pgcat(pool_size=1, users={"app": {"server_lifetime": 400}})
    with t.connect() as c:
        first = backend_pid(c)
        assert backend_pid(c) == first  # same connection while young
        time.sleep(1.5)
        assert wait_for(lambda: backend_pid(c) != first), "the connection outlived server_lifetime"


def test_max_client_conn_refuses_with_53300(pgcat):
    t = pgcat(general={"max_client_conn": 2})
    a, b = t.connect(), t.connect()
    with pytest.raises(psycopg.OperationalError) as refused:
        t.connect()
    assert "too many client connections" in str(refused.value)
    assert a.execute("select 1").fetchone() == (1,)  # nobody else is disturbed
    b.close()
    with t.connect() as c:  # a freed slot can be used again
        assert c.execute("select 2").fetchone() == (2,)
    a.close()


def test_max_client_connections_per_user(pgcat):
    t = pgcat(users={"app": {"max_client_connections": 1}, "md5_user": {}})
    a = t.connect()
    with pytest.raises(psycopg.OperationalError) as refused:
        t.connect()
    assert "too many client connections" in str(refused.value)
    with t.connect(user="md5_user") as other:  # another user is not limited
        assert other.execute("select 1").fetchone() == (1,)
    a.close()


def test_max_client_connections_counts_only_logged_in_clients(pgcat):
    """Connections that have not authenticated do not take a user's slots, and a wrong password at the limit is
    told so (not 53300, which would tell a stranger the user exists and is busy)."""
    from pgwire import RawConn, startup_packet

    t = pgcat(users={"app": {"max_client_connections": 1}})
    strangers = []
    for _ in range(3):
        c = RawConn(t.host, t.port)
        c.send(startup_packet("app", "app"))
        assert c.read_message()[0] == b"R"  # the password challenge: then silence
        strangers.append(c)
    a = t.connect()  # the one slot is still free
    with pytest.raises(psycopg.OperationalError) as wrong:
        t.connect(password="not-the-password")
    assert "password authentication failed" in str(wrong.value)
    with pytest.raises(psycopg.OperationalError) as refused:
        t.connect()
    assert "too many client connections" in str(refused.value)
    a.close()
    for c in strangers:
        c.close()
    with t.connect() as b:  # a freed slot can be used again
        assert b.execute("select 1").fetchone() == (1,)


def test_md5_hash_as_configured_password(pgcat):
    stored = "md5" + hashlib.md5(b"md5_user" + b"md5_user").hexdigest()
    t = pgcat(users={"md5_user": {"password": stored, "auth_type": "md5"}})
    with t.connect(user="md5_user", password="md5_user") as c:  # client MD5 against the hash, server MD5 with it
        assert c.execute("select current_user").fetchone() == ("md5_user",)
    with pytest.raises(psycopg.OperationalError) as wrong:
        t.connect(user="md5_user", password="nope")
    assert "password authentication failed" in str(wrong.value)


def test_scram_verifier_as_configured_password_logs_in_to_the_server(pgcat, primary):
    """The config holds only the server's own SCRAM verifier: clients log in with SCRAM against it, and the pooler
    logs in to Postgres with the ClientKey the client proved (no plaintext anywhere)."""
    verifier = primary.value("select rolpassword from pg_authid where rolname = 'app'")
    assert verifier.startswith("SCRAM-SHA-256$")
    t = pgcat(users={"app": {"password": verifier, "auth_type": "scram-sha-256", "min_pool_size": 0}})
    with t.connect(password="app") as c:
        assert c.execute("select current_user").fetchone() == ("app",)
    with pytest.raises(psycopg.OperationalError) as wrong:
        t.connect(password="wrong")
    assert "password authentication failed" in str(wrong.value)
