"""Prometheus exporter: GET /metrics in the text format, parsed with the reference parser (prometheus_client);
PgCat's metric names, types and labels; counters and histograms move with traffic; other paths are 404."""

import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support import HOST, free_port

pytestmark = pytest.mark.pooler_only

ADDRESS_LABELS = {"host", "shard", "pool", "role", "index", "database", "username"}


def scrape(port: int) -> dict:
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict, name: str, **labels) -> float:
    """The value of the one sample of `name` (family name, or sample name for histograms) matching `labels`."""
    for family in families.values():
        for sample in family.samples:
            # the parser reports counter samples with a _total suffix, which PgCat's names do not have
            if sample.name in (name, name + "_total") and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no sample {name} {labels}")


@pytest.fixture
def exporter(pgcat, cluster):
    metrics_port = free_port()
    t = pgcat(pool_size=2, users=["app"], general={"enable_prometheus_exporter": True, "prometheus_exporter_port": metrics_port},
              servers=[[HOST, cluster.primary, "primary"], [HOST, cluster.replicas[0], "replica"]],
              pool={"default_role": "primary"})
    return t, metrics_port


def test_names_types_and_labels(exporter):
    t, port = exporter
    with t.connect() as c:
        c.execute("select 1")
    families = scrape(port)
    counters = ["pgcat_stats_total_query_count", "pgcat_stats_total_query_time", "pgcat_stats_total_received",
                "pgcat_stats_total_sent", "pgcat_stats_total_xact_count", "pgcat_stats_total_xact_time",
                "pgcat_stats_total_wait_time", "pgcat_servers_bytes_received", "pgcat_servers_bytes_sent",
                "pgcat_servers_transaction_count", "pgcat_servers_query_count", "pgcat_servers_error_count"]
    address_gauges = ["pgcat_stats_avg_query_count", "pgcat_stats_avg_query_time", "pgcat_stats_avg_recv",
                      "pgcat_stats_avg_sent", "pgcat_stats_avg_errors", "pgcat_stats_avg_xact_count",
                      "pgcat_stats_avg_xact_time", "pgcat_stats_avg_wait_time", "pgcat_servers_idle_count",
                      "pgcat_servers_active_count", "pgcat_servers_tested_count", "pgcat_servers_login_count",
                      "pgcat_servers_is_banned", "pgcat_servers_is_paused", "pgcat_databases_pool_size",
                      "pgcat_databases_current_connections", "pgcat_servers_is_lagging", "pgcat_servers_replica_lag_bytes"]
    pool_gauges = ["pgcat_pools_cl_idle", "pgcat_pools_cl_active", "pgcat_pools_cl_waiting", "pgcat_pools_sv_idle",
                   "pgcat_pools_sv_active", "pgcat_pools_sv_login", "pgcat_pools_sv_tested", "pgcat_pools_maxwait",
                   "pgcat_pools_maxwait_us"]
    for name in counters:
        # the parser names a counter family without its _total suffix
        family = families.get(name) or families.get(name.removesuffix("_total"))
        assert family is not None, f"missing {name}"
        assert family.type == "counter", (name, family.type)
        roles = {s.labels["role"] for s in family.samples}
        assert roles == {"primary", "replica"}, (name, roles)
        for sample in family.samples:
            assert set(sample.labels) == ADDRESS_LABELS, (name, sample.labels)
    for name in address_gauges:
        assert families[name].type == "gauge", name
        assert {set(s.labels) == ADDRESS_LABELS for s in families[name].samples} == {True}, name
    for name in pool_gauges:
        assert families[name].type == "gauge", name
        assert [s.labels for s in families[name].samples] == [{"pool": "app", "user": "app"}], name
    assert value(families, "pgcat_databases_pool_size", role="primary") == 2
    for name in ["pgcat_query_duration_seconds", "pgcat_wait_duration_seconds"]:
        assert families[name].type == "histogram", name


def test_counters_and_histograms_move(exporter):
    t, port = exporter
    before = scrape(port)
    queries_before = value(before, "pgcat_servers_query_count", role="primary")
    with t.connect() as c:
        for i in range(25):
            c.execute("select %s::int", (i,))
        with pytest.raises(Exception):
            c.execute("select 1/0")
    after = scrape(port)
    assert value(after, "pgcat_servers_query_count", role="primary") >= queries_before + 26
    assert value(after, "pgcat_stats_total_xact_count", role="primary") >= 26
    assert value(after, "pgcat_servers_error_count", role="primary") >= 1
    assert value(after, "pgcat_servers_bytes_sent", role="primary") > value(before, "pgcat_servers_bytes_sent", role="primary")
    assert value(after, "pgcat_servers_query_count", role="replica") == 0
    assert value(after, "pgcat_query_duration_seconds_count", pool="app", user="app") >= 26
    assert value(after, "pgcat_query_duration_seconds_bucket", pool="app", user="app", le="+Inf") >= 26


def test_pool_gauges_follow_clients(exporter):
    t, port = exporter
    holders = [t.connect(autocommit=False) for _ in range(2)]
    try:
        for h in holders:
            h.execute("select 1")  # each holds a server connection inside its transaction
        waiter_done = threading.Event()

        def waiter():
            with t.connect() as w:
                w.execute("select 1")
            waiter_done.set()

        th = threading.Thread(target=waiter)
        th.start()
        deadline = time.monotonic() + 5
        while True:
            families = scrape(port)
            if value(families, "pgcat_pools_cl_waiting", pool="app", user="app") == 1:
                break
            assert time.monotonic() < deadline, "the third client never showed as waiting"
            time.sleep(0.05)
        assert value(families, "pgcat_pools_cl_active", pool="app", user="app") == 2
        assert value(families, "pgcat_pools_sv_active", pool="app", user="app") == 2
        holders[0].rollback()
        assert waiter_done.wait(5)
        th.join(5)
    finally:
        for h in holders:
            h.close()


def test_other_paths_are_404(exporter):
    _, port = exporter
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://{HOST}:{port}/", timeout=5)
    assert e.value.code == 404
