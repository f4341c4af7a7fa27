"""Failures and failover on real servers: a replica stopped under load (banned, reads go on), back after ban_time;
a replica whose replay is paused leaves rotation under max_replica_lag_bytes; replica_to_primary_failover; and a
promotion with `role: auto` (writes reach the new primary without a reload) on a throwaway cluster."""

import os
import subprocess
import threading
import time

import psycopg
import pytest

from support import HOST, Cluster, cluster_script, free_port, pg_ctl, superuser

pytestmark = pytest.mark.pooler_only

FAST = {"ban_time": 2, "healthcheck_delay": 300, "healthcheck_timeout": 500, "connect_timeout": 3000}


def cluster_dir(port: int) -> str:
    return os.environ.get("PGCAT_CLUSTER_DIR") if port == int(os.environ.get("PGCAT_CLUSTER_PORT", "25432")) \
        and os.environ.get("PGCAT_CLUSTER_DIR") else f"/tmp/pgcat-cluster-{port}"


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def read_ports(t, n: int) -> set[int]:
    ports = set()
    with t.connect() as c:
        for _ in range(n):
            ports.add(c.execute("select inet_server_port()").fetchone()[0])
    return ports


def servers(cluster: Cluster, role: str = "replica"):
    return [[HOST, cluster.primary, "primary"], [HOST, cluster.replica1, role], [HOST, cluster.replica2, role]]


def test_stopped_replica_is_banned_reads_go_on_and_it_comes_back(pgcat, cluster):
    t = pgcat(pool_size=4, users=["app"], servers=servers(cluster), general=FAST,
              pool={"default_role": "replica"})
    assert read_ports(t, 30) == {cluster.replica1, cluster.replica2}
    stop = threading.Event()
    errors: list[str] = []
    done = [0]

    def reader():
        while not stop.is_set():
            try:
                with t.connect() as c:
                    for _ in range(20):
                        c.execute("select inet_server_port()")
                        done[0] += 1
            except psycopg.Error as e:  # only statements in flight on the stopped replica may fail
                errors.append(str(e).strip())

    threads = [threading.Thread(target=reader) for _ in range(6)]
    for th in threads:
        th.start()
    replica2 = f"{cluster_dir(cluster.primary)}/replica2"
    try:
        time.sleep(0.5)
        pg_ctl(replica2, "-m", "fast", "-w", "stop")
        before = done[0]
        wait_for(lambda: done[0] > before + 200, 20, "reads to continue on the other replica")
        stop.set()
        for th in threads:
            th.join(30)
        assert len(errors) <= 6, f"{len(errors)} client errors: {errors[:3]}"
        assert read_ports(t, 30) == {cluster.replica1}
        with t.connect(user="pgcat_admin", dbname="pgcat", password="pgcat_admin") as admin:
            bans = admin.execute("show bans").fetchall()
            assert [b[8] for b in bans] == [cluster.replica2], bans  # (column 9: the banned server's port)
    finally:
        stop.set()
        cluster_script(cluster.primary, "start")  # brings replica2 back
    # Back in rotation once the ban (2 s) has expired.
    wait_for(lambda: cluster.replica2 in read_ports(t, 20), 20, "the restarted replica to take reads again")


def test_read_is_retried_on_another_replica_when_one_cannot_be_reached(pgcat, cluster):
    dead = free_port()  # nothing listens here
    t = pgcat(pool_size=2, users=["app"], general={**FAST, "healthcheck_delay": 60000},
              servers=[[HOST, cluster.primary, "primary"], [HOST, dead, "replica"], [HOST, cluster.replica1, "replica"]],
              pool={"default_role": "replica"})
    with t.connect() as c:
        for _ in range(20):
            assert c.execute("select inet_server_port()").fetchone()[0] == cluster.replica1


def test_lagging_replica_leaves_rotation_and_returns(pgcat, cluster, primary):
    table = primary.make_table("lag_check", "id int, pad text")
    metrics_port = free_port()
    t = pgcat(pool_size=2, users=["app"], servers=servers(cluster),
              general=dict(FAST, enable_prometheus_exporter=True, prometheus_exporter_port=metrics_port),
              pool={"default_role": "replica", "max_replica_lag_bytes": 64 * 1024})
    assert read_ports(t, 30) == {cluster.replica1, cluster.replica2}

    def lag_series(port: int) -> tuple[float, float]:
        """(pgcat_servers_is_lagging, pgcat_servers_replica_lag_bytes) of the server on `port`."""
        import urllib.request
        from prometheus_client.parser import text_string_to_metric_families
        with urllib.request.urlopen(f"http://{HOST}:{metrics_port}/metrics", timeout=5) as response:
            families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
        index = str(servers(cluster).index([HOST, port, "replica"]))
        return tuple(next(s.value for s in families[name].samples if s.labels["index"] == index)
                     for name in ("pgcat_servers_is_lagging", "pgcat_servers_replica_lag_bytes"))

    assert lag_series(cluster.replica1)[0] == 0
    with superuser(cluster.replica1) as r1:
        r1.execute("select pg_wal_replay_pause()")
        try:
            primary.sql(f"insert into {table} select g, repeat('x', 200) from generate_series(1, 5000) g")
            wait_for(lambda: read_ports(t, 20) == {cluster.replica2}, 15, "the paused replica to leave rotation")
            lagging, lag = lag_series(cluster.replica1)  # operators see why it gets no reads
            assert lagging == 1 and lag > 64 * 1024, (lagging, lag)
            assert lag_series(cluster.replica2)[0] == 0
        finally:
            r1.execute("select pg_wal_replay_resume()")
    wait_for(lambda: cluster.replica1 in read_ports(t, 20), 15, "the replica to come back after catching up")


