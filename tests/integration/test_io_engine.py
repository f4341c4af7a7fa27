"""`io_engine`: the rest of the suite runs on the default (pgcat's own epoll loops); these keep SwiftNIO's loops
(`io_engine: nio`) working end to end, TLS on both sides included, and check which engine each run reports."""

from __future__ import annotations

import re

import pytest

from support import pgbench, tls_dir, wait_for

pytestmark = pytest.mark.pooler_only


def engine_in_log(t) -> str:
    """The engine named on the "pgcat listening" line (logfmt `io_engine=epoll` or JSON `"io_engine":"epoll"`).
    The line is written just after the listener accepts, so it is waited for."""
    def engine() -> str | None:
        for line in t.log().splitlines():
            found = re.search(r'io_engine"?[=:]"?(\w+)', line)
            if "pgcat listening" in line and found:
                return found.group(1)
        return None

    found = wait_for(engine, timeout=10)
    assert found, f"no listening line with io_engine in the log:\n{t.log()[-4000:]}"
    return found


def test_the_default_engine_is_epoll(pgcat):
    t = pgcat()
    with t.connect() as c:
        assert c.execute("select 1").fetchone() == (1,)
    assert engine_in_log(t) == "epoll"


def test_nio_engine_relays_simple_extended_and_large_results(pgcat, pgbench_tables):
    t = pgcat(general={"io_engine": "nio"}, pool_size=3)
    assert engine_in_log(t) == "nio"
    with t.connect() as c:
        assert c.execute("select %s::int + 1", (41,)).fetchone() == (42,)
        rows = c.execute("select g, repeat('x', 500) from generate_series(1, 20000) g").fetchall()
        assert len(rows) == 20000 and rows[-1][0] == 20000
    for mode in ("simple", "extended", "prepared"):
        r = pgbench(t, ["-n", "-S", "-M", mode, "-c", "4", "-j", "2", "-t", "100"])
        assert r.returncode == 0, r.stderr
        assert "number of failed transactions: 0" in r.stdout, r.stdout


def test_nio_engine_with_tls_on_both_sides(pgcat):
    certs = tls_dir()
    t = pgcat(general={"io_engine": "nio", "tls_certificate": str(certs / "server.crt"),
                       "tls_private_key": str(certs / "server.key"), "client_tls_mode": "require",
                       "server_tls": True, "verify_server_certificate": False})
    with t.connect(sslmode="require") as c:
        assert c.execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()").fetchone() == (True,)
        assert c.pgconn.ssl_in_use


@pytest.mark.parametrize("engine", ["epoll", "nio"])
def test_client_sockets_get_the_keepalive_settings(pgcat, engine):
    """Every client socket has SO_KEEPALIVE with `tcp_keepalives_idle` (the epoll engine sets the options on the
    listening socket, which Linux copies to each accepted one, and checks the first connection): `ss` shows the
    keepalive timer of each, counting down from 37 s rather than the kernel's 7,200 s."""
    import subprocess
    t = pgcat(general={"io_engine": engine, "tcp_keepalives_idle": 37, "tcp_keepalives_interval": 3,
                       "tcp_keepalives_count": 4})
    conns = [t.connect() for _ in range(3)]
    try:
        for c in conns:
            assert c.execute("select 1").fetchone() == (1,)
        def keepalive_timers():
            out = subprocess.run(["ss", "-tnoH", "state", "established", f"( sport = :{t.port} )"],
                                 capture_output=True, text=True, check=True).stdout
            lines = [line for line in out.splitlines() if line.strip()]
            # (the client's delayed ACK of the last reply shows as a retransmission timer for up to 200 ms)
            return lines if len(lines) >= 3 and all("timer:(keepalive," in line for line in lines) else None
        lines = wait_for(keepalive_timers, timeout=5) or []
        assert len(lines) >= 3, "no keepalive timers on the client sockets"
        for line in lines:
            found = re.search(r"timer:\(keepalive,(?:(\d+)min)?([\d.]+)(ms|sec)", line)
            assert found, f"no keepalive timer: {line}"
            seconds = int(found.group(1) or 0) * 60 + float(found.group(2)) / (1000 if found.group(3) == "ms" else 1)
            assert 20 < seconds <= 37, line
    finally:
        for c in conns:
            c.close()
