"""Servers reached over PostgreSQL's Unix-domain socket: a server `host` that starts with `/` is the directory of the
socket file `.s.PGSQL.<port>`, as for libpq and PgBouncer. Both I/O engines; queries, cancellation, health checks and
SHOW SERVERS; `server_tls` does not apply there (PostgreSQL has no TLS on its socket)."""

import os
import threading
import time

import psycopg
import pytest

from support import HOST

pytestmark = pytest.mark.pooler_only


def socket_dir() -> str:
    directory = os.environ.get("PGCAT_CLUSTER_DIR")
    if not directory:
        pytest.fail("PGCAT_CLUSTER_DIR is not set (scripts/test.sh sets it)")
    return directory


@pytest.mark.parametrize("engine", ["epoll", "nio"])
def test_queries_and_cancellation_over_the_unix_socket(pgcat, cluster, engine):
    t = pgcat(servers=[[socket_dir(), cluster.primary, "primary"]], users=["app", "md5_user"],
              general={"io_engine": engine, "healthcheck_delay": 0})
    with t.connect() as c:
        # inet_server_port() is NULL on a Unix-domain connection: the server was not reached over TCP.
        assert c.execute("select inet_server_port(), current_user").fetchone() == (None, "app")
        assert c.execute("select %s::int + 1", (41,)).fetchone() == (42,)
    with t.connect(user="md5_user") as c:
        assert c.execute("select inet_server_port()").fetchone() == (None,)

    with t.connect() as c:
        timer = threading.Timer(0.5, c.cancel)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("select pg_sleep(10)")
        assert time.monotonic() - started < 5
        assert c.execute("select 1").fetchone() == (1,)

    admin = psycopg.connect(host=HOST, port=t.port, user="pgcat_admin", password="pgcat_admin", dbname="pgcat",
                            autocommit=True)
    with admin:
        cur = admin.execute("show databases")
        columns = [d.name for d in cur.description]
        hosts = {row[columns.index("host")] for row in cur.fetchall()}
        assert socket_dir() in hosts, hosts


def test_server_tls_is_not_tried_on_the_unix_socket(pgcat, cluster):
    t = pgcat(servers=[[socket_dir(), cluster.primary, "primary"]], users=["app"],
              general={"server_tls": True})
    with t.connect() as c:
        assert c.execute("select inet_server_port(), ssl from pg_stat_ssl where pid = pg_backend_pid()").fetchone() \
            == (None, False)
