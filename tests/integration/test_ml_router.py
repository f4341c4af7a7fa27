"""The ML router on real servers with the stand-in pgml schema: GPU inference runs only on servers tagged for it,
through their own inference pools; pgml writes run on the primary; a model keeps its home server; cold starts are
counted; a full or slow inference queue gives 53400; a stopped GPU server leads to the configured fallback."""

import threading
import time

import psycopg
import pytest

from support import HOST, wait_on_replicas
from test_failover import FAST, cluster_dir, cluster_script, pg_ctl

pytestmark = pytest.mark.pooler_only

EMBED = "select pgml.embed(%s, 'hello') is not null, inet_server_port()"


def ml_pool(cluster, gpu_replicas=(2,), **ml):
    gpu_ports = {1: cluster.replica1, 2: cluster.replica2}
    servers = [[HOST, cluster.primary, "primary"]]
    for number in (1, 2):
        entry = {"host": HOST, "port": gpu_ports[number], "role": "replica"}
        if number in gpu_replicas:
            entry["tags"] = ["gpu"]
        servers.append(entry)
    settings = {"enabled": True, "target_tags": ["gpu"], "inference_pool_size": 2, "queue_max": 50,
                "queue_timeout": 2000, "fallback": "error"}
    settings.update(ml)
    return {"servers": servers,
            "pool": {"query_parser_enabled": True, "query_parser_read_write_splitting": True,
                     "primary_reads_enabled": False, "ml_routing": settings}}


def start(pgcat, cluster, gpu_replicas=(2,), general=None, **ml):
    spec = ml_pool(cluster, gpu_replicas, **ml)
    return pgcat(pool_size=2, users=["app"], servers=spec["servers"], pool=spec["pool"], general=general or {})


def admin(t):
    return t.connect(user="pgcat_admin", dbname="pgcat", password="pgcat_admin")


def test_inference_runs_on_gpu_servers_and_writes_on_the_primary(pgcat, cluster, pgml):
    t = start(pgcat, cluster)
    with t.connect() as c:
        for model in ("intfloat/e5-small-v2", "BAAI/bge-small-en"):
            for _ in range(10):
                assert c.execute(EMBED, (model,)).fetchone() == (True, cluster.replica2)
        # dedicated: ordinary reads avoid the GPU server
        assert {c.execute("select inet_server_port()").fetchone()[0] for _ in range(20)} == {cluster.replica1}
        trained = c.execute("select * from pgml.train('ml_it_project', 'regression', 'it_train_data', 'y')").fetchall()
        assert trained[0][0] == "ml_it_project"
        # a write that runs inference goes to the primary
        c.execute("drop table if exists ml_it_vectors")
        c.execute("create table ml_it_vectors (v real[])")
        c.execute("insert into ml_it_vectors select pgml.embed('intfloat/e5-small-v2', 'x')")
    with admin(t) as a:
        rows = a.execute("show ml_models").fetchall()
        columns = [d.name for d in a.execute("show ml_models").description]
        assert columns == ["pool", "model", "server", "in_flight", "queued", "requests", "errors", "cold_starts",
                           "avg_exec_ms"]
        by_model = {r[1]: r for r in rows}
        assert by_model["intfloat/e5-small-v2"][5] == 10 and by_model["BAAI/bge-small-en"][5] == 10
        assert all(r[2] == f"{HOST}:{cluster.replica2}" and r[0] == "app/app" for r in rows)
        # one backend ran both models: each cost one cold start there
        assert by_model["intfloat/e5-small-v2"][7] >= 1 and by_model["intfloat/e5-small-v2"][7] <= 2
        queues = a.execute("show ml_queues").fetchall()
        assert [(q[0], q[1]) for q in queues] == [("app/app", f"{HOST}:{cluster.replica2}")]


def test_models_keep_their_home_server(pgcat, cluster, pgml):
    t = start(pgcat, cluster, gpu_replicas=(1, 2))
    models = [f"model-{n}" for n in range(6)]
    homes: dict[str, list[int]] = {m: [] for m in models}
    with t.connect() as c:
        for _ in range(10):
            for m in models:
                homes[m].append(c.execute(EMBED, (m,)).fetchone()[1])
    for m, ports in homes.items():
        home = max(set(ports), key=ports.count)
        assert ports.count(home) >= 0.95 * len(ports), (m, ports)
    assert {max(set(p), key=p.count) for p in homes.values()} == {cluster.replica1, cluster.replica2}, \
        "six models spread over both GPU servers"


