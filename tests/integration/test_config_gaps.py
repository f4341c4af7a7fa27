"""Config behaviours no other test covered:

- `regex_search_limit` (pool key, default 1000): `shard_id_regex` / `sharding_key_regex` see only the first N bytes
  of a Query's (or Parse's) payload; a comment beyond them does not route, and the query goes to `default_shard`;
- the command line: `pgcat --config FILE` starts the pooler as `pgcat FILE` does, with no argument `pgcat.yaml` in
  the working directory, a missing file exits 78 naming the file, `--help` exits 0 and names `--config`;
- `default_shard: random_healthy`: queries that name no shard go, at random, only to shards with a server that is
  not banned (with `random`, as a control, they also reach the banned shard and fail).

Shards are the cluster's databases shard0, shard1, shard2; `current_database()` says which shard served a query."""

from __future__ import annotations

import os
import socket
import subprocess

import psycopg
import pytest

from pgwire import RawConn
from support import (
    EX_CONFIG, HOST, PGCAT_BIN, build_config, free_port, run_pgcat, stop_process, to_yaml, wait_for,
    spawn_pooler, wait_for_pooler,
)

pytestmark = pytest.mark.pooler_only

SHARD_ID_REGEX = r"/\* shard_id: (\d+) \*/"
SHARDING_KEY_REGEX = r"/\* sharding_key: (\d+) \*/"
ADMIN = {"user": "pgcat_admin", "password": "pgcat_admin", "dbname": "pgcat"}


def sharded_config(cluster, servers=None, **pool) -> dict:
    """Pool `sharded` (user app) with shards 0..2 on databases shard0..2; `servers[n]` replaces shard n's server."""
    config = build_config(cluster, free_port(), users=["app"], databases=("sharded",),
                          pool={"sharding_function": "pg_bigint_hash", **pool})
    config["pools"]["sharded"]["shards"] = {
        str(n): {"database": f"shard{n}", "servers": [(servers or {}).get(n, [HOST, cluster.primary, "primary"])]}
        for n in range(3)}
    return config


def shard_of_simple_query(t, sql: str) -> str:
    """Runs `sql` (a simple Query, bytes exactly as given) on a new connection; returns its one value."""
    with RawConn(t.host, t.port) as c:
        c.startup("app", "sharded", "app")
        [[value]] = c.query(sql)
        c.terminate()
        return value


def key_of_shard(t, shard: int) -> int:
    """A sharding key that the pooler's sharding function puts on `shard` (asked with SET SHARDING KEY)."""
    with t.connect(dbname="sharded") as c:
        for key in range(1, 1000):
            c.execute(f"SET SHARDING KEY TO '{key}'")
            if c.execute("SHOW SHARD").fetchone()[0] == str(shard):
                return key
    raise AssertionError(f"no key of shard {shard} below 1000")


def padded(comment: str, end: int) -> str:
    """`select current_database()`, spaces, then `comment`, whose last byte is byte number `end` (1-based)."""
    head = "select current_database() "
    pad = end - len(head) - len(comment)
    assert pad >= 0
    return head + " " * pad + comment


# ---------------------------------------------------------------------------------------------------------------
# regex_search_limit


@pytest.mark.parametrize("which", ["shard_id_regex", "sharding_key_regex"])
@pytest.mark.parametrize("limit", [60, None], ids=["limit_60", "default_1000"])
def test_regex_search_limit_boundary(pgcat, cluster, which, limit):
    """A routing comment whose last byte is byte N of the Query (N = regex_search_limit, 1000 when unset) routes to
    its shard; the same comment one byte later is not seen, and the query goes to default_shard (shard_1)."""
    pool = {which: SHARD_ID_REGEX if which == "shard_id_regex" else SHARDING_KEY_REGEX, "default_shard": "shard_1"}
    if limit is not None:
        pool["regex_search_limit"] = limit
    t = pgcat(config=sharded_config(cluster, **pool))
    n = limit if limit is not None else 1000
    if which == "shard_id_regex":
        comment = "/* shard_id: 2 */"
    else:
        comment = f"/* sharding_key: {key_of_shard(t, 2)} */"
    # sanity: without a comment the pool uses its default shard, and at the very start the comment routes
    assert shard_of_simple_query(t, "select current_database()") == "shard1"
    assert shard_of_simple_query(t, comment + " select current_database()") == "shard2"
    assert shard_of_simple_query(t, padded(comment, n)) == "shard2", f"comment ending at byte {n} was not seen"
    assert shard_of_simple_query(t, padded(comment, n + 1)) == "shard1", \
        f"comment ending at byte {n + 1} routed although regex_search_limit is {n}"


