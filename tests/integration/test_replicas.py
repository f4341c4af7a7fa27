"""Pools with the two streaming replicas: replica-only reads are served by replicas, and random load balancing
spreads them over both."""

import pytest

from support import HOST


@pytest.mark.pooler_only
def test_default_role_replica_reads_from_replicas(pgcat, cluster):
    servers = [[HOST, cluster.primary, "primary"], [HOST, cluster.replica1, "replica"], [HOST, cluster.replica2, "replica"]]
    t = pgcat(pool_size=2, servers=servers, pool={"default_role": "replica", "load_balancing_mode": "random"})
    ports = set()
    for _ in range(40):
        with t.connect() as c:
            in_recovery, port = c.execute("select pg_is_in_recovery(), inet_server_port()").fetchone()
            assert in_recovery is True
            ports.add(port)
    assert ports == {cluster.replica1, cluster.replica2}, ports


@pytest.mark.pooler_only
def test_default_role_primary_goes_to_primary(pgcat, cluster, primary):
    table = primary.make_table("it_role_primary")
    servers = [[HOST, cluster.primary, "primary"], [HOST, cluster.replica1, "replica"]]
    t = pgcat(pool_size=2, servers=servers, pool={"default_role": "primary"})
    with t.connect() as c:
        for i in range(10):
            c.execute(f"insert into {table} values (%s, 'w')", (i,))
            assert c.execute("select pg_is_in_recovery()").fetchone()[0] is False
    assert primary.value(f"select count(*) from {table}") == 10
