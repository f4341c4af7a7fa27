"""The ML router's Prometheus series (docs/ml-router.md, Observability) after pgml traffic on the stand-in schema:
`pgcat_ml_requests_total{pool,model,server,outcome}`, `pgcat_ml_cold_starts_total`, `pgcat_ml_affinity_hits_total`,
`pgcat_ml_in_flight`, `pgcat_ml_exec_time_seconds_total` (per model and server), `pgcat_ml_queue_depth`,
`pgcat_ml_fallback_total`, `pgcat_ml_rejected_total`, `pgcat_ml_misplaced_total{reason="in_txn"}` (per pool), and the
histograms `pgcat_ml_queue_wait_seconds` and `pgcat_ml_exec_seconds` per (pool, model). Scraped from GET /metrics
and parsed with prometheus_client's reference parser."""

import threading
import time

import urllib.request

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support import HOST, free_port, wait_for

pytestmark = pytest.mark.pooler_only

EMBED = "select pgml.embed(%s, 'hello') is not null, inet_server_port()"
# sample name -> metric type
POOL_SERIES = {"pgcat_ml_queue_depth": "gauge", "pgcat_ml_fallback_total": "counter",
               "pgcat_ml_rejected_total": "counter", "pgcat_ml_misplaced_total": "counter"}
MODEL_SERIES = {"pgcat_ml_requests_total": "counter", "pgcat_ml_cold_starts_total": "counter",
                "pgcat_ml_affinity_hits_total": "counter", "pgcat_ml_in_flight": "gauge",
                "pgcat_ml_exec_time_seconds_total": "counter"}
HISTOGRAMS = ["pgcat_ml_exec_seconds", "pgcat_ml_queue_wait_seconds"]


def start(pgcat, cluster, **ml):
    """A pool with the ML router: GPU inference on replica2 (tagged gpu), ordinary reads on replica1."""
    metrics_port = free_port()
    servers = [[HOST, cluster.primary, "primary"], [HOST, cluster.replica1, "replica"],
               {"host": HOST, "port": cluster.replica2, "role": "replica", "tags": ["gpu"]}]
    settings = {"enabled": True, "target_tags": ["gpu"], "inference_pool_size": 2, "queue_max": 50,
                "queue_timeout": 5000, "fallback": "error"}
    settings.update(ml)
    t = pgcat(pool_size=2, users=["app"], servers=servers,
              general={"enable_prometheus_exporter": True, "prometheus_exporter_port": metrics_port},
              pool={"query_parser_enabled": True, "query_parser_read_write_splitting": True,
                    "primary_reads_enabled": False, "ml_routing": settings})
    return t, metrics_port