def test_a_transaction_that_writes_stays_off_the_gpu_server(pgcat, cluster, pgml):
    t = start(pgcat, cluster)
    with t.connect() as c:
        c.execute("drop table if exists ml_it_log; create table ml_it_log (n int)")
        # a plain BEGIN with inference: the whole transaction is the primary's, so its later INSERT works
        cur = c.execute("begin; select pgml.embed('m', 'x') is not null, inet_server_port()")
        cur.nextset()  # the BEGIN's result comes first
        assert cur.fetchone()[1] == cluster.primary
        c.execute("insert into ml_it_log values (1)")
        c.execute("commit")
        # SET SERVER ROLE fixes the route: no inference pool
        c.execute("SET SERVER ROLE TO 'primary'")
        assert c.execute(EMBED, ("m",)).fetchone()[1] == cluster.primary


BARE_EMBED = "select embed(%s, 'hello') is not null, inet_server_port()"


def test_unqualified_calls_follow_the_search_path(pgcat, cluster, pgml):
    """reference/pgml.md §3.1: `embed(...)` without a schema is pgml's when the search_path names pgml (the login's
    `search_path`, or a SET earlier in the same transaction), and whatever else the path finds otherwise: here a
    public.embed, an ordinary read that keeps off the GPU server."""
    with psycopg.connect(host=HOST, port=cluster.primary, user="postgres", password="postgres", dbname="app",
                         autocommit=True) as su:
        su.execute("create or replace function public.embed(text, text) returns text language sql "
                   "as $$ select 'public' $$")
    wait_on_replicas(cluster, "select to_regprocedure('public.embed(text, text)') is not null", "public.embed")
    t = start(pgcat, cluster)
    with t.connect() as c:  # the server's search_path: "$user", public
        assert {c.execute(BARE_EMBED, ("m",)).fetchone()[1] for _ in range(5)} == {cluster.replica1}
        cur = c.execute("set search_path to pgml, public; select embed('m', 'hello')::text, inet_server_port()")
        cur.nextset()
        row = cur.fetchone()
        assert row[1] == cluster.replica2 and row[0] != "public"
        # A SET does not outlive its transaction in transaction mode (its server connection is reset).
        assert c.execute("select embed('m', 'hello')::text, inet_server_port()").fetchone() == ("public", cluster.replica1)
        # SET LOCAL counts for the rest of its transaction
        cur = c.execute("begin read only; set local search_path to pgml, public; "
                        "select embed('m', 'hello')::text, inet_server_port()")
        cur.nextset()
        cur.nextset()
        row = cur.fetchone()
        assert row[1] == cluster.replica2 and row[0] != "public"
        c.execute("commit")
    with t.connect(options="-c search_path=pgml,public") as c:
        assert {c.execute(BARE_EMBED, ("m",)).fetchone()[1] for _ in range(5)} == {cluster.replica2}
        cur = c.execute("set search_path to public; select embed('m', 'hello')::text, inet_server_port()")
        cur.nextset()
        assert cur.fetchone() == ("public", cluster.replica1)
        # RESET goes back to the server's default ("$user", public), not to the login's value
        cur = c.execute("reset search_path; select embed('m', 'hello')::text, inet_server_port()")
        cur.nextset()
        assert cur.fetchone() == ("public", cluster.replica1)
        # pg_catalog's functions and window calls stay ordinary reads
        assert c.execute("select version() is not null, rank() over (), inet_server_port()").fetchone()[2] == cluster.replica1
        assert c.execute(BARE_EMBED, ("m",)).fetchone() == (True, cluster.replica2)
    with admin(t) as a:
        requests = {r[1]: r[5] for r in a.execute("show ml_models").fetchall()}
        assert requests.get("m") == 8


def test_parameterised_model_key_from_bind(pgcat, cluster, pgml):
    t = start(pgcat, cluster, gpu_replicas=(1, 2))
    with t.connect(prepare_threshold=0) as c:
        ports = [c.execute(EMBED, ("model-3",)).fetchone()[1] for _ in range(10)]
    assert len(set(ports)) == 1, "a prepared statement's model comes from its Bind and keeps its home"


def test_sql_level_execute_runs_its_prepared_inference_on_the_models_home(pgcat, cluster, pgml):
    """`PREPARE e AS SELECT pgml.embed($1, ...)` then `EXECUTE e('model')`: the EXECUTE is GPU inference, its model
    read from the EXECUTE's argument, so each model keeps one home server and SHOW ML_MODELS names it."""
    t = start(pgcat, cluster)
    with t.connect() as c:
        c.execute("prepare e(text) as select pgml.embed($1, 'hello') is not null, inet_server_port()")
        for model in ("intfloat/e5-small-v2", "BAAI/bge-small-en"):
            for _ in range(3):
                assert c.execute(f"execute e('{model}')").fetchone() == (True, cluster.replica2)
        # a prepared statement without pgml stays an ordinary statement
        c.execute("prepare plain as select inet_server_port()")
        assert c.execute("execute plain").fetchone()[0] != cluster.replica2
    with admin(t) as a:
        requests = {r[1]: r[5] for r in a.execute("show ml_models").fetchall()}
        assert requests.get("intfloat/e5-small-v2") == 3 and requests.get("BAAI/bge-small-en") == 3, requests
    t2 = start(pgcat, cluster, gpu_replicas=(1, 2))
    with t2.connect() as c:
        c.execute("prepare e(text) as select pgml.embed($1, 'hello') is not null, inet_server_port()")
        homes = {m: {c.execute(f"execute e('{m}')").fetchone()[1] for _ in range(6)} for m in ("model-1", "model-2", "model-3")}
    assert all(len(ports) == 1 for ports in homes.values()), homes


