"""Graceful shutdown on SIGINT/SIGTERM: idle clients are told 57P01 and closed at once, new clients get 57P01,
a client inside a transaction may finish it (then it is closed), and the process exits."""

import signal
import threading
import time

import psycopg
import pytest

pytestmark = pytest.mark.pooler_only


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_drain_lets_open_transaction_finish(pgcat, sig):
    t = pgcat(general={"shutdown_timeout": 10000})
    idle = t.connect()
    busy = t.connect(autocommit=False)
    busy.execute("select 1")  # transaction open, server connection held
    t.proc.send_signal(sig)

    # The idle client is closed with 57P01.
    with pytest.raises(psycopg.OperationalError) as idle_error:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            idle.execute("select 1")
            time.sleep(0.05)
    assert "administrator command" in str(idle_error.value) or idle.closed or idle.broken

    # New clients are refused with 57P01 while the listener stays open.
    with pytest.raises(psycopg.OperationalError) as refused:
        t.connect()
    assert "shutting down" in str(refused.value)

    # The open transaction still works and commits; then the process exits.
    assert busy.execute("select 41 + 1").fetchone() == (42,)
    busy.commit()
    assert t.proc.wait(timeout=10) == 0
    busy.close()
    idle.close()


def test_second_signal_exits_at_once(pgcat):
    t = pgcat(general={"shutdown_timeout": 60000})
    busy = t.connect(autocommit=False)
    busy.execute("select 1")
    t.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert t.proc.poll() is None, "exited before the open transaction ended"
    t.proc.send_signal(signal.SIGTERM)
    assert t.proc.wait(timeout=5) == 0
    busy.close()


def test_drain_ends_at_shutdown_timeout_and_admin_keeps_working(pgcat):
    """A transaction that never ends does not hold the process past shutdown_timeout; during the drain the admin
    console still answers (and can be logged into), while pool clients are refused."""
    t = pgcat(general={"shutdown_timeout": 1500})
    stuck = t.connect(autocommit=False)
    stuck.execute("select 1")
    admin = t.connect(user="pgcat_admin", dbname="pgcat", password="pgcat_admin")
    started = time.monotonic()
    t.proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    assert admin.execute("show pools").fetchall(), "admin console answers during the drain"
    with t.connect(user="pgcat_admin", dbname="pgbouncer", password="pgcat_admin") as late_admin:
        assert late_admin.execute("show version").fetchone()[0].startswith("PgCat")
    assert t.proc.wait(timeout=10) == 0
    elapsed = time.monotonic() - started
    assert 1.2 < elapsed < 6, f"exited after {elapsed:.1f}s with shutdown_timeout 1.5s"
    stuck.close()
    admin.close()


def test_admin_shutdown_drains_like_sigint(pgcat):
    t = pgcat(general={"shutdown_timeout": 10000})
    busy = t.connect(autocommit=False)
    busy.execute("select 1")
    with t.connect(user="pgcat_admin", dbname="pgcat", password="pgcat_admin") as admin:
        assert admin.execute("shutdown").fetchone() == ("t",)
    time.sleep(0.3)
    assert t.proc.poll() is None, "the open transaction may still finish"
    assert busy.execute("select 2").fetchone() == (2,)
    busy.commit()
    assert t.proc.wait(timeout=10) == 0
    busy.close()


def test_a_client_waiting_on_a_paused_pool_is_told_at_once(pgcat):
    """SIGTERM while PAUSE holds a client's request: the request has not started, so the client gets 57P01 at once
    and the process exits, instead of the client waiting for connect_timeout and the drain for shutdown_timeout."""
    t = pgcat(general={"shutdown_timeout": 20000, "connect_timeout": 20000})
    waiter = t.connect()
    waiter.execute("select 1")
    with t.connect(user="pgcat_admin", dbname="pgcat", password="pgcat_admin") as admin:
        admin.execute("pause")
    outcome = {}

    def run():
        try:
            waiter.execute("select 2")
        except psycopg.Error as e:
            outcome["error"] = e

    th = threading.Thread(target=run)
    th.start()
    time.sleep(0.5)
    started = time.monotonic()
    t.proc.send_signal(signal.SIGTERM)
    th.join(15)
    assert not th.is_alive()
    assert outcome["error"].sqlstate == "57P01", str(outcome["error"])
    assert t.proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 8
    waiter.close()