def scrape(port: int) -> list:
    """The metric families of GET /metrics, as a list."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        return list(text_string_to_metric_families(response.read().decode()))


def samples(families: list, name: str, **labels) -> list:
    """Every sample called `name` whose labels include `labels`."""
    return [s for f in families for s in f.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def kind(families: list, sample_name: str) -> str:
    """The type of the family that holds the samples called `sample_name`."""
    kinds = {f.type for f in families for s in f.samples if s.name == sample_name}
    assert len(kinds) == 1, (sample_name, kinds)
    return kinds.pop()


def one(families: list, name: str, **labels) -> float:
    found = samples(families, name, **labels)
    assert len(found) == 1, f"{name} {labels}: {len(found)} samples: {found}"
    return found[0].value


def test_series_after_inference(pgcat, cluster, pgml):
    t, port = start(pgcat, cluster)
    gpu = f"{HOST}:{cluster.replica2}"
    before = scrape(port)
    for name, expected in POOL_SERIES.items():
        assert kind(before, name) == expected, name
        assert [s.labels for s in samples(before, name)] == \
            ([{"pool": "app", "reason": "in_txn"}] if name == "pgcat_ml_misplaced_total" else [{"pool": "app"}]), name
        assert [s.value for s in samples(before, name)] == [0], name
    assert not samples(before, "pgcat_ml_requests_total"), "no per-model series before any inference"

    with t.connect() as c:
        for _ in range(5):
            assert c.execute(EMBED, ("it/model-a",)).fetchone() == (True, cluster.replica2)
        for _ in range(3):
            assert c.execute(EMBED, ("it/model-b",)).fetchone() == (True, cluster.replica2)
        # an inference that fails on the server (the stand-in's injected load failure)
        with pytest.raises(psycopg.errors.InternalError_, match="failed to load"):
            c.execute("begin read only; set local pgml_stub.fail_models = 'it/broken'; "
                      "select pgml.embed('it/broken', 'x')")
        c.execute("rollback")
        for _ in range(5):  # ordinary reads are not ML requests
            assert c.execute("select inet_server_port()").fetchone()[0] == cluster.replica1

    families = scrape(port)
    for name, expected in MODEL_SERIES.items():
        assert kind(families, name) == expected, name
        for s in samples(families, name):
            assert {"pool", "model", "server"} <= set(s.labels), (name, s.labels)
    for name in HISTOGRAMS:
        assert kind(families, name + "_count") == "histogram", name
        for s in samples(families, name + "_count"):
            assert set(s.labels) == {"pool", "model"}, (name, s.labels)

    requests = {(s.labels["model"], s.labels["outcome"]): s.value for s in samples(families, "pgcat_ml_requests_total")}
    assert requests == {("it/model-a", "ok"): 5, ("it/model-a", "error"): 0, ("it/model-b", "ok"): 3,
                        ("it/model-b", "error"): 0, ("it/broken", "ok"): 0, ("it/broken", "error"): 1}, requests
    for s in samples(families, "pgcat_ml_requests_total"):
        assert set(s.labels) == {"pool", "model", "server", "outcome"}, s.labels
        assert (s.labels["pool"], s.labels["server"]) == ("app", gpu), s.labels
    # One client, one statement at a time: each model loads once (a connection that ran it is preferred) and
    # always stays at home.
    assert one(families, "pgcat_ml_cold_starts_total", model="it/model-a", server=gpu) == 1
    assert one(families, "pgcat_ml_cold_starts_total", model="it/model-b", server=gpu) == 1
    assert one(families, "pgcat_ml_affinity_hits_total", model="it/model-a", server=gpu) == 5
    assert one(families, "pgcat_ml_affinity_hits_total", model="it/model-b", server=gpu) == 3
    for s in samples(families, "pgcat_ml_in_flight"):
        assert s.value == 0, s
    assert one(families, "pgcat_ml_queue_depth", pool="app") == 0
    assert one(families, "pgcat_ml_fallback_total", pool="app") == 0
    assert one(families, "pgcat_ml_rejected_total", pool="app") == 0
    assert one(families, "pgcat_ml_misplaced_total", pool="app", reason="in_txn") == 0

    # Execution histogram per (pool, model): one observation per statement; model-a's includes its 200 ms cold
    # load (the stand-in's default) and four warm calls of about 5 ms.
    assert one(families, "pgcat_ml_exec_seconds_count", pool="app", model="it/model-a") == 5
    assert one(families, "pgcat_ml_exec_seconds_count", pool="app", model="it/model-b") == 3
    total_a = one(families, "pgcat_ml_exec_seconds_sum", pool="app", model="it/model-a")
    assert 0.2 <= total_a < 5, total_a
    assert one(families, "pgcat_ml_exec_seconds_bucket", pool="app", model="it/model-a", le="+Inf") == 5
    assert one(families, "pgcat_ml_exec_seconds_bucket", pool="app", model="it/model-a", le="0.1") <= 4, \
        "the cold call (200 ms) is above the 100 ms bucket"
    waits = samples(families, "pgcat_ml_queue_wait_seconds_count", pool="app", model="it/model-a")
    assert len(waits) <= 1 and all(0 <= w.value <= 5 for w in waits), waits


def test_queue_depth_in_flight_and_rejected_follow_the_queue(pgcat, cluster, pgml):
    t, port = start(pgcat, cluster, inference_pool_size=1, queue_max=1, queue_timeout=10000)
    gpu = f"{HOST}:{cluster.replica2}"
    holder = t.connect()
    # The only inference connection, held by an open read-only transaction that starts with the inference.
    holder.execute("begin read only; select pgml.embed('it/m', 'hello')")
    families = scrape(port)
    assert one(families, "pgcat_ml_in_flight", model="it/m", server=gpu) == 1
    assert one(families, "pgcat_ml_queue_depth", pool="app") == 0

    results: list = []

    def waiter():
        try:
            with t.connect() as w:
                results.append(w.execute(EMBED, ("it/m",)).fetchone())
        except Exception as e:  # noqa: BLE001
            results.append(e)

    th = threading.Thread(target=waiter)
    th.start()
    try:
        assert wait_for(lambda: one(scrape(port), "pgcat_ml_queue_depth", pool="app") == 1, timeout=5), \
            "the waiting statement is not in pgcat_ml_queue_depth"
        held_since = time.monotonic()
        with t.connect() as c:
            with pytest.raises(psycopg.errors.ConfigurationLimitExceeded, match="inference queue full"):
                c.execute(EMBED, ("it/m",))
        assert one(scrape(port), "pgcat_ml_rejected_total", pool="app") == 1
        time.sleep(0.3)
    finally:
        holder.execute("rollback")
        held = time.monotonic() - held_since
        th.join(15)
        holder.close()
    assert results == [(True, cluster.replica2)], results
    families = scrape(port)
    assert one(families, "pgcat_ml_queue_depth", pool="app") == 0
    assert one(families, "pgcat_ml_in_flight", model="it/m", server=gpu) == 0
    assert one(families, "pgcat_ml_requests_total", model="it/m", server=gpu, outcome="ok") == 2
    assert one(families, "pgcat_ml_rejected_total", pool="app") == 1
    # the queued statement's wait is in the wait histogram: at least as long as the holder kept the connection
    wait_sum = one(families, "pgcat_ml_queue_wait_seconds_sum", pool="app", model="it/m")
    assert held - 0.1 <= wait_sum < held + 2, (wait_sum, held)


def test_exec_time_seconds_total_matches_the_histogram(pgcat, cluster, pgml):
    t, port = start(pgcat, cluster)
    gpu = f"{HOST}:{cluster.replica2}"
    with t.connect() as c:
        # one statement with a 1.2 s cold load (the stand-in's simulated model loading)
        c.execute("begin read only; set local pgml_stub.cold_ms = 1200; select pgml.embed('it/slow', 'x')")
        c.execute("commit")
    families = scrape(port)
    histogram = one(families, "pgcat_ml_exec_seconds_sum", pool="app", model="it/slow")
    assert 1.2 <= histogram < 3, histogram
    total = one(families, "pgcat_ml_exec_time_seconds_total", model="it/slow", server=gpu)
    assert abs(total - histogram) < 0.05, (total, histogram)


def test_inference_pool_is_shown_apart_with_its_own_size(pgcat, cluster, pgml):
    """A tagged server's inference pool (inference_pool_size 1 here, pool_size 2) has its own SHOW DATABASES row and
    size, its connections are named `..._inference` in SHOW SERVERS, and the per-address series count each
    connection once (before, the inference row showed pool_size and the connection counts were doubled)."""
    t, port = start(pgcat, cluster, inference_pool_size=1)
    with t.connect() as c:
        assert c.execute(EMBED, ("it/model-a",)).fetchone() == (True, cluster.replica2)
    with t.connect(user="pgcat_admin", password="pgcat_admin", dbname="pgcat") as a:
        databases = {r[0]: (r[5], r[9], r[10]) for r in a.execute("SHOW DATABASES").fetchall()}
        # (pool_size, max_connections, current_connections)
        assert databases["app_shard_0_replica_1_inference"] == (1, 1, 1), databases
        assert databases["app_shard_0_replica_1"][:2] == (2, 2), databases
        servers = [r[3] for r in a.execute("SHOW SERVERS").fetchall()]
        assert servers.count("app_shard_0_replica_1_inference") == 1, servers
        ordinary_on_gpu = servers.count("app_shard_0_replica_1")
    families = scrape(port)
    labels = {"pool": "app", "role": "replica", "index": "2"}
    assert one(families, "pgcat_databases_pool_size", **labels) == 3  # the address's two pools together
    assert one(families, "pgcat_databases_current_connections", **labels) == 1 + ordinary_on_gpu
    # (a health check may hold one of them as `tested` at the scrape)
    states = [one(families, f"pgcat_servers_{state}_count", **labels) for state in ("idle", "active", "tested")]
    assert sum(states) == 1 + ordinary_on_gpu, states
    with t.connect(user="pgcat_admin", password="pgcat_admin", dbname="pgcat") as a:
        a.execute("PAUSE")
        try:  # a state is 0 or 1 per server, not summed over its two pools
            assert one(scrape(port), "pgcat_servers_is_paused", **labels) == 1
        finally:
            a.execute("RESUME")
