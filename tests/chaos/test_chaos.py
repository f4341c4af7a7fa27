"""Chaos (issue 9): a steady read/write workload with a ledger runs through the pooler while servers are killed,
stopped and promoted, the network path to the primary drops and delays packets, clients die mid-transaction, the
config is reloaded over and over, and max_client_conn is filled. After each run: no committed write lost or
duplicated, nothing written that never committed, no client hung past its timeout, no server connection leaked
(the pooler's SHOW SERVERS and the servers' pg_stat_activity agree), and the pooler still serves.

Run with scripts/chaos.sh (its own cluster: this suite kills servers). CHAOS_SECONDS sets each fault phase
(default 8), CHAOS_SOAK_SECONDS the soak (default 60; 600 for the 10-minute soak)."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import threading
import time
import json

import psycopg
import pytest

from faulty_proxy import FaultyProxy
from ledger import Ledger, TABLE, create_table
from support import HOST, Cluster, build_config, cluster_script, free_port, pg_ctl, pooler_ports_to, superuser, to_yaml

PHASE = float(os.environ.get("CHAOS_SECONDS", "8"))
SOAK = float(os.environ.get("CHAOS_SOAK_SECONDS", "60"))
FAST = {"ban_time": 2, "healthcheck_delay": 300, "healthcheck_timeout": 1000, "connect_timeout": 3000,
        "idle_client_in_transaction_timeout": 0}
RW = {"query_parser_enabled": True, "query_parser_read_write_splitting": True}


def cluster_dir(port: int) -> str:
    return os.environ.get("PGCAT_CLUSTER_DIR") or f"/tmp/pgcat-cluster-{port}"


def admin(t):
    return psycopg.connect(host=t.host, port=t.port, user="pgcat_admin", password="pgcat_admin", dbname="pgcat",
                           autocommit=True, connect_timeout=5)


def admin_state(t) -> str:
    """The pooler's own view of its clients and servers (printed when a workload client hangs), and the log lines
    that name each client still connected."""
    lines = []
    client_ids = []
    with admin(t) as a:
        for command in ("SHOW CLIENTS", "SHOW SERVERS", "SHOW POOLS"):
            cursor = a.execute(command)
            names = [d.name for d in cursor.description]
            rows = cursor.fetchall()
            if command == "SHOW CLIENTS":
                # shown as the key's 32 bits in hex (PgCat), logged as a signed decimal
                unsigned = [int(str(row[names.index("client_id")]), 0) for row in rows]
                client_ids = [str(u - (1 << 32) if u >= 1 << 31 else u) for u in unsigned]
            lines.append(f"{command}: " + " | ".join(names))
            lines += ["  " + " | ".join(str(v) for v in row) for row in rows]
    log = t.log().splitlines()
    for client_id in client_ids:
        mentions = [line for line in log if f"client_id={client_id}" in line]
        lines.append(f"log lines naming client {client_id}: {len(mentions)}")
        lines += ["  " + line for line in mentions[-10:]]
    return "\n".join(lines)


def settle_and_check_servers(t, server_ports: list[int], timeout: float = 15) -> None:
    """Once every client is gone: each server connection the pooler lists is a backend the server lists, and
    none is left in a transaction."""
    deadline = time.monotonic() + timeout
    while True:
        with admin(t) as a:
            listed = [r for r in a.execute("SHOW SERVERS").fetchall()]
        held = {port: pooler_ports_to(t.proc.pid, port) for port in server_ports}
        backends = {}
        for port in server_ports:
            try:
                with superuser(port) as su:
                    backends[port] = su.execute(
                        "select client_port, state from pg_stat_activity where backend_type = 'client backend' "
                        "and usename = 'app'").fetchall()
            except psycopg.OperationalError:
                backends[port] = []
        ours = {port: [(p, s) for p, s in backends[port] if p in held[port]] for port in server_ports}
        pooled = sum(len(v) for v in held.values())
        in_transaction = [s for v in ours.values() for _, s in v if s and s.startswith("idle in transaction")]
        if len(listed) == pooled == sum(len(v) for v in ours.values()) and not in_transaction:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"server connections do not agree: SHOW SERVERS {len(listed)}, sockets {pooled}, "
                                 f"backends {sum(len(v) for v in ours.values())}, in transaction {in_transaction}")
        time.sleep(0.2)


def wait_for_replicas(primary_port: int, replica_ports: list[int], timeout: float = 30) -> None:
    """Until every replica has replayed the ledger table and its grant (reads go there from the first second)."""
    deadline = time.monotonic() + timeout
    for port in replica_ports:
        while True:
            try:
                with superuser(port) as su:
                    if su.execute(f"select to_regclass('{TABLE}') is not null and "
                                  f"has_table_privilege('app', '{TABLE}', 'select')").fetchone()[0]:
                        break
            except psycopg.Error:
                pass
            assert time.monotonic() < deadline, f"replica on port {port} did not replay the ledger table"
            time.sleep(0.1)


@pytest.fixture
def ledger_table(cluster, primary):
    with primary.connect() as c:
        create_table(c)
    wait_for_replicas(cluster.primary, cluster.replicas)
    return True


def report(name: str, summary: dict) -> None:
    """Prints the cost of a fault and appends it to CHAOS_REPORT (JSON lines; scripts/chaos.sh tabulates it)."""
    print(name, summary)
    path = os.environ.get("CHAOS_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"fault": name, **summary}) + "\n")


def run_workload(t, primary, fault, *, workers: int = 6, reads: bool = True, after: float = 2.0) -> dict:
    """Runs the ledger workload, lets it make progress, applies `fault()`, lets it recover and checks it. The
    summary adds `fault_s` (how long the fault phase lasted) and `outage_s`, the longest time from the start of the
    fault on during which no write committed: the time to recover from it."""
    ledger = Ledger(t.conninfo(), workers=workers, reads=reads, diagnose=lambda: admin_state(t)).start()
    try:
        ledger.wait_for_commits(20, timeout=20)
        fault_started = time.monotonic()
        fault(ledger)
        fault_s = time.monotonic() - fault_started
        ledger.wait_for_commits(20, timeout=30)  # it recovers and goes on
        time.sleep(after)
    finally:
        ledger.stop()
    with primary.connect() as c:
        summary = ledger.check(c)
    return {**summary, "fault_s": round(fault_s, 1), "outage_s": round(ledger.longest_outage(fault_started), 2)}


# --- faults ---------------------------------------------------------------------------------------------------


def test_replicas_killed_with_sigkill(pgcat, cluster, primary, ledger_table):
    t = pgcat(general=FAST, pool=RW, users=["app"],
              servers=[[HOST, cluster.primary, "primary"], [HOST, cluster.replica1, "replica"],
                       [HOST, cluster.replica2, "replica"]])

    def fault(ledger):
        for node in ("replica1", "replica2"):
            pid = int(open(f"{cluster_dir(cluster.primary)}/{node}/postmaster.pid").readline())
            os.kill(pid, signal.SIGKILL)
            time.sleep(PHASE / 2)
            cluster_script(cluster.primary, "start")  # brings it back
            time.sleep(1)

    summary = run_workload(t, primary, fault)
    settle_and_check_servers(t, [cluster.primary, cluster.replica1, cluster.replica2])
    report("replicas killed (SIGKILL, restarted)", summary)


def test_network_drops_and_delays_to_the_primary(pgcat, cluster, primary, ledger_table):
    proxy = FaultyProxy(cluster.primary)
    try:
        t = pgcat(general=FAST, users=["app"], servers=[[HOST, proxy.port, "primary"]])

        def fault(ledger):
            proxy.max_delay = 0.03
            end = time.monotonic() + PHASE
            while time.monotonic() < end:
                time.sleep(0.7)
                proxy.drop_all()
            proxy.refusing = True
            time.sleep(1.5)
            proxy.refusing = False
            proxy.max_delay = 0

        summary = run_workload(t, primary, fault, reads=False)
        assert summary["errors"], "the faults did not reach the clients"
        # the pooler's connections go through the proxy: check them on the proxy's side
        with admin(t) as a:
            assert len(a.execute("SHOW SERVERS").fetchall()) == len(pooler_ports_to(t.proc.pid, proxy.port))
        report("network to the primary: delays, resets, refusals", summary)
    finally:
        proxy.close()


def test_server_silent_with_query_timeout(pgcat, cluster, primary, ledger_table):
    """The path to the primary loses everything while its TCP connections stay up (a hung server looks the same):
    nothing but query_timeout can end the wait. Clients get 57014 and the workload goes on afterwards."""
    proxy = FaultyProxy(cluster.primary)
    try:
        t = pgcat(general=dict(FAST, query_timeout=2000), users=["app"], servers=[[HOST, proxy.port, "primary"]])

        def fault(ledger):
            proxy.blackhole = True
            time.sleep(max(PHASE / 2, 3.5))
            proxy.blackhole = False

        summary = run_workload(t, primary, fault, reads=False)
        assert summary["errors"].get("QueryCanceled", 0) > 0, summary
        assert summary["slowest_s"] < 2.0 + 1.0 + 2.0, "a client waited well past query_timeout"
        with admin(t) as a:
            assert len(a.execute("SHOW SERVERS").fetchall()) == len(pooler_ports_to(t.proc.pid, proxy.port))
        report("primary silent, connections up (query_timeout 2 s)", summary)
    finally:
        proxy.close()


def test_clients_killed_mid_transaction(pgcat, cluster, primary, ledger_table):
    t = pgcat(general=FAST, users=["app"], pool_size=4)
    killed: list[int] = []

    def fault(ledger):
        for n in range(30):
            conn = psycopg.connect(t.conninfo(), autocommit=True)
            conn.execute("begin")
            conn.execute(f"insert into {TABLE} (worker, seq) values (%s, %s)", (1000 + n, 1))
            killed.append(1000 + n)
            sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RDWR)  # gone in the middle of the transaction: no Terminate, a reset
            sock.close()
            try:
                conn.close()
            except Exception:
                pass
            time.sleep(PHASE / 30)

    summary = run_workload(t, primary, fault)
    with primary.connect() as c:
        leaked = c.execute(f"select count(*) from {TABLE} where worker >= 1000").fetchone()[0]
    assert leaked == 0, "a killed client's transaction was committed"
    settle_and_check_servers(t, [cluster.primary])
    report("clients killed mid-transaction", summary)


def test_config_reloaded_over_and_over(pgcat, cluster, primary, ledger_table):
    port = free_port()
    config = build_config(cluster, port, users=["app"], general=FAST, pool_size=4)
    t = pgcat(config=config)

    def fault(ledger):
        end = time.monotonic() + PHASE
        size = 4
        while time.monotonic() < end:
            size = 7 - size  # 4, 3, 4, ...
            config["pools"]["app"]["users"]["0"]["pool_size"] = size
            t.config_path.write_text(to_yaml(config))
            t.proc.send_signal(signal.SIGHUP)
            time.sleep(0.15)

    summary = run_workload(t, primary, fault)
    settle_and_check_servers(t, [cluster.primary])
    assert "reload refused" not in t.log()
    report("config reloaded every 150 ms (SIGHUP)", summary)


def test_max_client_conn_filled(pgcat, cluster, primary, ledger_table):
    workers = 4
    t = pgcat(general=dict(FAST, max_client_conn=workers + 10), users=["app"])
    extra: list[psycopg.Connection] = []

    def fault(ledger):
        refused = 0
        while len(extra) < 40:
            try:
                extra.append(psycopg.connect(t.conninfo(), autocommit=True, connect_timeout=5))
            except psycopg.OperationalError as error:
                assert "too many client connections" in str(error), str(error)
                refused += 1
                if refused >= 5:
                    break
        assert refused >= 5 and len(extra) <= 10
        time.sleep(PHASE / 2)
        for conn in extra:
            conn.close()

    summary = run_workload(t, primary, fault, workers=workers)
    settle_and_check_servers(t, [cluster.primary])
    report("max_client_conn filled", summary)


def test_primary_stopped_and_replica_promoted(pgcat, cluster):
    # Below the ephemeral port range, so that a client socket never holds port + 1 or + 2.
    port = cluster.primary + 10
    directory = f"/tmp/pgcat-chaos-{port}"
    try:
        cluster_script(port, "start", directory)
        own = Cluster(port, port + 1, port + 2)
        with superuser(own.primary) as su:
            create_table(su)
        t = pgcat(general=FAST, pool=RW, users=["app"],
                  servers=[[HOST, own.primary, "auto"], [HOST, own.replica1, "auto"], [HOST, own.replica2, "auto"]])
        wait_for_replicas(own.primary, own.replicas)
        ledger = Ledger(t.conninfo(), workers=6, reads=True, diagnose=lambda: admin_state(t)).start()
        try:
            ledger.wait_for_commits(20, timeout=20)
            fault_started = time.monotonic()
            # A clean stop sends the standbys everything committed before it exits: nothing committed may be lost.
            pg_ctl(f"{directory}/primary", "-m", "fast", "-w", "stop")
            pg_ctl(f"{directory}/replica1", "-w", "promote")
            fault_s = time.monotonic() - fault_started
            ledger.wait_for_commits(20, timeout=30)
            time.sleep(2)
        finally:
            ledger.stop()
        with superuser(own.replica1) as c:
            summary = ledger.check(c)
        assert summary["committed"] > 40
        report("primary stopped, replica promoted (role: auto)",
               {**summary, "fault_s": round(fault_s, 1), "outage_s": round(ledger.longest_outage(fault_started), 2)})
    finally:
        try:
            cluster_script(port, "reset", directory)
        except subprocess.CalledProcessError:
            pass


@pytest.mark.timeout(int(SOAK) + 300)
def test_soak_memory_stays_flat(pgcat, cluster, primary, ledger_table):
    """Connections come and go and transactions run for CHAOS_SOAK_SECONDS; the pooler's resident memory at the
    end is within 10% (and 8 MB) of what it was after the first quarter."""
    t = pgcat(general=FAST, pool=RW, users=["app"], servers=[[HOST, cluster.primary, "primary"],
                                                             [HOST, cluster.replica1, "replica"]])

    def rss_kb() -> int:
        return int(open(f"/proc/{t.proc.pid}/status").read().split("VmRSS:")[1].split()[0])

    stop = threading.Event()
    churned = [0]

    def churn():
        while not stop.is_set():
            try:
                with psycopg.connect(t.conninfo(), autocommit=True, connect_timeout=5) as c:
                    c.execute("select 1")
                churned[0] += 1
            except psycopg.Error:
                pass

    churner = threading.Thread(target=churn, daemon=True)
    churner.start()
    ledger = Ledger(t.conninfo(), workers=4, reads=True, diagnose=lambda: admin_state(t)).start()
    samples = []
    try:
        started = time.monotonic()
        while time.monotonic() - started < SOAK:
            time.sleep(max(1.0, SOAK / 40))
            samples.append((time.monotonic() - started, rss_kb()))
    finally:
        stop.set()
        churner.join(timeout=30)
        ledger.stop()
    with primary.connect() as c:
        summary = ledger.check(c)
    early = max(kb for at, kb in samples if at <= SOAK / 4)
    late = max(kb for at, kb in samples if at >= SOAK * 3 / 4)
    assert late <= max(early * 1.10, early + 8192), f"RSS grew from {early} kB to {late} kB: {samples}"
    report(f"soak: {SOAK:.0f} s of transactions and connection churn",
           {**summary, "rss_kb_early": early, "rss_kb_late": late, "churned_connections": churned[0]})
