"""Graceful shutdown on SIGINT/SIGTERM: idle clients are told 57P01 and closed at once, new clients get 57P01,
a client inside a transaction may finish it (then it is closed), and the process exits."""

import signal
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
