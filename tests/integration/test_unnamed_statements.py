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


def test_a_refused_unnamed_parse_leaves_no_statement_to_bind(pgcat, primary):
    """A Parse the pooler refuses (table_access) is a Parse that failed: a later lone Bind gets 26000, as from
    PostgreSQL, never the client's earlier unnamed statement (an UPDATE here) run with the new parameter. Also
    when the Parse is refused on a connection the client already holds (inside a transaction)."""
    primary.sql("drop table if exists unnamed_refused, unnamed_secret")
    primary.sql("create table unnamed_refused (id int primary key, v text)")
    primary.sql("create table unnamed_secret (id int)")
    primary.sql("insert into unnamed_refused values (1, 'original')")
    primary.sql("grant all on unnamed_refused, unnamed_secret to public")
    t = pgcat(pool_size=2, pool={"query_parser_enabled": True,
                                 "plugins": {"table_access": {"enabled": True, "tables": ["unnamed_secret"]}}})
    try:
        c = login(t)
        for prefix in (b"", message(b"Q", b"begin\0")):
            c.send(prefix + parse("update unnamed_refused set v = $1::text where id = 1") + bind("first")
                   + EXECUTE + SYNC)
            c.read_until_ready()
            if prefix:
                c.read_until_ready()
            c.send(parse("select $1::text from unnamed_secret") + describe_statement() + SYNC)
            with pytest.raises(PgError) as e:
                c.read_until_ready()
            assert e.value.sqlstate == "42501", e.value.fields
            c.send(bind("second") + EXECUTE + SYNC)
            with pytest.raises(PgError) as e:
                c.read_until_ready()
            assert e.value.sqlstate == "26000", e.value.fields
            if prefix:
                c.send(message(b"Q", b"rollback\0"))
                c.read_until_ready()
            assert primary.value("select v from unnamed_refused") == "first", "the refused Parse's Bind ran the UPDATE"
        c.terminate()
    finally:
        primary.sql("drop table if exists unnamed_refused, unnamed_secret")
