"""The unnamed prepared statement in transaction mode, on a real server: a client that parses it in one exchange
and binds it in the next (lib/pq, pgx's describe mode) runs its own statement, never one another client left on
the server connection (which ran the other client's UPDATE with this client's parameter)."""

import struct

import pytest

from pgwire import PgError, RawConn, message

pytestmark = pytest.mark.pooler_only


def parse(sql: str, name: str = "") -> bytes:
    return message(b"P", name.encode() + b"\0" + sql.encode() + b"\0" + struct.pack("!H", 0))


def bind(*params: str, statement: str = "") -> bytes:
    body = b"\0" + statement.encode() + b"\0" + struct.pack("!H", 0) + struct.pack("!H", len(params))
    for p in params:
        body += struct.pack("!i", len(p.encode())) + p.encode()
    return message(b"B", body + struct.pack("!H", 0))


def describe_statement(name: str = "") -> bytes:
    return message(b"D", b"S" + name.encode() + b"\0")


EXECUTE = message(b"E", b"\0" + struct.pack("!i", 0))
SYNC = message(b"S", b"")


def login(t) -> RawConn:
    c = RawConn(t.host, t.port)
    c.startup("app", "app", "app")
    return c


def test_a_later_bind_runs_the_clients_own_unnamed_statement(pgcat, primary):
    primary.sql("drop table if exists unnamed_victim")
    primary.sql("create table unnamed_victim (id int primary key, v text)")
    primary.sql("insert into unnamed_victim values (1, 'original')")
    primary.sql("grant all on unnamed_victim to public")
    t = pgcat(pool_size=1)  # one server connection: every client shares it
    try:
        y = login(t)
        y.send(parse("select $1::text as echo") + describe_statement() + SYNC)
        y.read_until_ready()

        x = login(t)
        x.send(parse("update unnamed_victim set v = $1::text where id = 1") + bind("set-by-x") + EXECUTE + SYNC)
        x.read_until_ready()
        x.terminate()
        primary.sql("update unnamed_victim set v = 'original'")

        for _ in range(2):  # the first Bind meets x's statement; the second a fresh lease of the same connection
            y.send(bind("hello-from-y") + EXECUTE + SYNC)
            assert y.read_until_ready() == [["hello-from-y"]]
        assert primary.value("select v from unnamed_victim") == "original", "y's Bind ran x's UPDATE"

        # A client that never parsed an unnamed statement gets PostgreSQL's error, not another client's statement.
        z = login(t)
        x2 = login(t)
        x2.send(parse("update unnamed_victim set v = $1::text where id = 1") + bind("by-x2") + EXECUTE + SYNC)
        x2.read_until_ready()
        z.send(bind("by-z") + EXECUTE + SYNC)
        with pytest.raises(PgError) as e:
            z.read_until_ready()
        assert e.value.sqlstate == "26000", e.value.fields
        assert primary.value("select v from unnamed_victim") == "by-x2"
        assert z.query("select 1") == [["1"]]
    finally:
        primary.sql("drop table if exists unnamed_victim")
