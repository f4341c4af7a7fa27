"""The config file as the binary reads it: unknown keys are errors naming the key path (exit 78), --check, PgCat's
TOML accepted unchanged, list forms, object-form servers, and a down server not blocking start-up."""

import re
import subprocess

import pytest

from support import EX_CONFIG, HOST, build_config, free_port, psql, run_pgcat, to_yaml

pytestmark = pytest.mark.pooler_only


def run_expect_exit(tmp_path, config_text: str, name: str = "bad.yaml", args=(), timeout=15) -> subprocess.CompletedProcess:
    path = tmp_path / name
    path.write_text(config_text)
    try:
        return run_pgcat([*args, str(path)], timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"pgcat did not exit within {timeout}s for config:\n{config_text}")


def test_unknown_general_key_exits_78_naming_path(cluster, tmp_path):
    cfg = build_config(cluster, free_port())
    cfg["general"]["bogus_key"] = 1
    r = run_expect_exit(tmp_path, to_yaml(cfg))
    assert r.returncode == EX_CONFIG, r.stdout
    assert "general.bogus_key" in r.stdout, r.stdout


def test_unknown_user_key_exits_78_naming_path(cluster, tmp_path):
    cfg = build_config(cluster, free_port(), users=["app"])
    cfg["pools"]["app"]["users"]["0"]["pool_sise"] = 3
    r = run_expect_exit(tmp_path, to_yaml(cfg))
    assert r.returncode == EX_CONFIG, r.stdout
    assert re.search(r'pools\.app\.users\.(0|"0"|\[0\])\.pool_sise', r.stdout), r.stdout


def test_invalid_value_exits_78_naming_path(cluster, tmp_path):
    cfg = build_config(cluster, free_port(), users=["app"])
    cfg["pools"]["app"]["pool_mode"] = "sometimes"
    r = run_expect_exit(tmp_path, to_yaml(cfg))
    assert r.returncode == EX_CONFIG, r.stdout
    assert "pools.app.pool_mode" in r.stdout, r.stdout


def test_check_good_config(cluster, tmp_path):
    cfg = build_config(cluster, free_port())
    r = run_expect_exit(tmp_path, to_yaml(cfg), name="good.yaml", args=["--check"])
    assert r.returncode == 0, r.stdout


def test_check_bad_config(cluster, tmp_path):
    cfg = build_config(cluster, free_port())
    cfg["pools"]["app"]["shards"]["0"]["servrs"] = []
    r = run_expect_exit(tmp_path, to_yaml(cfg), args=["--check"])
    assert r.returncode != 0, r.stdout
    assert "servrs" in r.stdout, r.stdout


def test_check_does_not_start_listening(cluster, tmp_path):
    port = free_port()
    r = run_expect_exit(tmp_path, to_yaml(build_config(cluster, port)), name="good.yaml", args=["--check"])
    assert r.returncode == 0, r.stdout
    import socket

    with pytest.raises(OSError):
        socket.create_connection((HOST, port), timeout=1).close()


def test_a_port_in_use_is_named_with_its_key(cluster, tmp_path):
    """A listener port already taken stops start-up with the address and the config keys that chose it."""
    import socket

    taken = socket.socket()
    taken.bind((HOST, 0))
    taken.listen()
    try:
        cfg = build_config(cluster, taken.getsockname()[1])
        r = run_expect_exit(tmp_path, to_yaml(cfg), name="busy.yaml")
        assert r.returncode != 0, r.stdout
        assert f"cannot listen on {HOST}:{taken.getsockname()[1]} for clients (general.host, general.port)" in r.stdout, \
            r.stdout
    finally:
        taken.close()


def test_version_flag():
    try:
        r = run_pgcat(["--version"], timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("pgcat --version did not exit")
    assert r.returncode == 0, r.stdout
    assert re.search(r"\d+\.\d+", r.stdout), r.stdout


PGCAT_TOML = """\
# a PgCat-style config, unchanged
[general]
host = "127.0.0.1"
port = {port}
admin_username = "pgcat_admin"
admin_password = "pgcat_admin"
connect_timeout = 5000
shutdown_timeout = 1000
{general_extra}
[pools.app]
pool_mode = "transaction"
default_role = "any"
{pool_extra}
[pools.app.users.0]
username = "app"
password = "app"
pool_size = 3
statement_timeout = 0

[pools.app.users.1]
username = "md5_user"
password = "md5_user"
pool_size = 2

[pools.app.shards.0]
servers = [["127.0.0.1", {primary}, "primary"]]
database = "app"
"""


def test_pgcat_toml_starts(pgcat, cluster):
    port = free_port()
    t = pgcat(config_text=PGCAT_TOML.format(port=port, primary=cluster.primary, general_extra="", pool_extra=""),
              port=port, suffix=".toml")
    assert psql(t, "select current_user").stdout.strip() == "app"
    assert psql(t, "select current_user", user="md5_user").stdout.strip() == "md5_user"


def test_pgcat_toml_with_keys_pgcat_ignores_starts(pgcat, cluster):
    """Keys PgCat itself ignores (obsolete `prepared_statements`, a misspelt section) are warnings in a .toml."""
    port = free_port()
    text = PGCAT_TOML.format(port=port, primary=cluster.primary, general_extra="", pool_extra="prepared_statements = true\n")
    text += '\n[pool.app.plugins]\nfoo = "bar"\n'
    t = pgcat(config_text=text, port=port, suffix=".toml")
    assert psql(t, "select 1").stdout.strip() == "1"
    log = t.log()
    assert "prepared_statements" in log, "no warning naming the ignored key"


def test_yaml_lists_for_users_and_shards_and_object_servers(pgcat, cluster):
    port = free_port()
    text = f"""\
general:
  host: {HOST}
  port: {port}
  admin_username: pgcat_admin
  admin_password: pgcat_admin
  shutdown_timeout: 1000
pools:
  app:
    pool_mode: transaction
    users:
      - {{username: app, password: app, pool_size: 2}}
      - username: trust_user
        auth_type: trust
        pool_size: 1
    shards:
      - database: app
        servers:
          - {{host: {HOST}, port: {cluster.primary}, role: primary}}
"""
    t = pgcat(config_text=text, port=port)
    assert psql(t, "select current_user").stdout.strip() == "app"
    assert psql(t, "select current_user", user="trust_user").stdout.strip() == "trust_user"


def test_server_down_at_startup_does_not_prevent_start(pgcat, cluster):
    dead_port = free_port()  # nothing listens there
    port = free_port()
    cfg = build_config(cluster, port, users=["app"])
    dead = build_config(cluster, port, users=["app"], servers=[[HOST, dead_port, "primary"]])["pools"]["app"]
    cfg["pools"]["deadpool"] = dead
    t = pgcat(config=cfg)
    assert psql(t, "select 1").stdout.strip() == "1"
    r = psql(t, "select 1", dbname="deadpool", check=False, timeout=60)
    assert r.returncode != 0
    assert psql(t, "select 2").stdout.strip() == "2"
    assert t.proc.poll() is None