def test_full_queue_and_queue_timeout_give_53400(pgcat, cluster, pgml):
    t = start(pgcat, cluster, inference_pool_size=1, queue_max=1, queue_timeout=1500)
    holder = t.connect()
    # The only inference connection, held by an open read-only transaction that starts with the inference (a
    # plain BEGIN would put the whole transaction on the primary).
    holder.execute("begin read only; select pgml.embed('m', 'hello')")
    errors: list[Exception] = []

    def waiter():
        try:
            with t.connect() as w:
                w.execute(EMBED, ("m",))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    th = threading.Thread(target=waiter)
    th.start()
    time.sleep(0.4)  # the waiter is queued
    with t.connect() as c:
        with pytest.raises(psycopg.errors.ConfigurationLimitExceeded, match="inference queue full for model m"):
            c.execute(EMBED, ("m",))
        # ordinary queries are not held up by the inference queue
        assert c.execute("select 1").fetchone() == (1,)
    th.join(10)
    assert len(errors) == 1 and isinstance(errors[0], psycopg.errors.ConfigurationLimitExceeded), errors
    assert "timed out after 1500 ms waiting for an inference connection for model m" in str(errors[0])
    holder.execute("rollback")
    holder.close()


@pytest.mark.parametrize("fallback", ["replicas", "error"])
def test_stopped_gpu_server_leads_to_the_fallback(pgcat, cluster, pgml, fallback):
    t = start(pgcat, cluster, fallback=fallback, general=FAST)
    with t.connect() as c:
        assert c.execute(EMBED, ("m",)).fetchone()[1] == cluster.replica2
    replica2 = f"{cluster_dir(cluster.primary)}/replica2"
    try:
        pg_ctl(replica2, "-m", "fast", "-w", "stop")
        deadline = time.monotonic() + 10
        while True:
            try:
                with t.connect() as c:
                    port = c.execute(EMBED, ("m",)).fetchone()[1]
                if fallback == "replicas":
                    assert port == cluster.replica1
                    break
            except psycopg.Error as e:
                if fallback == "error" and "no healthy server tagged" in str(e):
                    break
            assert time.monotonic() < deadline, f"no {fallback} fallback seen"
            time.sleep(0.2)
    finally:
        cluster_script(cluster.primary, "start")


def test_model_statement_timeout_cancels_the_inference(pgcat, cluster, pgml):
    t = start(pgcat, cluster, statement_timeout=0,
              models=[{"match": "slow/*", "statement_timeout": 400}])
    with t.connect() as c:
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled) as cancelled:
            # a cold load of 5 s (the stand-in's simulated model loading), cut at 400 ms
            c.execute("begin read only; set local pgml_stub.cold_ms = 5000; select pgml.embed('slow/model', 'x')")
        assert time.monotonic() - started < 3
        assert "canceling statement due to statement timeout" in str(cancelled.value), str(cancelled.value)
        c.execute("rollback")
        # other models have no timeout
        assert c.execute(EMBED, ("fast/model",)).fetchone()[0] is True
    with admin(t) as a:
        rows = {r[1]: r for r in a.execute("show ml_models").fetchall()}
        assert rows["slow/model"][6] == 1, "the cancelled statement counts as an error"


def test_cpu_inference_keeps_a_project_on_one_replica(pgcat, cluster, pgml):
    t = start(pgcat, cluster, dedicated=False)  # both replicas take reads
    with t.connect() as c:
        c.execute("select * from pgml.train('ml_cpu_project', 'regression', 'it_train_data', 'y')")
    for port in cluster.replicas:  # the deployment must reach the replicas (asynchronous replication)
        with psycopg.connect(host=HOST, port=port, user="postgres", password="postgres", dbname="app",
                             autocommit=True) as standby:
            deadline = time.monotonic() + 20
            while not standby.execute("select exists (select from pgml.deployments d join pgml.projects p "
                                      "on p.id = d.project_id where p.name = 'ml_cpu_project')").fetchone()[0]:
                assert time.monotonic() < deadline
                time.sleep(0.1)
    with t.connect() as c:
        # ordinary reads spread over both replicas ...
        assert {c.execute("select inet_server_port()").fetchone()[0] for _ in range(30)} == \
            {cluster.replica1, cluster.replica2}
        # ... a project's predictions stay on one of them (its model stays loaded there)
        ports = {c.execute("select pgml.predict('ml_cpu_project', ARRAY[1.0]::real[]), inet_server_port()").fetchone()[1]
                 for _ in range(30)}
        assert len(ports) == 1 and ports <= {cluster.replica1, cluster.replica2}, ports


