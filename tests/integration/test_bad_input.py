"""Hostile or broken input: oversized start-up packets and messages, garbage instead of a start-up packet, unknown
message types. The pooler answers with 08P01 (or closes), and keeps serving everyone else."""

import random
import socket
import struct

import pytest

from pgwire import ConnectionClosed, PgError, RawConn, message, parse_error_fields, startup_packet
from support import psql


def read_error_or_close(c: RawConn) -> PgError | None:
    """The first ErrorResponse before EOF, or None when the connection just closed. A ReadyForQuery (the input was
    processed normally) or a silent open connection (socket timeout) fails the test."""
    try:
        while True:
            t, p = c.read_message()
            if t == b"E":
                return PgError(parse_error_fields(p))
            if t == b"Z":
                pytest.fail("the input was accepted and answered (ReadyForQuery) instead of refused")
    except ConnectionClosed:
        return None
    except socket.timeout:
        pytest.fail("no error and no close: the pooler left the connection hanging")


def assert_still_serving(t):
    assert psql(t, "select 'alive'").stdout.strip() == "alive"


@pytest.mark.pooler_only  # Postgres itself only logs this and closes
def test_startup_packet_over_10000_bytes_08p01(pgcat):
    t = pgcat()
    pkt = startup_packet("app", "app", options="-c application_name=" + "a" * 10100)
    assert len(pkt) > 10000
    with RawConn(t.host, t.port, timeout=10) as c:
        c.send(pkt)
        e = read_error_or_close(c)
        assert e is not None, "connection closed without an ErrorResponse"
        assert e.sqlstate == "08P01", e.fields
        assert e.severity == "FATAL"
        assert c.wait_closed(5)
    assert_still_serving(t)


@pytest.mark.pooler_only
def test_startup_length_claims_huge_packet_08p01(pgcat):
    t = pgcat()
    with RawConn(t.host, t.port, timeout=10) as c:
        c.send(struct.pack("!II", 50_000, 196608))  # only the header of a 50 kB packet
        e = read_error_or_close(c)
        assert e is not None and e.sqlstate == "08P01", e and e.fields
    assert_still_serving(t)


@pytest.mark.pooler_only
def test_message_over_max_message_size_08p01(pgcat):
    t = pgcat(general={"max_message_size": 1024})
    with RawConn(t.host, t.port) as c:
        c.startup("app", "app", "app")
        assert c.query("select '" + "s" * 900 + "' = ''") == [["f"]]  # under the limit: fine
        c.send(message(b"Q", ("select '" + "x" * 2000 + "'").encode() + b"\x00"))
        e = read_error_or_close(c)
        assert e is not None, "connection closed without an ErrorResponse"
        assert e.sqlstate == "08P01", e.fields
        assert e.severity == "FATAL"
        assert c.wait_closed(5), "connection not closed after an oversized message"
    assert_still_serving(t)


