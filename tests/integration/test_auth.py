"""Client authentication at the pooler and server authentication from the pooler to Postgres.

Pools log in to Postgres as: app (SCRAM), md5_user (MD5), plain_user (cleartext `password`), trust_user (trust);
see scripts/cluster.sh for pg_hba. Clients authenticate to the pooler as each user's `auth_type` says."""

import asyncio

import asyncpg
import psycopg
import pytest

from pgwire import PgError, RawConn, parse_error_fields, startup_packet
from support import DIRECT, PASSWORDS, psql

USERS = ["app", "md5_user", "plain_user", "trust_user"]

# AuthenticationRequest code the client is sent first: 10 = SASL (SCRAM), 5 = MD5, 3 = cleartext, 0 = ok (trust)
POOLER_AUTH_CODE = {"app": 10, "md5_user": 5, "plain_user": 10, "trust_user": 0}
DIRECT_AUTH_CODE = {"app": 10, "md5_user": 5, "plain_user": 3, "trust_user": 0}


def first_auth_request(host, port, user, database="app") -> int:
    with RawConn(host, port) as c:
        c.send(startup_packet(user, database))
        t, p = c.read_message()
        if t == b"E":
            raise PgError(parse_error_fields(p))
        assert t == b"R", f"expected an authentication request, got {t!r}"
        return int.from_bytes(p[:4], "big")


@pytest.mark.parametrize("user", USERS)
def test_login_with_psql(pgcat, user):
    """Client auth at the pooler and the pool's server auth (trust, cleartext, MD5, SCRAM) both work."""
    t = pgcat()
    r = psql(t, "select current_user, current_database()", user=user)
    assert r.stdout.strip() == f"{user}|app"


@pytest.mark.parametrize("user", USERS)
def test_login_with_psycopg(pgcat, user):
    t = pgcat()
    with t.connect(user=user) as c:
        assert c.execute("select current_user").fetchone()[0] == user
        assert c.execute("select %s::int + 1", (41,)).fetchone()[0] == 42


@pytest.mark.parametrize("user", USERS)
def test_login_with_raw_protocol(pgcat, user):
    t = pgcat()
    with RawConn(t.host, t.port) as c:
        c.startup(user, "app", PASSWORDS[user])
        assert c.query("select current_user") == [[user]]


@pytest.mark.parametrize("user", USERS)
def test_auth_method_offered_to_client(pgcat, user):
    t = pgcat()
    expected = (DIRECT_AUTH_CODE if t.direct else POOLER_AUTH_CODE)[user]
    assert first_auth_request(t.host, t.port, user) == expected


def test_scram_and_md5_with_asyncpg(pgcat):
    t = pgcat()

    async def main():
        for user in ("app", "md5_user", "trust_user"):
            conn = await t.aconnect(user=user)
            try:
                assert await conn.fetchval("select current_user") == user
            finally:
                await conn.close()

    asyncio.run(asyncio.wait_for(main(), 60))


@pytest.mark.parametrize("user", ["app", "md5_user"])
def test_wrong_password_is_fatal_28p01(pgcat, user):
    t = pgcat()
    with RawConn(t.host, t.port) as c:
        with pytest.raises(PgError) as ei:
            c.startup(user, "app", "definitely-wrong")
        e = ei.value
        assert e.sqlstate == "28P01", e.fields
        assert e.severity == "FATAL"
        assert e.message.startswith(f'password authentication failed for user "{user}"'), e.message
        assert c.wait_closed(5), "connection not closed after FATAL"


def test_wrong_password_psql(pgcat):
    t = pgcat()
    r = psql(t, "select 1", user="app", password="nope", check=False)
    assert r.returncode != 0
    assert 'password authentication failed for user "app"' in r.stderr


def test_wrong_password_asyncpg(pgcat):
    t = pgcat()

    async def main():
        with pytest.raises(asyncpg.InvalidPasswordError):
            await t.aconnect(user="app", password="nope")

    asyncio.run(asyncio.wait_for(main(), 30))


def test_unknown_user_gets_challenge_then_28p01(pgcat):
    t = pgcat()
    # the same password challenge as a real user first, so user names cannot be probed
    assert first_auth_request(t.host, t.port, "no_such_user_x") in (5, 10)
    with RawConn(t.host, t.port) as c:
        with pytest.raises(PgError) as ei:
            c.startup("no_such_user_x", "app", "whatever")
        assert ei.value.sqlstate == "28P01", ei.value.fields
        assert ei.value.severity == "FATAL"
        assert ei.value.message.startswith('password authentication failed for user "no_such_user_x"')


def test_unknown_database_is_fatal_3d000(pgcat):
    t = pgcat()
    with RawConn(t.host, t.port) as c:
        with pytest.raises(PgError) as ei:
            c.startup("app", "no_such_db_x", "app")
        e = ei.value
        assert e.sqlstate == "3D000", e.fields
        assert e.severity == "FATAL"
        if not t.direct:
            assert e.message.startswith("no such database"), e.message
            assert "no_such_db_x" in e.message


def test_unknown_database_psql(pgcat):
    t = pgcat()
    r = psql(t, "select 1", dbname="no_such_db_x", check=False)
    assert r.returncode != 0
    assert ("no such database" if not t.direct else "does not exist") in r.stderr, r.stderr


def test_psycopg_scram_password_in_conninfo(pgcat):
    t = pgcat()
    with psycopg.connect(t.conninfo("app"), autocommit=True, prepare_threshold=None) as c:
        assert c.info.user == "app"
        assert c.execute("select 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(t.conninfo("app", password="bad"), prepare_threshold=None)


def test_scram_initial_response_without_data_gets_an_empty_challenge(pgcat):
    """A SASLInitialResponse with no data (length -1) is answered with an empty AuthenticationSASLContinue, and
    the client-first-message that follows completes the login, as with PostgreSQL (which this test also runs
    against with PGCAT_TEST_DIRECT=1). Before stop 25 the pooler refused it."""
    t = pgcat()
    with RawConn(t.host, t.port) as c:
        c.send(startup_packet("app", "app"))
        c.authenticate("app", PASSWORDS["app"], sasl_initial_without_data=True)
        assert c.query("select current_user") == [["app"]]


@pytest.mark.pooler_only
def test_server_username_logs_in_to_the_server_as_another_role(pgcat):
    """`server_username` (and `server_password`): clients log in to the pooler as one user, the pooler logs in to
    Postgres as another, as PgCat does."""
    t = pgcat(users={"front_user": {"password": "front-pw", "auth_type": "scram-sha-256", "pool_size": 2,
                                    "server_username": "app", "server_password": "app"}})
    with psycopg.connect(host=t.host, port=t.port, user="front_user", password="front-pw", dbname="app",
                         autocommit=True) as c:
        assert c.execute("select current_user, session_user").fetchone() == ("app", "app")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host=t.host, port=t.port, user="front_user", password="app", dbname="app")