@pytest.mark.parametrize("limit, expected_cold", [(None, 2), (1, 1)])
def test_max_connections_per_server_bounds_the_backends_that_load_a_model(pgcat, cluster, pgml, limit, expected_cold):
    models = [{"match": "big/*", "max_connections_per_server": limit}] if limit else []
    t = start(pgcat, cluster, inference_pool_size=2, models=models)
    barrier = threading.Barrier(2)
    errors: list[Exception] = []

    def worker():
        try:
            with t.connect() as c:
                barrier.wait()
                for _ in range(4):
                    c.execute("select pg_sleep(0.05), pgml.embed('big/model', 'x') is not null")
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert not errors, errors
    with admin(t) as a:
        row = [r for r in a.execute("show ml_models").fetchall() if r[1] == "big/model"][0]
    assert row[5] == 8, row
    assert row[7] == expected_cold, f"cold starts {row[7]}, expected {expected_cold}"


def test_inference_inside_a_transaction_routed_elsewhere_is_counted(pgcat, cluster, pgml):
    import urllib.request
    from support import free_port
    metrics_port = free_port()
    t = start(pgcat, cluster, general={"enable_prometheus_exporter": True, "prometheus_exporter_port": metrics_port})
    with t.connect() as c:
        c.execute("begin")  # a plain BEGIN: the primary
        assert c.execute(EMBED, ("m",)).fetchone()[1] == cluster.primary
        c.execute("commit")
        assert c.execute(EMBED, ("m",)).fetchone()[1] == cluster.replica2
    text = urllib.request.urlopen(f"http://{HOST}:{metrics_port}/metrics", timeout=5).read().decode()
    line = [l for l in text.splitlines() if l.startswith("pgcat_ml_misplaced_total{")][0]
    assert line.endswith(" 1"), line


def test_asyncpg_first_inference_of_a_connection_runs_on_a_gpu_server(pgcat, cluster, pgml):
    """asyncpg prepares with Parse, Describe, Flush and binds later; the statement cache answers the Parse, so the
    Describe leases: it must go to the inference pool (before, each connection's first inference ran on an untagged
    server, also with `fallback: error`)."""
    import asyncio

    t = start(pgcat, cluster)
    parameter = "select pgml.embed($1, 'hello') is not null, inet_server_port()"
    literal = "select pgml.embed('m-literal', 'hello') is not null, inet_server_port()"

    async def first_inference(query, *args):
        conn = await t.aconnect(statement_cache_size=100)  # asyncpg's default: named statements
        try:
            return (await conn.fetchrow(query, *args))[1]
        finally:
            await conn.close()

    async def run():
        ports = [await first_inference(parameter, "m-param") for _ in range(3)]
        ports += [await first_inference(literal) for _ in range(3)]
        conn = await t.aconnect(statement_cache_size=100)
        try:
            statement = await conn.prepare(parameter)
            ports += [(await statement.fetchrow("m-param"))[1] for _ in range(2)]
        finally:
            await conn.close()
        return ports

    assert asyncio.run(asyncio.wait_for(run(), 30)) == [cluster.replica2] * 8


@pytest.mark.parametrize("rw_split", [True, False], ids=["rw_split", "no_rw_split"])
def test_unnamed_inference_bound_in_a_later_unit_runs_on_a_gpu_server(pgcat, cluster, pgml, rw_split):
    """asyncpg without its statement cache, and with it for texts over 15 KiB, prepares the unnamed statement with
    Parse, Describe, Flush and binds it next: the Bind is classified by the saved text (before, with read/write
    splitting it was routed by default_role, to the primary or a CPU replica, also with fallback: error)."""
    import asyncio

    spec = ml_pool(cluster)
    spec["pool"]["query_parser_read_write_splitting"] = rw_split
    t = pgcat(pool_size=2, users=["app"], servers=spec["servers"], pool=spec["pool"])
    query = "select pgml.embed($1, 'hello') is not null, inet_server_port()"
    long_query = query + " /* " + "x" * 16_000 + " */"

    async def run():
        ports = []
        for cache, text in ((0, query), (100, long_query)):
            conn = await t.aconnect(statement_cache_size=cache)
            try:
                ports += [(await conn.fetchrow(text, "m-unnamed"))[1] for _ in range(3)]
            finally:
                await conn.close()
        return ports

    assert asyncio.run(asyncio.wait_for(run(), 30)) == [cluster.replica2] * 6
