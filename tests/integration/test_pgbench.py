"""pgbench through the pooler, simple and extended protocol, select-only and TPC-B (tables made with pgbench -i -s 1
directly on the primary)."""

import re

import pytest

from support import pgbench

CLIENTS, JOBS, TXNS = 20, 2, 200


def check_pgbench(r, expected: int):
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    m = re.search(r"number of transactions actually processed: (\d+)/(\d+)", out)
    assert m, out
    assert int(m.group(1)) == expected and int(m.group(2)) == expected, out
    failed = re.search(r"number of failed transactions: (\d+)", out)
    if failed:
        assert int(failed.group(1)) == 0, out
    assert "error" not in r.stderr.lower(), r.stderr


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", ["simple", "extended"])
@pytest.mark.parametrize("workload", ["select-only", "tpcb"])
def test_pgbench(pgcat, pgbench_tables, mode, workload):
    t = pgcat(pool_size=10)
    args = ["-M", mode, "-c", str(CLIENTS), "-j", str(JOBS), "-t", str(TXNS), "-n"]
    if workload == "select-only":
        args.append("-S")
    r = pgbench(t, args, timeout=280)
    check_pgbench(r, CLIENTS * TXNS)


@pytest.mark.timeout(300)
def test_pgbench_reconnect_each_transaction(pgcat, pgbench_tables):
    """-C: a new connection (and SCRAM login) per transaction."""
    t = pgcat(pool_size=4)
    r = pgbench(t, ["-C", "-S", "-M", "extended", "-c", "4", "-j", "2", "-t", "50", "-n"], timeout=280)
    check_pgbench(r, 200)


@pytest.mark.timeout(300)
def test_pgbench_md5_user_session_mode(pgcat, pgbench_tables, primary):
    primary.sql("grant select on pgbench_accounts, pgbench_branches, pgbench_tellers to md5_user")
    t = pgcat(pool_mode="session", pool_size=8)
    r = pgbench(t, ["-S", "-M", "simple", "-c", "8", "-j", "2", "-t", "100", "-n"], user="md5_user", timeout=280)
    check_pgbench(r, 800)
