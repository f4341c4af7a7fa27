"""Relay writes go straight to the client's socket after its 16th server lease (DirectSocketWriter). A client that
stops reading in the middle of a large result makes the kernel refuse bytes: the rest must go through NIO, in
order, without stalling other clients, and the connection must carry on afterwards."""

import hashlib
import threading
import time

from pgwire import RawConn, query_message
from support import PASSWORDS

ROWS = 200_000
BIG_QUERY = f"select g, repeat(md5(g::text), 8) from generate_series(1, {ROWS}) g"


def expected_digest() -> str:
    h = hashlib.sha256()
    for g in range(1, ROWS + 1):
        h.update(f"{g}|{hashlib.md5(str(g).encode()).hexdigest() * 8}\n".encode())
    return h.hexdigest()


def test_slow_reader_after_direct_writes_gets_every_byte_in_order(pgcat):
    t = pgcat(pool_size=2)
    with RawConn(t.host, t.port, timeout=30) as slow:
        slow.startup("app", "app", PASSWORDS["app"])
        for i in range(20):  # past the 16 leases after which writes to this client go direct
            assert slow.query(f"select {i}") == [[str(i)]]
        slow.send(query_message(BIG_QUERY))
        # Not reading: ~55 MB cannot fit in the socket buffers, so the pooler's sends hit a full socket and the rest
        # queues in NIO (a smaller SO_RCVBUF here would only make TCP crawl).
        time.sleep(1.0)

        # Meanwhile another client is served normally (the event loop is not blocked by the stalled one).
        done = threading.Event()
        errors: list[BaseException] = []

        def other_client():
            try:
                with RawConn(t.host, t.port) as other:
                    other.startup("app", "app", PASSWORDS["app"])
                    for i in range(30):
                        assert other.query(f"select 'other {i}'") == [[f"other {i}"]]
                done.set()
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        thread = threading.Thread(target=other_client, daemon=True)
        thread.start()
        thread.join(20)
        assert not errors, errors
        assert done.is_set(), "another client was not served while one client stopped reading"

        rows = slow.read_until_ready()
        h = hashlib.sha256()
        for g, text in rows:
            h.update(f"{g}|{text}\n".encode())
        assert len(rows) == ROWS
        assert h.hexdigest() == expected_digest()
        # The same connection carries on (writes went back to the direct path after NIO drained).
        for i in range(5):
            assert slow.query(f"select 'after {i}'") == [[f"after {i}"]]
