"""SSLRequest and GSSENCRequest without TLS configured (no tls_certificate): the pooler answers 'N' and start-up continues in plain text."""

import pytest

from pgwire import RawConn
from support import psql


def test_psql_sslmode_prefer(pgcat):
    t = pgcat()
    r = psql(t, "select 1", conninfo="sslmode=prefer")
    assert r.stdout.strip() == "1"


@pytest.mark.pooler_only  # the test primary has TLS on (scripts/cluster.sh)
def test_psql_sslmode_require_fails_clearly(pgcat):
    t = pgcat()
    r = psql(t, "select 1", conninfo="sslmode=require", check=False)
    assert r.returncode != 0
    assert "server does not support SSL, but SSL was required" in r.stderr, r.stderr


def test_psql_gssencmode_prefer(pgcat):
    t = pgcat()
    r = psql(t, "select 1", conninfo="gssencmode=prefer sslmode=prefer")
    assert r.stdout.strip() == "1"


def test_raw_ssl_request_answered_n_then_startup(pgcat):
    t = pgcat()
    with RawConn(t.host, t.port) as c:
        assert c.ssl_request() == b"N"
        c.startup("app", "app", "app")
        assert c.query("select 5") == [["5"]]


@pytest.mark.pooler_only  # Postgres built with GSSAPI answers 'G' here
def test_raw_gssenc_request_answered_n_then_startup(pgcat):
    t = pgcat()
    with RawConn(t.host, t.port) as c:
        assert c.gssenc_request() == b"N"
        c.startup("app", "app", "app")
        assert c.query("select 6") == [["6"]]


@pytest.mark.pooler_only
def test_raw_gssenc_then_ssl_then_startup(pgcat):
    """libpq with gssencmode=prefer and credentials tries GSSENC first, then SSL, on the same socket."""
    t = pgcat()
    with RawConn(t.host, t.port) as c:
        assert c.gssenc_request() == b"N"
        assert c.ssl_request() == b"N"
        c.startup("md5_user", "app", "md5_user")
        assert c.query("select current_user") == [["md5_user"]]