GARBAGE = {
    "http": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "protocol-0": struct.pack("!II", 8, 0),
    "protocol-9.9": startup_packet("app", "app", protocol=(9 << 16) | 9),
    "short-length": struct.pack("!I", 2) + b"\x00" * 4,
    "random": bytes(random.Random(7).randrange(256) for _ in range(64)),
    "no-user": startup_packet(None, "app"),
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_garbage_startup_gets_error_or_close(pgcat, name):
    t = pgcat()
    with RawConn(t.host, t.port, timeout=10) as c:
        try:
            c.send(GARBAGE[name])
        except OSError:
            pass
        e = read_error_or_close(c)
        if e is not None:
            assert e.severity == "FATAL", e.fields
            assert e.sqlstate and len(e.sqlstate) == 5, e.fields
    assert_still_serving(t)


def test_unknown_message_type_after_login_08p01(pgcat):
    t = pgcat()
    with RawConn(t.host, t.port) as c:
        c.startup("app", "app", "app")
        c.send(message(b"\x01", b"junk"))
        e = read_error_or_close(c)
        assert e is not None, "connection closed without an ErrorResponse"
        assert e.sqlstate == "08P01", e.fields
        assert c.wait_closed(5)
    assert_still_serving(t)


@pytest.mark.pooler_only  # Postgres starts a walsender
def test_message_type_zero_gets_a_well_formed_error(pgcat):
    t = pgcat()
    with RawConn(t.host, t.port) as c:
        c.startup("app", "app", "app")
        c.send(message(b"\x00", b"junk"))
        e = read_error_or_close(c)
        assert e is not None and e.sqlstate == "08P01", e and e.fields
        assert "\x00" not in e.message and e.message.endswith("unexpected message type 0"), e.fields
    assert_still_serving(t)


@pytest.mark.pooler_only  # Postgres starts a walsender
@pytest.mark.parametrize("mode", ["true", "database"])
def test_replication_connections_are_refused(pgcat, mode):
    t = pgcat()
    r = psql(t, "IDENTIFY_SYSTEM", conninfo=f"replication={mode}", check=False)
    assert r.returncode != 0 and "replication connections are not supported" in r.stderr, r.stderr
    assert psql(t, "select 1", conninfo="replication=false").stdout.strip() == "1"
    assert_still_serving(t)


def test_client_closing_during_startup_does_not_hurt(pgcat):
    t = pgcat()
    for n in range(10):
        s = socket.create_connection((t.host, t.port), timeout=5)
        s.sendall(startup_packet("app", "app")[: 5 + n])  # a partial packet, then gone
        s.close()
    for _ in range(5):
        with RawConn(t.host, t.port) as c:
            c.send(startup_packet("app", "app"))
            typ, _ = c.read_message()  # the SCRAM challenge; then gone mid-authentication
            assert typ == b"R"
    assert_still_serving(t)


def test_protocol_3_2_and_pq_options_are_negotiated_down(pgcat):
    """A PostgreSQL 18 client may ask for protocol 3.2 and `_pq_.` options: the answer is NegotiateProtocolVersion
    (newest version 3.0, the options not recognised), then a normal 3.0 session, as PostgreSQL 15 does."""
    t = pgcat()
    with RawConn(t.host, t.port) as c:
        c.send(startup_packet("app", "app", protocol=(3 << 16) | 2, **{"_pq_.test_option": "on"}))
        kind, payload = c.read_message()
        assert kind == b"v", (kind, payload)
        newest, count = struct.unpack("!ii", payload[:8])
        assert newest == (3 << 16), newest  # PostgreSQL sends the whole version code: 3.0
        assert count == 1 and payload[8:].split(b"\x00")[0] == b"_pq_.test_option"
        c.authenticate("app", "app")
        assert c.query("select 40 + 2") == [["42"]]


@pytest.mark.pooler_only
@pytest.mark.parametrize("bad_length", [-1, 0, 3])
def test_bad_frame_behind_a_parse_with_routing_on_08p01(pgcat, cluster, bad_length):
    """The routers look ahead over the messages that start a transaction: a malformed header behind a valid Parse
    must end in 08P01 for that client, never a crash or a stuck event loop."""
    from support import HOST
    servers = [[HOST, cluster.primary, "primary"], {"host": HOST, "port": cluster.replica1, "role": "replica",
                                                     "tags": ["gpu"]}]
    t = pgcat(users=["app"], servers=servers,
              pool={"query_parser_enabled": True, "query_parser_read_write_splitting": True,
                    "ml_routing": {"enabled": True, "target_tags": ["gpu"]}})
    parse = message(b"P", b"\x00select pgml.embed('m', 'x')\x00\x00\x00")
    with RawConn(t.host, t.port) as c:
        c.startup("app", "app", "app")
        c.send(parse + b"E" + struct.pack("!i", bad_length))
        e = read_error_or_close(c)
        assert e is None or e.sqlstate == "08P01", e.fields
    assert_still_serving(t)


@pytest.mark.pooler_only
@pytest.mark.parametrize("sends", ["nothing", "half a startup packet", "startup but no password"])
def test_client_that_never_logs_in_is_closed_after_client_login_timeout(pgcat, sends):
    t = pgcat(general={"client_login_timeout": 500})
    with RawConn(t.host, t.port) as c:
        if sends == "half a startup packet":
            c.send(startup_packet("app", "app")[:6])
        elif sends == "startup but no password":
            c.send(startup_packet("app", "app"))
        e = read_error_or_close(c)  # skips the authentication request
        assert e is None or e.sqlstate == "28000", e.fields
        assert c.wait_closed(5), "a client that never logged in was kept"
    assert_still_serving(t)
