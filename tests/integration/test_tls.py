"""TLS on both sides (issue 8). Clients: `client_tls_mode` disable/allow/require with `tls_certificate` and
`tls_private_key`, certificates re-read on RELOAD, CancelRequest inside TLS. Servers: `server_tls` (TLS when the server
offers it), `verify_server_certificate` (verify-full against `server_tls_ca_file`). The certificates come from
scripts/cluster.sh, which also turns TLS on in the test primary."""

from __future__ import annotations

import socket
import ssl
import struct
import subprocess
import threading
import time

import psycopg
import pytest

from support import HOST, build_config, psql, run_pgcat, tls_dir, to_yaml

pytestmark = pytest.mark.pooler_only

ADMIN = {"user": "pgcat_admin", "password": "pgcat_admin"}


@pytest.fixture(scope="module")
def certs():
    d = tls_dir()
    for name in ("ca.crt", "server.crt", "server.key", "other-ca.crt"):
        assert (d / name).exists(), f"{d / name} missing: scripts/cluster.sh start makes the test certificates"
    return d


def client_tls(certs, mode: str = "allow", **extra) -> dict:
    g = {"tls_certificate": str(certs / "server.crt"), "tls_private_key": str(certs / "server.key"),
         "client_tls_mode": mode}
    g.update(extra)
    return g


def tls_conn(t, sslmode: str, certs=None, **kw) -> psycopg.Connection:
    extra = {"sslmode": sslmode}
    if certs is not None:
        extra["sslrootcert"] = str(certs / "ca.crt")
    return t.connect(**extra, **kw)


def peer_certificate(host: str, port: int) -> bytes:
    """The DER certificate the pooler presents after SSLRequest."""
    with socket.create_connection((host, port), timeout=10) as raw:
        raw.sendall(struct.pack("!ii", 8, 80877103))
        assert raw.recv(1) == b"S"
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(raw) as tls:
            return tls.getpeercert(binary_form=True)


