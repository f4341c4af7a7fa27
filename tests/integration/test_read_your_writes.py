"""`pools.<name>.read_your_writes_window` under read/write splitting, on the primary and two streaming replicas:
after a client's write commits, that client's reads go to the primary for the window (docs/configuration.md: "after
a client's write commits, its reads go where the write is visible for this long"; docs/architecture.md: "its reads
stay on the primary for this many milliseconds"), then back to the replicas. Other clients' reads are not affected,
and with the window at 0 (the default) a read right after a write goes to a replica. Where a statement ran is read
back with inet_server_port()."""

import time

import pytest

from support import HOST

pytestmark = pytest.mark.pooler_only

WINDOW_MS = 1500


def servers(cluster):
    return [[HOST, cluster.primary, "primary"], [HOST, cluster.replica1, "replica"], [HOST, cluster.replica2, "replica"]]


@pytest.fixture
def ryw(pgcat, cluster):
    def start(window: int = WINDOW_MS):
        pool = {"query_parser_enabled": True, "query_parser_read_write_splitting": True,
                "primary_reads_enabled": False}
        if window is not None:
            pool["read_your_writes_window"] = window
        return pgcat(pool_size=3, users=["app"], servers=servers(cluster), pool=pool)
    return start


def port_of(conn, sql="select inet_server_port()", params=None) -> int:
    return conn.execute(sql, params).fetchone()[0]


def test_reads_after_a_write_go_to_the_primary_for_the_window(ryw, cluster, primary):
    table = primary.make_table("ryw_t")
    t = ryw()
    with t.connect() as c:
        assert {port_of(c) for _ in range(10)} <= set(cluster.replicas), "before any write, reads go to replicas"
        c.execute(f"insert into {table} values (1, 'mine')")
        written = time.monotonic()
        # Its own write is read back at once, on the primary, whatever the replicas' lag.
        assert c.execute(f"select v, inet_server_port() from {table} where id = 1").fetchone() == ("mine", cluster.primary)
        ports = [port_of(c) for _ in range(5)]
        assert time.monotonic() - written < WINDOW_MS / 1000 - 0.3, "too slow to check inside the window"
        assert set(ports) == {cluster.primary}, ports
        # After the window (no statement in between), reads go back to the replicas.
        time.sleep(WINDOW_MS / 1000 + 0.3)
        assert {port_of(c) for _ in range(10)} <= set(cluster.replicas)
        # A write inside an explicit transaction opens the window again when it commits.
        c.execute("begin")
        c.execute(f"update {table} set v = 'again' where id = 1")
        c.execute("commit")
        assert port_of(c) == cluster.primary


def test_the_window_is_per_client(ryw, cluster, primary):
    table = primary.make_table("ryw_t2")
    t = ryw(window=5000)
    with t.connect() as writer, t.connect() as reader:
        writer.execute(f"insert into {table} values (1, 'w')")
        assert port_of(writer) == cluster.primary
        # another client of the same pool keeps reading from the replicas
        assert {port_of(reader) for _ in range(10)} <= set(cluster.replicas)
        assert port_of(writer) == cluster.primary


def test_without_a_window_a_read_after_a_write_goes_to_a_replica(ryw, cluster, primary):
    table = primary.make_table("ryw_t3")
    t = ryw(window=None)  # the default, 0: off
    with t.connect() as c:
        c.execute(f"insert into {table} values (1, 'w')")
        assert port_of(c) in cluster.replicas


def test_reads_inside_the_window_do_not_extend_it(ryw, cluster, primary):
    table = primary.make_table("ryw_t4")
    window_ms = 1000
    t = ryw(window=window_ms)
    with t.connect() as c:
        c.execute(f"insert into {table} values (1, 'w')")
        written = time.monotonic()
        seen = []
        # Reads every 200 ms, for three windows: once the write's window is over they go to the replicas.
        while time.monotonic() - written < 3 * window_ms / 1000:
            seen.append((round(time.monotonic() - written, 2), port_of(c)))
            time.sleep(0.2)
        late = [port for at, port in seen if at > window_ms / 1000 + 0.5]
        assert late and set(late) <= set(cluster.replicas), seen


def test_a_write_pipelined_behind_a_window_read_opens_the_window_again(ryw, cluster, primary):
    """Inside the window a read goes to the primary; a write pipelined behind it (its own Sync, same network write)
    commits there too and must open a new window, so that the client reads it back on the primary later on."""
    from pgwire import RawConn, query_message

    table = primary.make_table("ryw_t5")
    window_ms = 1500
    t = ryw(window=window_ms)
    c = RawConn(t.host, t.port)
    c.startup("app", "app", "app")
    c.send(query_message(f"insert into {table} values (1, 'w')"))
    assert c.read_until_ready() == []
    written = time.monotonic()
    time.sleep(0.9)
    c.send(query_message("select inet_server_port()") + query_message(f"update {table} set v = 'again' where id = 1"))
    assert c.read_until_ready() == [[str(cluster.primary)]]
    assert c.read_until_ready() == []
    rewritten = time.monotonic()
    # Past the first write's window, well inside the second's.
    time.sleep(max(0.0, written + window_ms / 1000 + 0.3 - time.monotonic()))
    assert time.monotonic() - rewritten < window_ms / 1000 - 0.3, "too slow to check inside the second window"
    c.send(query_message("select inet_server_port()"))
    assert c.read_until_ready() == [[str(cluster.primary)]]
    c.terminate()