def test_regex_search_limit_applies_to_parse(pgcat, cluster):
    """Extended protocol (Parse with a parameter): the limit holds for the Parse's text as for a Query's."""
    t = pgcat(config=sharded_config(cluster, shard_id_regex=SHARD_ID_REGEX, default_shard="shard_1",
                                    regex_search_limit=40))
    within = "/* shard_id: 2 */ select current_database(), %s::int"
    beyond = "select current_database(), %s::int" + " " * 40 + "/* shard_id: 2 */"
    for sql, expected in ((within, "shard2"), (beyond, "shard1")):
        with t.connect(dbname="sharded") as c:
            assert c.execute(sql, (7,)).fetchone() == (expected, 7), sql


def test_regex_search_limit_zero_turns_comment_routing_off(pgcat, cluster):
    """regex_search_limit: 0 searches nothing: even a comment at the start of the query does not route."""
    t = pgcat(config=sharded_config(cluster, shard_id_regex=SHARD_ID_REGEX, default_shard="shard_1",
                                    regex_search_limit=0))
    assert shard_of_simple_query(t, "/* shard_id: 2 */ select current_database()") == "shard1"
    with t.connect(dbname="sharded") as c:  # SET SHARD is not a comment: it still works
        c.execute("SET SHARD TO '2'")
        assert c.execute("select current_database()").fetchone() == ("shard2",)


# ---------------------------------------------------------------------------------------------------------------
# The command line


def clean_env() -> dict:
    env = dict(os.environ)
    env.pop("CONFIG_FILE", None)
    return env


def start_binary(args: list[str], cwd, port: int, log_path) -> subprocess.Popen:
    """Starts the binary with `args` (no config path appended) and waits until it accepts connections."""
    proc = spawn_pooler(args, log_path=log_path, cwd=cwd, env=clean_env())
    wait_for_pooler(proc, port, lambda: f"--- output ---\n{log_path.read_text(errors='replace')[-5000:]}")
    return proc


@pytest.mark.parametrize("form", ["positional", "--config", "default pgcat.yaml"])
def test_config_file_forms_start_the_pooler(cluster, tmp_path, form):
    """`pgcat FILE`, `pgcat --config FILE` and plain `pgcat` (./pgcat.yaml) each load the file and serve its pools."""
    port = free_port()
    name = "pgcat.yaml" if form == "default pgcat.yaml" else "conf.yaml"
    path = tmp_path / name
    path.write_text(to_yaml(build_config(cluster, port, users=["app"])))
    args = {"positional": [str(path)], "--config": ["--config", str(path)], "default pgcat.yaml": []}[form]
    proc = start_binary(args, tmp_path, port, tmp_path / "pgcat.log")
    try:
        with psycopg.connect(host=HOST, port=port, user="app", password="app", dbname="app", autocommit=True,
                             connect_timeout=10) as c:
            assert c.execute("select current_database(), inet_server_port()").fetchone() == ("app", cluster.primary)
        with psycopg.connect(host=HOST, port=port, autocommit=True, connect_timeout=10, **ADMIN) as a:
            cur = a.execute("SHOW CONFIG")
            names = [d.name for d in cur.description]
            rows = {r[names.index("key")]: r[names.index("value")] for r in cur.fetchall()}
        assert rows.get("port") == str(port), rows.get("port")
        assert proc.poll() is None
    finally:
        stop_process(proc)