def pem_to_der(path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def reload_with_certificate(t, certs, cert, key) -> psycopg.Connection:
    """Points the running pooler's config at `cert` and `key` (instead of the test certificate) and RELOADs; returns
    the admin connection that did it."""
    text = t.config_path.read_text()
    t.config_path.write_text(text.replace(str(certs / "server.crt"), str(cert)).replace(str(certs / "server.key"), str(key)))
    a = psycopg.connect(host=t.host, port=t.port, dbname="pgcat", autocommit=True, **ADMIN)
    a.execute("RELOAD")
    return a


# --- client side ---------------------------------------------------------------------------------------------


def test_allow_serves_tls_with_verify_full_and_plaintext(pgcat, certs):
    t = pgcat(general=client_tls(certs, "allow"))
    with tls_conn(t, "verify-full", certs) as c:
        assert c.pgconn.ssl_in_use
        assert c.execute("select 41 + 1").fetchone()[0] == 42
    with tls_conn(t, "disable") as c:
        assert not c.pgconn.ssl_in_use
        assert c.execute("select 1").fetchone()[0] == 1


def test_require_refuses_plaintext_with_28000(pgcat, certs):
    t = pgcat(general=client_tls(certs, "require"))
    with pytest.raises(psycopg.OperationalError) as e:
        tls_conn(t, "disable")
    assert "TLS is required" in str(e.value)
    r = psql(t, "select 1", conninfo="sslmode=disable", check=False)
    assert r.returncode != 0 and "TLS is required" in r.stderr, r.stderr
    # the admin console too
    with pytest.raises(psycopg.OperationalError, match="TLS is required"):
        psycopg.connect(host=t.host, port=t.port, dbname="pgcat", sslmode="disable", **ADMIN)
    with tls_conn(t, "require") as c:
        assert c.execute("select current_user").fetchone()[0] == "app"
    r = psql(t, "select 7", conninfo=f"sslmode=verify-full sslrootcert={certs / 'ca.crt'}")
    assert r.stdout.strip() == "7"
    with psycopg.connect(host=t.host, port=t.port, dbname="pgcat", sslmode="require", autocommit=True, **ADMIN) as a:
        assert a.execute("SHOW VERSION").fetchone()


def test_disable_answers_n_even_with_a_certificate(pgcat, certs):
    t = pgcat(general=client_tls(certs, "disable"))
    with pytest.raises(psycopg.OperationalError, match="server does not support SSL"):
        tls_conn(t, "require")
    with tls_conn(t, "prefer") as c:
        assert not c.pgconn.ssl_in_use


def test_verify_full_fails_against_the_wrong_ca(pgcat, certs):
    t = pgcat(general=client_tls(certs, "allow"))
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        t.connect(sslmode="verify-full", sslrootcert=str(certs / "other-ca.crt"))


def test_plaintext_bytes_after_ssl_request_are_refused(pgcat, certs):
    """Bytes pipelined behind SSLRequest (before the handshake) would be read as if encrypted: 08P01 and close."""
    t = pgcat(general=client_tls(certs, "allow"))
    with socket.create_connection((t.host, t.port), timeout=10) as raw:
        startup = b"user\x00app\x00database\x00app\x00\x00"
        raw.sendall(struct.pack("!ii", 8, 80877103) + struct.pack("!ii", 8 + len(startup), 196608) + startup)
        data = b""
        while True:
            chunk = raw.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data[:1] == b"E" and b"08P01" in data and b"unexpected data after SSLRequest" in data, data


def test_cancel_request_inside_tls(pgcat, certs):
    """libpq 17+ sends its CancelRequest over TLS when the session used TLS (PQcancelCreate)."""
    assert psycopg.pq.version() >= 170000, "psycopg's libpq is too old for encrypted cancel requests"
    t = pgcat(general=client_tls(certs, "require"))
    with tls_conn(t, "require") as c:
        timer = threading.Timer(0.5, c.cancel_safe)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("select pg_sleep(20)")
        timer.join()
        assert time.monotonic() - started < 10
        assert c.execute("select 1").fetchone()[0] == 1


def test_certificate_is_reloaded_and_a_bad_one_keeps_the_old(pgcat, certs, tmp_path):
    # a second certificate: self-signed, different subject
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=reloaded",
                    "-keyout", str(tmp_path / "new.key"), "-out", str(tmp_path / "new.crt")],
                   check=True, capture_output=True)
    t = pgcat(general=client_tls(certs, "allow"))
    assert peer_certificate(t.host, t.port) == pem_to_der(certs / "server.crt")
    with reload_with_certificate(t, certs, tmp_path / "new.crt", tmp_path / "new.key") as a:
        assert peer_certificate(t.host, t.port) == pem_to_der(tmp_path / "new.crt")
        # a certificate that does not load: RELOAD fails naming the key, the last good one stays
        (tmp_path / "broken.crt").write_text("not a certificate\n")
        t.config_path.write_text(t.config_path.read_text().replace(str(tmp_path / "new.crt"), str(tmp_path / "broken.crt")))
        with pytest.raises(psycopg.Error, match="general.tls_certificate"):
            a.execute("RELOAD")
    assert peer_certificate(t.host, t.port) == pem_to_der(tmp_path / "new.crt")
    with tls_conn(t, "require") as c:
        assert c.execute("select 1").fetchone()[0] == 1


