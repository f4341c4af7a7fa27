"""Mirroring (`mirrors`): a copy of the traffic sent to a server goes to its mirror, best effort; a mirror that is
down or slow never fails or slows the main path. The mirror is the primary of a throwaway cluster."""

import time

import psycopg
import pytest

from support import HOST, free_port
from test_failover import cluster_script, pg_ctl

pytestmark = pytest.mark.pooler_only


def test_writes_reach_the_mirror_and_a_dead_mirror_changes_nothing(pgcat, cluster, primary):
    # Below the ephemeral port range (cluster.sh also takes port + 1 and + 2, which a client socket may hold near a
    # free_port()), and apart from test_failover's own cluster at + 10.
    mirror_port = cluster.primary + 20
    directory = f"/tmp/pgcat-mirror-{mirror_port}"
    cluster_script(mirror_port, "start", directory)
    try:
        for port in (cluster.primary, mirror_port):
            with psycopg.connect(host=HOST, port=port, user="postgres", password="postgres", dbname="app",
                                 autocommit=True) as su:
                su.execute("drop table if exists mirrored; create table mirrored (id int); grant all on mirrored to public")
        from support import build_config
        config = build_config(cluster, free_port(), users=["app"], pool_size=2,
                              servers=[[HOST, cluster.primary, "primary"]])
        config["pools"]["app"]["shards"]["0"]["mirrors"] = [[HOST, mirror_port, 0]]  # mirrors servers[0]
        t = pgcat(config=config)
        with t.connect() as c:
            c.execute("select 1")
            time.sleep(1)  # the mirror connection opens beside the server connection, asynchronously
            for n in range(20):
                c.execute("insert into mirrored values (%s)", (n,))
        with psycopg.connect(host=HOST, port=mirror_port, user="postgres", password="postgres", dbname="app") as m:
            deadline = time.monotonic() + 10
            while m.execute("select count(*) from mirrored").fetchone()[0] < 20:
                assert time.monotonic() < deadline, "the mirror did not get the writes"
                time.sleep(0.1)
        assert primary.value("select count(*) from mirrored") == 20
        # the mirror goes away: the main path goes on
        pg_ctl(f"{directory}/primary", "-m", "immediate", "-w", "stop")
        with t.connect() as c:
            for n in range(20, 40):
                c.execute("insert into mirrored values (%s)", (n,))
        assert primary.value("select count(*) from mirrored") == 40
    finally:
        try:
            cluster_script(mirror_port, "reset", directory)
        except Exception:  # noqa: BLE001
            pass
