"""SIGQUIT (docs/operations.md, Signals and shutdown: "a second SIGINT/SIGTERM, or SIGQUIT | exit at once";
docs/architecture.md: "a second signal (or SIGQUIT) exits at once"): no drain, whatever shutdown_timeout says and
whatever transactions are open; the open transaction's work is not committed. test_shutdown.py covers the graceful
SIGINT/SIGTERM drain and the second SIGTERM."""

import signal
import socket
import time

import psycopg
import pytest

from support import HOST

pytestmark = pytest.mark.pooler_only


def refuses(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return False
    except OSError:
        return True


def test_sigquit_exits_at_once_without_draining(pgcat, primary):
    table = primary.make_table("sigquit_t")
    t = pgcat(users=["app"], general={"shutdown_timeout": 60000})
    idle = t.connect()
    idle.execute("select 1")
    busy = t.connect(autocommit=False)
    busy.execute(f"insert into {table} values (1, 'uncommitted')")  # transaction open, server connection held
    busy_pid = busy.execute("select pg_backend_pid()").fetchone()[0]
    started = time.monotonic()
    t.proc.send_signal(signal.SIGQUIT)
    assert t.proc.wait(timeout=5) == 0
    elapsed = time.monotonic() - started
    assert elapsed < 2, f"SIGQUIT took {elapsed:.1f}s (shutdown_timeout 60 s: it drained)"
    assert refuses(t.host, t.port), "the listener is still open"
    # the open transaction could not finish: its connection is gone and its insert never committed
    with pytest.raises(psycopg.OperationalError):
        busy.execute("select 1")
    primary.wait_until("select count(*) from pg_stat_activity where pid = %s", (busy_pid,), expect=0)
    assert primary.value(f"select count(*) from {table}") == 0
    with pytest.raises(psycopg.OperationalError):
        idle.execute("select 1")
    busy.close()
    idle.close()


def test_sigquit_ends_a_drain_at_once(pgcat):
    t = pgcat(users=["app"], general={"shutdown_timeout": 60000})
    busy = t.connect(autocommit=False)
    busy.execute("select 1")
    t.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert t.proc.poll() is None, "exited before the open transaction ended (no drain)"
    started = time.monotonic()
    t.proc.send_signal(signal.SIGQUIT)
    assert t.proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 2
    busy.close()