@pytest.mark.parametrize("form", ["positional", "--config", "default pgcat.yaml"])
def test_missing_config_file_exits_78_naming_it(tmp_path, form):
    """A config file that does not exist: exit 78 (EX_CONFIG) at once, with a message naming the file."""
    missing = tmp_path / "no-such-dir" / "missing.yaml"
    args = {"positional": [str(missing)], "--config": ["--config", str(missing)], "default pgcat.yaml": []}[form]
    named = "pgcat.yaml" if form == "default pgcat.yaml" else str(missing)
    try:
        r = subprocess.run([PGCAT_BIN, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=15, cwd=tmp_path, env=clean_env())
    except subprocess.TimeoutExpired:
        pytest.fail(f"pgcat {' '.join(args)} did not exit for a missing config file")
    assert r.returncode == EX_CONFIG, r.stdout
    assert f"'{named}'" in r.stdout, r.stdout


def test_help_exits_0_and_documents_config_option():
    """`pgcat --help` exits 0 and lists --config alongside the positional config file."""
    r = run_pgcat(["--help"], timeout=15)
    assert r.returncode == 0, r.stdout
    assert "--config" in r.stdout and "USAGE" in r.stdout.upper(), r.stdout


# ---------------------------------------------------------------------------------------------------------------
# default_shard: random_healthy


def disabled_by_port(t) -> dict[int, int]:
    """SHOW DATABASES' `disabled` (banned) per server port, for pool sharded."""
    with psycopg.connect(host=t.host, port=t.port, autocommit=True, connect_timeout=10, **ADMIN) as a:
        cur = a.execute("SHOW DATABASES")
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
    return {int(r["port"]): int(r["disabled"]) for r in rows if r["name"].startswith("sharded_")}


def ban_dead_shard(t, dead_port: int) -> None:
    """Sends queries to shard 0 (whose replica is down) until its failed connect has banned it."""

    def attempt():
        try:
            with t.connect(dbname="sharded", connect_timeout=5) as c:
                c.execute("SET SHARD TO '0'")
                c.execute("select 1")
        except psycopg.Error:
            pass
        return disabled_by_port(t).get(dead_port) == 1

    assert wait_for(attempt, 30, 0.2), f"shard 0's server (port {dead_port}) was never banned: {disabled_by_port(t)}"


@pytest.fixture
def refused_port():
    """A port bound but never listened on: connections to it are refused, and no other process can take it."""
    s = socket.socket()
    s.bind((HOST, 0))
    yield s.getsockname()[1]
    s.close()


@pytest.mark.parametrize("mode", ["random_healthy", "random"])
def test_default_shard_random_healthy_avoids_banned_shards(pgcat, cluster, refused_port, mode):
    """Shards made of one replica each, shard 0's down and banned: with random_healthy every query without a shard
    succeeds, on shard 1 or shard 2 (both used); with random (the control) some land on shard 0 and fail.

    A read whose server cannot be reached is retried twice, and each try draws its random shard again, so with
    random a query fails only when all three draws hit shard 0 (1 in 27): the control goes on until a client
    fails, up to 300 clients (the chance that none does is below 1e-13)."""
    dead = refused_port
    servers = {0: [HOST, dead, "replica"], 1: [HOST, cluster.replica1, "replica"], 2: [HOST, cluster.replica2, "replica"]}
    config = sharded_config(cluster, servers, default_shard=mode)
    config["general"]["ban_time"] = 300  # the ban lasts the whole test
    t = pgcat(config=config)
    ban_dead_shard(t, dead)
    seen: dict[str, int] = {}
    failures = 0
    clients = 30 if mode == "random_healthy" else 300
    for _ in range(clients):
        try:
            with t.connect(dbname="sharded", connect_timeout=5) as c:
                for _ in range(3):  # transaction mode: each query picks its shard anew
                    db = c.execute("select current_database()").fetchone()[0]
                    seen[db] = seen.get(db, 0) + 1
        except psycopg.Error:
            failures += 1
            if mode == "random":
                break
    assert disabled_by_port(t).get(dead) == 1, "the ban ended during the test"
    if mode == "random_healthy":
        assert failures == 0, f"{failures} of 30 clients failed: a banned shard was chosen ({seen})"
        assert set(seen) == {"shard1", "shard2"}, seen
    else:
        assert failures > 0, f"random never failed a query on the banned shard 0 in {clients} clients ({seen}): the control is void"
    assert t.proc.poll() is None