def test_replica_to_primary_failover(pgcat, cluster):
    with_failover = pgcat(pool_size=2, users=["app"], servers=servers(cluster), general=FAST,
                          pool={"default_role": "replica", "replica_to_primary_failover": True})
    without = pgcat(pool_size=2, users=["app"], servers=servers(cluster), general=FAST,
                    pool={"default_role": "replica"})
    base = cluster_dir(cluster.primary)
    try:
        pg_ctl(f"{base}/replica1", "-m", "fast", "-w", "stop")
        pg_ctl(f"{base}/replica2", "-m", "fast", "-w", "stop")
        wait_for(lambda: read_ports(with_failover, 5) == {cluster.primary}, 15, "reads to fail over to the primary")
        with pytest.raises(psycopg.Error):
            read_ports(without, 5)
    finally:
        cluster_script(cluster.primary, "start")


def test_promotion_with_auto_roles_moves_writes_without_reload(pgcat, cluster):
    # Three ports in a row, below the ephemeral range: a free port from the OS may have a client socket on port + 1
    # or + 2 (cluster.sh then failed to start once here, with another suite's connections churning beside it).
    port = cluster.primary + 10
    directory = f"/tmp/pgcat-failover-{port}"
    try:
        cluster_script(port, "start", directory)  # inside: a start that fails halfway is reset too
        own = Cluster(port, port + 1, port + 2)
        t = pgcat(pool_size=2, users=["app"], general=FAST,
                  servers=[[HOST, own.primary, "auto"], [HOST, own.replica1, "auto"], [HOST, own.replica2, "auto"]],
                  pool={"query_parser_enabled": True, "query_parser_read_write_splitting": True})
        with superuser(own.primary) as su:
            su.execute("create table failover_t (id int); grant all on failover_t to public")

        def write_port():
            try:
                with t.connect() as c:
                    return c.execute("insert into failover_t values (1) returning inet_server_port()").fetchone()[0]
            except psycopg.Error as error:
                last_error[0] = str(error).strip()
                return None

        last_error = [""]
        assert wait_for(write_port, 10, "a first write") == own.primary
        with superuser(own.replica1) as standby:  # replication is asynchronous: let the table reach the standby
            wait_for(lambda: standby.execute("select to_regclass('failover_t') is not null").fetchone()[0], 10,
                     "the table to replicate")
        pg_ctl(f"{directory}/primary", "-m", "immediate", "-w", "stop")
        pg_ctl(f"{directory}/replica1", "-w", "promote")
        started = time.monotonic()
        try:
            assert wait_for(lambda: write_port() == own.replica1, 15, "writes to reach the promoted replica")
        except AssertionError as failure:
            raise AssertionError(f"{failure}; last error: {last_error[0]}") from None
        assert time.monotonic() - started < 15
        # The admin console names servers by their detected role: the promoted one is the primary now.
        with psycopg.connect(host=t.host, port=t.port, user="pgcat_admin", password="pgcat_admin", dbname="pgcat",
                             autocommit=True) as a:
            def names():
                return {row[2]: row[0] for row in a.execute("show databases").fetchall()}
            assert wait_for(lambda: names().get(own.replica1) == "app_shard_0_primary", 10, "the name"), names()
            assert names().get(own.replica2) == "app_shard_0_replica_1", names()
            # The old primary starts again, not in recovery, on the old timeline: a stale primary. It must get no
            # writes (before, they were spread over both primaries and the data split) and no reads.
            pg_ctl(f"{directory}/primary", "-w", "-l", f"{directory}/primary-restarted.log", "start")

            def stale_bans():
                return [row for row in a.execute("show bans").fetchall() if row[8] == own.primary]
            assert wait_for(lambda: [row[4] for row in stale_bans()] == ["StalePrimary"], 10, "the stale primary's ban")
        assert {write_port() for _ in range(20)} == {own.replica1}
        with t.connect() as c:
            reads = {c.execute("select inet_server_port()").fetchone()[0] for _ in range(20)}
        assert own.primary not in reads, reads
        assert "taken as a stale primary" in t.log()
    finally:
        try:
            cluster_script(port, "reset", directory)
        except subprocess.CalledProcessError:
            pass


def test_no_reachable_server_is_08006_naming_pool_shard_and_role(pgcat, cluster):
    dead = free_port()  # nothing listens there
    t = pgcat(pool_size=1, users=["app"], servers=[[HOST, dead, "primary"]], general={"connect_timeout": 1000})
    with pytest.raises(psycopg.OperationalError) as failure:
        t.connect()  # the login itself needs a server (its parameters): FATAL 08006
    message = str(failure.value)
    assert "no healthy server for pool app/app" in message and "shard 0 primary" in message, message


def test_a_write_to_a_shard_without_a_primary_is_08006(pgcat, cluster):
    """A pool of replicas only: reads work; a write is refused by the pooler naming the shard and the role, not
    sent to a replica to fail there with 25006."""
    t = pgcat(pool_size=2, users=["app"], servers=[[HOST, cluster.replica1, "replica"]],
              pool={"query_parser_enabled": True, "query_parser_read_write_splitting": True})
    with t.connect() as c:
        assert c.execute("select pg_is_in_recovery()").fetchone() == (True,)
        with pytest.raises(psycopg.errors.ConnectionFailure) as failure:
            c.execute("create temp table never_here (x int)")
        message = str(failure.value)
        assert failure.value.diag.sqlstate == "08006"
        assert "no healthy server for pool app/app: shard 0 primary: the shard has no primary" in message, message
        assert c.execute("select 1").fetchone() == (1,)  # the session goes on
