"""Fixtures for the integration suite.

The cluster (scripts/cluster.sh) must already run on PGCAT_CLUSTER_PORT (default 25432); scripts/test.sh starts it.
`pgcat(...)` starts the pooler binary ($PGCAT_BIN, default .build/debug/pgcat) with a generated YAML config on a free
port and stops it at teardown. With PGCAT_TEST_DIRECT=1 the same tests run directly against the primary (tests
marked `pooler_only` are skipped) so the tests themselves can be checked without a pooler."""

from __future__ import annotations

import importlib.util
import itertools
import os
import signal
import subprocess
import threading
from pathlib import Path

import psycopg
import pytest

from support import (
    DIRECT, HOST, PGCAT_BIN, Cluster, Primary, Target, build_config, cluster_from_env, free_port,
    pgbench, spawn_pooler, stop_process, to_yaml, wait_for_pooler, wait_on_replicas,
)

TARGETS_KEY = pytest.StashKey[list]()
HAVE_PYTEST_TIMEOUT = importlib.util.find_spec("pytest_timeout") is not None


def pytest_addoption(parser):
    if not HAVE_PYTEST_TIMEOUT:
        # same ini key as pytest-timeout, served by the SIGALRM fallback below
        parser.addini("timeout", "per-test timeout in seconds (fallback when pytest-timeout is missing)", default="0")


def pytest_configure(config):
    config.addinivalue_line("markers", "pooler_only: behaviour of the pooler itself; skipped with PGCAT_TEST_DIRECT=1")


def pytest_collection_modifyitems(config, items):
    if DIRECT:
        skip = pytest.mark.skip(reason="pooler-only behaviour (PGCAT_TEST_DIRECT=1)")
        for item in items:
            if item.get_closest_marker("pooler_only"):
                item.add_marker(skip)


if not HAVE_PYTEST_TIMEOUT:

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(item):
        marker = item.get_closest_marker("timeout")
        seconds = int(marker.args[0]) if marker and marker.args else int(float(item.config.getini("timeout") or 0))
        if seconds <= 0 or threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_alarm(signum, frame):
            raise TimeoutError(f"test exceeded {seconds}s (timeout fallback)")

        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(seconds)
        try:
            yield
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for t in item.stash.get(TARGETS_KEY, []):
            if t.direct:
                continue
            text = t.log()
            if len(text) > 20000:
                text = "... (start cut) ...\n" + text[-20000:]
            cfg = t.config_path.read_text() if t.config_path and t.config_path.exists() else ""
            exit_note = f"\n[process exit status: {t.proc.poll()}]" if t.proc is not None and t.proc.poll() is not None else ""
            rep.sections.append((f"pgcat log ({t.config_path.name if t.config_path else '?'}, port {t.port})", text + exit_note))
            rep.sections.append((f"pgcat config ({t.config_path})", cfg))


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    c = cluster_from_env()
    for port in (c.primary, *c.replicas):
        try:
            psycopg.connect(host=HOST, port=port, user="postgres", password="postgres", dbname="postgres", connect_timeout=5).close()
        except psycopg.OperationalError as e:
            pytest.exit(
                f"test cluster not reachable on {HOST}:{port} ({e}).\n"
                f"Start it with: PGCAT_CLUSTER_PORT={c.primary} scripts/cluster.sh start",
                returncode=3,
            )
    return c


@pytest.fixture(scope="session")
def primary(cluster) -> Primary:
    return Primary(cluster)


_counter = itertools.count(1)


@pytest.fixture
def pgcat(request, cluster, tmp_path):
    """Factory: pgcat(**build_config kwargs) or pgcat(config=dict) or pgcat(config_text=str, port=N, suffix=".toml").
    Returns a Target; in direct mode, the primary (config ignored)."""
    started: list[Target] = []
    request.node.stash[TARGETS_KEY] = started

    def start(config: dict | None = None, *, config_text: str | None = None, port: int | None = None,
              suffix: str = ".yaml", args: tuple[str, ...] = (), **kwargs) -> Target:
        if DIRECT:
            t = Target(HOST, cluster.primary, direct=True)
            started.append(t)
            return t
        if not Path(PGCAT_BIN).exists():
            pytest.fail(f"pooler binary {PGCAT_BIN} not found: build it with `swift build` (or set PGCAT_BIN)")
        n = next(_counter)
        if config_text is None:
            if config is None:
                port = port or free_port()
                config = build_config(cluster, port, **kwargs)
            port = int(config["general"]["port"])
            config_text = to_yaml(config)
        elif port is None:
            raise ValueError("config_text needs port=")
        cfg_path = tmp_path / f"pgcat-{n}{suffix}"
        cfg_path.write_text(config_text)
        log_path = tmp_path / f"pgcat-{n}.log"
        proc = spawn_pooler([*args, str(cfg_path)], log_path=log_path, cwd=tmp_path, env=dict(os.environ))
        t = Target(HOST, port, proc=proc, log_path=log_path, config_path=cfg_path)
        started.append(t)
        wait_for_pooler(proc, port,
                        lambda: f"--- config {cfg_path} ---\n{config_text}\n--- pgcat output ---\n{t.log()[-20000:]}")
        return t

    yield start
    for t in started:
        if t.proc is not None:
            stop_process(t.proc)


@pytest.fixture(scope="session")
def pgbench_tables(cluster):
    """pgbench -i -s 1 into database app as user app, directly on the primary (once per session)."""
    r = pgbench((HOST, cluster.primary), ["-i", "-s", "1", "-q"], user="app", dbname="app", timeout=300)
    assert r.returncode == 0, f"pgbench -i failed:\n{r.stdout}\n{r.stderr}"
    return True


PGML_STUB = Path(__file__).resolve().parent.parent / "fixtures" / "pgml_stub.sql"


@pytest.fixture(scope="session")
def pgml(cluster):
    env = dict(os.environ, PGPASSWORD="postgres")
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", HOST, "-p", str(cluster.primary), "-U", "postgres",
                    "-d", "app", "-f", str(PGML_STUB)], check=True, env=env, capture_output=True, timeout=120)
    with psycopg.connect(host=HOST, port=cluster.primary, user="postgres", password="postgres", dbname="app",
                         autocommit=True) as su:
        su.execute("grant usage on schema pgml to public; grant all on all tables in schema pgml to public; "
                   "grant all on all sequences in schema pgml to public")
        su.execute("drop table if exists it_train_data; create table it_train_data (x real, y real); "
                   "insert into it_train_data select g, g * 2 from generate_series(1, 50) g; "
                   "grant all on it_train_data to public")
    wait_on_replicas(cluster, "select to_regclass('it_train_data') is not null", "the stub")
    return True