def test_scram_channel_binding_over_tls(pgcat, certs, tmp_path):
    """SCRAM-SHA-256-PLUS with tls-server-end-point: libpq's channel_binding=require logs in over TLS (it refuses a
    login the server did not bind), for psycopg and psql; after a reload to an ECDSA certificate signed with SHA-384
    the binding follows the new certificate and its hash. Without TLS there is nothing to bind: the client refuses."""
    t = pgcat(general=client_tls(certs, "allow"))
    with tls_conn(t, "require", channel_binding="require") as c:
        assert c.pgconn.ssl_in_use
        assert c.execute("select 1").fetchone()[0] == 1
    with tls_conn(t, "require", channel_binding="disable") as c:  # plain SCRAM-SHA-256 over TLS still works
        assert c.execute("select 2").fetchone()[0] == 2
    r = psql(t, "select 'bound'", conninfo="sslmode=require channel_binding=require")
    assert r.stdout.strip() == "bound", r.stderr
    with pytest.raises(psycopg.OperationalError, match="channel binding"):
        tls_conn(t, "disable", channel_binding="require")

    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-sha384",
                    "-nodes", "-days", "30", "-subj", "/CN=localhost", "-keyout", str(tmp_path / "ec.key"),
                    "-out", str(tmp_path / "ec.crt")], check=True, capture_output=True)
    reload_with_certificate(t, certs, tmp_path / "ec.crt", tmp_path / "ec.key").close()
    assert peer_certificate(t.host, t.port) == pem_to_der(tmp_path / "ec.crt")
    with tls_conn(t, "require", channel_binding="require") as c:
        assert c.execute("select 3").fetchone()[0] == 3


def test_unreadable_certificate_is_a_config_error(cluster, certs, tmp_path):
    cfg = build_config(cluster, 6543, general=client_tls(certs, "require", tls_certificate=str(tmp_path / "missing.crt")))
    path = tmp_path / "pgcat.yaml"
    path.write_text(to_yaml(cfg))
    r = run_pgcat(["--check", str(path)])
    assert r.returncode == 78, r.stdout
    assert "general.tls_certificate" in r.stdout and "missing.crt" in r.stdout, r.stdout
    bad_key = build_config(cluster, 6543, general=client_tls(certs, "allow", tls_private_key=str(certs / "other-ca.key")))
    path.write_text(to_yaml(bad_key))
    r = run_pgcat(["--check", str(path)])
    assert r.returncode == 78 and "general.tls_private_key" in r.stdout, r.stdout


# --- server side ---------------------------------------------------------------------------------------------

SERVER_SSL = "select ssl from pg_stat_ssl where pid = pg_backend_pid()"


def server_tls(certs, verify: bool, ca: str = "ca.crt") -> dict:
    g = {"server_tls": True, "verify_server_certificate": verify}
    if verify:
        g["server_tls_ca_file"] = str(certs / ca)
    return g


def test_server_connections_are_plaintext_without_server_tls(pgcat):
    t = pgcat()
    with t.connect() as c:
        assert c.execute(SERVER_SSL).fetchone()[0] is False


def test_server_tls_without_verification(pgcat, certs):
    t = pgcat(general=server_tls(certs, verify=False))
    with t.connect() as c:
        assert c.execute(SERVER_SSL).fetchone()[0] is True


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_server_tls_verify_full(pgcat, cluster, certs, host):
    t = pgcat(general=server_tls(certs, verify=True), servers=[[host, cluster.primary, "primary"]])
    with t.connect() as c:
        assert c.execute(SERVER_SSL).fetchone()[0] is True
        assert c.execute("select count(*) from pg_class").fetchone()[0] > 0


def test_server_tls_verify_full_rejects_a_certificate_from_another_ca(pgcat, certs):
    t = pgcat(general=dict(server_tls(certs, verify=True, ca="other-ca.crt"), connect_timeout=3000))
    started = time.monotonic()
    with pytest.raises(psycopg.Error) as e:
        with t.connect() as c:
            c.execute("select 1")
    assert time.monotonic() - started < 15
    assert "TLS handshake with the server failed: CERTIFICATE_VERIFY_FAILED" in str(e.value), str(e.value)
    assert "CERTIFICATE_VERIFY_FAILED" in t.log()


def test_a_large_first_query_over_server_tls(pgcat, certs):
    """A 30 MB query text as a client's first request, while the server connection it needs logs in over TLS: the
    answer comes back and the pooler lives (it once trapped when the login ended inside a TLS write, and copied
    the growing message once per read)."""
    t = pgcat(general=server_tls(certs, verify=False), pool_size=3)
    size = 30_000_000
    for _ in range(3):
        with t.connect() as c:
            assert c.execute(f"select length('{'x' * size}')").fetchone()[0] == size
    assert t.proc.poll() is None, t.log()[-3000:]
