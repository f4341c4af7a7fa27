"""The ML router's `fallback` when no server tagged for inference is healthy (docs/ml-router.md, Placement: "`fallback`
(per model override first): `replicas` (ordinary read routing), `primary`, or `error` (`ERROR 08006 no healthy
server tagged [gpu] for inference of model M`)"). The tagged server is a port nobody listens on (down from the
start), or a live replica banned with the admin BAN; `ml_routing.models[].fallback` overrides the pool's value for
the models it matches. test_ml_router.py covers `replicas` and `error` with a stopped replica."""

import urllib.request

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support import HOST, free_port

pytestmark = pytest.mark.pooler_only

EMBED = "select pgml.embed(%s, 'hello') is not null, inet_server_port()"


def start(pgcat, cluster, gpu_port=None, **ml):
    """Primary, replica1 (untagged) and a gpu-tagged server: `gpu_port`, or a port with no server on it."""
    metrics_port = free_port()
    servers = [[HOST, cluster.primary, "primary"], [HOST, cluster.replica1, "replica"],
               {"host": HOST, "port": gpu_port or free_port(), "role": "replica", "tags": ["gpu"]}]
    settings = {"enabled": True, "target_tags": ["gpu"], "inference_pool_size": 2, "queue_max": 50,
                "queue_timeout": 2000}
    settings.update(ml)
    t = pgcat(pool_size=2, users=["app"], servers=servers,
              general={"enable_prometheus_exporter": True, "prometheus_exporter_port": metrics_port,
                       "connect_timeout": 2000},
              pool={"query_parser_enabled": True, "query_parser_read_write_splitting": True,
                    "primary_reads_enabled": False, "ml_routing": settings})
    t.extra["metrics_port"] = metrics_port
    return t


def metric(t, name: str) -> float:
    with urllib.request.urlopen(f"http://{HOST}:{t.extra['metrics_port']}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = [s.value for f in text_string_to_metric_families(text) for s in f.samples
              if s.name == name and s.labels.get("pool") == "app"]
    assert len(values) == 1, (name, values)
    return values[0]


def admin(t):
    return t.connect(user="pgcat_admin", dbname="pgcat", password="pgcat_admin")


def test_fallback_primary_sends_inference_to_the_primary(pgcat, cluster, pgml):
    t = start(pgcat, cluster, fallback="primary")
    with t.connect() as c:
        for model in ("it/a", "it/b", "it/a"):
            assert c.execute(EMBED, (model,)).fetchone() == (True, cluster.primary)
        # ordinary reads are not affected: the untagged replica
        assert {c.execute("select inet_server_port()").fetchone()[0] for _ in range(5)} == {cluster.replica1}
    assert metric(t, "pgcat_ml_fallback_total") == 3


def test_per_model_fallback_overrides_the_pool_value(pgcat, cluster, pgml):
    t = start(pgcat, cluster, fallback="primary",
              models=[{"match": "strict/*", "fallback": "error"}, {"match": "cpu/*", "fallback": "replicas"}])
    with t.connect() as c:
        assert c.execute(EMBED, ("other/model",)).fetchone()[1] == cluster.primary
        with pytest.raises(psycopg.errors.ConnectionFailure) as error:
            c.execute(EMBED, ("strict/model",))
        assert error.value.diag.sqlstate == "08006"
        assert 'no healthy server tagged ["gpu"] for inference of model strict/model' in str(error.value)
        # the session goes on; `replicas` is ordinary read routing: the untagged replica
        assert c.execute(EMBED, ("cpu/model",)).fetchone()[1] == cluster.replica1
        assert c.execute(EMBED, ("other/model",)).fetchone()[1] == cluster.primary


def test_per_model_primary_fallback_under_pool_error(pgcat, cluster, pgml):
    t = start(pgcat, cluster, fallback="error", models=[{"match": "rescue/*", "fallback": "primary"}])
    with t.connect() as c:
        with pytest.raises(psycopg.errors.ConnectionFailure, match="no healthy server tagged"):
            c.execute(EMBED, ("plain/model",))
        assert c.execute(EMBED, ("rescue/model",)).fetchone() == (True, cluster.primary)
        with pytest.raises(psycopg.errors.ConnectionFailure, match="for inference of model plain/model"):
            c.execute(EMBED, ("plain/model",))


def test_fallback_lasts_while_the_tagged_server_is_banned(pgcat, cluster, pgml):
    t = start(pgcat, cluster, gpu_port=cluster.replica2, fallback="primary")
    with t.connect() as c, admin(t) as a:
        assert c.execute(EMBED, ("it/m",)).fetchone()[1] == cluster.replica2
        banned = a.execute(f"BAN {HOST} 60").fetchall()
        assert banned, "BAN named no server"
        assert c.execute(EMBED, ("it/m",)).fetchone()[1] == cluster.primary
        a.execute(f"UNBAN {HOST}")
        assert c.execute(EMBED, ("it/m",)).fetchone()[1] == cluster.replica2
    assert metric(t, "pgcat_ml_fallback_total") == 1


def test_fallback_inference_is_not_counted_as_misplaced(pgcat, cluster, pgml):
    t = start(pgcat, cluster, fallback="primary")
    with t.connect() as c:
        for _ in range(3):
            assert c.execute(EMBED, ("it/m",)).fetchone()[1] == cluster.primary
    assert metric(t, "pgcat_ml_fallback_total") == 3
    assert metric(t, "pgcat_ml_misplaced_total") == 0
