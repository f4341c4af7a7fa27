"""Admin KILL and RECONNECT name a pool (the database clients connect to), which need not be the backend database:
here the pools `aliasdb` and `app` both use the backend database `app` (pools.aliasdb.shards.0.database = app).
docs/operations.md: `RECONNECT [db]` replaces every server connection of the pool(s), idle ones now; `KILL db` closes
that database's clients (FATAL 57P01) and server connections and pauses it until `RESUME db`. Which backend a
client's server connection is comes from pg_backend_pid() through the pooler and pg_stat_activity on the primary."""

import copy
import time

import psycopg
import pytest

from pgwire import RawConn
from support import build_config, free_port, wait_for
from test_admin import Background, admin, backend_pid, show

pytestmark = pytest.mark.pooler_only


def aliased(cluster, *, with_app_pool: bool = True) -> dict:
    """Pools `aliasdb` (and `app`, when asked) on the backend database app; one server connection each."""
    config = build_config(cluster, free_port(), pool_size=1, users=["app"])
    base = config["pools"].pop("app")
    assert base["shards"]["0"]["database"] == "app"
    config["pools"]["aliasdb"] = copy.deepcopy(base)
    if with_app_pool:
        config["pools"]["app"] = copy.deepcopy(base)
    return config


def paused_by_pool(a) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for r in show(a, "DATABASES"):
        out.setdefault(r["name"].split("_shard_")[0], set()).add(r["paused"])
    return out


def backend_alive(primary, pid: int) -> bool:
    return bool(primary.value("select count(*) from pg_stat_activity where pid = %s", (pid,)))


def test_kill_by_pool_name(pgcat, cluster, primary):
    t = pgcat(config=aliased(cluster))
    raw = RawConn(t.host, t.port)
    raw.startup("app", "aliasdb", "app")
    assert raw.query("select current_database()") == [["app"]]
    with t.connect(dbname="aliasdb") as victim, t.connect(dbname="app") as survivor, admin(t) as a:
        victim_pid = backend_pid(victim)
        survivor_pid = backend_pid(survivor)
        assert victim_pid != survivor_pid, "two pools, two server connections"
        assert a.execute("KILL aliasdb").statusmessage == "KILL"

        err = raw.read_error()
        assert err.sqlstate == "57P01" and err.severity == "FATAL", err.fields
        assert raw.wait_closed(5)
        with pytest.raises(psycopg.OperationalError):
            victim.execute("select 1")
        # the pool with the same backend database but another name is untouched
        assert backend_pid(survivor) == survivor_pid
        assert wait_for(lambda: not backend_alive(primary, victim_pid)), "aliasdb's server connection stayed open"
        assert backend_alive(primary, survivor_pid)
        assert paused_by_pool(a) == {"aliasdb": {1}, "app": {0}}

        newcomer = t.connect(dbname="aliasdb")
        query = Background(lambda: newcomer.execute("select 5").fetchone()[0])
        time.sleep(0.8)
        assert not query.done, "a query ran on a killed (paused) pool"
        assert a.execute("RESUME aliasdb").statusmessage == "RESUME aliasdb"
        assert query.wait(5) == 5
        newcomer.close()
    raw.close()


def test_reconnect_by_pool_name(pgcat, cluster, primary):
    t = pgcat(config=aliased(cluster))
    with t.connect(dbname="aliasdb") as aliased_client, t.connect(dbname="app") as other, admin(t) as a:
        before = backend_pid(aliased_client)
        other_before = backend_pid(other)
        assert a.execute("RECONNECT aliasdb").statusmessage == "RECONNECT"
        after = backend_pid(aliased_client)
        assert after != before, "aliasdb's idle server connection survived RECONNECT aliasdb"
        assert wait_for(lambda: not backend_alive(primary, before))
        assert backend_pid(other) == other_before, "RECONNECT aliasdb replaced the app pool's connection"
        assert aliased_client.execute("select current_database()").fetchone()[0] == "app"


def test_the_backend_database_name_is_not_a_pool_name(pgcat, cluster):
    t = pgcat(config=aliased(cluster, with_app_pool=False))
    with t.connect(dbname="aliasdb") as c, admin(t) as a:
        pid = backend_pid(c)
        with pytest.raises(psycopg.Error, match="No such database"):
            a.execute("KILL app")
        with pytest.raises(psycopg.Error, match="No such database"):
            a.execute("RECONNECT app")
        assert backend_pid(c) == pid, "KILL/RECONNECT of the backend's name touched the aliasdb pool"
        assert paused_by_pool(a) == {"aliasdb": {0}}
