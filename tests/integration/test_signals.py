"""SIGQUIT (docs/operations.md, Signals and shutdown: "a second SIGINT/SIGTERM, or SIGQUIT | exit at once";
docs/architecture.md: "a second signal (or SIGQUIT) exits at once"): no drain, whatever shutdown_timeout says and
whatever transactions are open; the open transaction's work is not committed. test_shutdown.py covers the graceful
SIGINT/SIGTERM drain and the second SIGTERM."""

import signal
import socket
import time

import psycopg
import pytest

from support import HOST, build_config, free_port, spawn_pooler, to_yaml

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


def test_sigterm_the_moment_the_port_accepts_drains_and_exits_0(cluster, tmp_path):
    """Signals are trapped before the listener opens (stop 25): a SIGTERM sent as soon as a client can connect is
    a graceful shutdown (exit 0), never the default action that kills the process (-15). Before, the signal
    handlers were installed after the start, and a SIGTERM in between killed the pooler."""
    for n in range(12):
        port = free_port()
        path = tmp_path / f"early-{n}.yaml"
        path.write_text(to_yaml(build_config(cluster, port, users=["app"])))
        proc = spawn_pooler([str(path)])
        try:
            deadline = time.monotonic() + 20
            while True:
                assert proc.poll() is None, f"the pooler exited with {proc.returncode} before listening"
                try:
                    socket.create_connection((HOST, port), timeout=0.2).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "the pooler never listened"
                    time.sleep(0.0005)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0, f"round {n}: SIGTERM right after the listener opened"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
