"""Many concurrent clients on a small pool: every client gets its own answers, and the pooler never holds more than
pool_size server connections for the (database, user)."""

import asyncio
import threading
import time

import psycopg
import pytest

from support import HOST, pooler_ports_to

N_CLIENTS = 120
POOL_SIZE = 5


class BackendSampler(threading.Thread):
    """Polls the primary for the pooler's backends of app/app (ignoring background probes) and keeps the maximum."""

    def __init__(self, primary, target, cluster):
        super().__init__(daemon=True)
        self.primary, self.target, self.cluster = primary, target, cluster
        self.stop_event = threading.Event()
        self.max_seen = 0
        self.samples = 0
        self.error = None

    def count(self, conn) -> int:
        ports = sorted(pooler_ports_to(self.target.proc.pid, self.cluster.primary))
        if not ports:
            return 0
        return conn.execute(
            "select count(*) from pg_stat_activity where usename = 'app' and datname = 'app' "
            "and client_addr = %s and client_port = any(%s) and application_name <> 'pgcat_probe'",
            (HOST, ports),
        ).fetchone()[0]

    def run(self):
        try:
            with self.primary.connect("postgres") as conn:
                while not self.stop_event.is_set():
                    self.max_seen = max(self.max_seen, self.count(conn))
                    self.samples += 1
                    time.sleep(0.02)
                self.max_seen = max(self.max_seen, self.count(conn))
        except Exception as e:  # noqa: BLE001
            self.error = e


@pytest.mark.timeout(180)
def test_120_asyncpg_clients_on_pool_of_5(pgcat, primary, cluster):
    t = pgcat(pool_size=POOL_SIZE, general={"connect_timeout": 30000})
    sampler = None
    if not t.direct:
        sampler = BackendSampler(primary, t, cluster)
        sampler.start()

    async def client(n: int):
        conn = await t.aconnect(timeout=60)
        try:
            got = []
            for i in range(3):
                got.append(await conn.fetchval("select $1::int", n * 1000 + i))
            got.append(await conn.fetchval("select $1::text || '-' || $2::text", f"c{n}", "x"))
            async with conn.transaction():
                got.append(await conn.fetchval(f"select {n} + 0"))
            return n, got
        finally:
            await conn.close()

    async def main():
        return await asyncio.gather(*(client(n) for n in range(N_CLIENTS)), return_exceptions=True)

    try:
        results = asyncio.run(asyncio.wait_for(main(), 150))
    finally:
        if sampler:
            sampler.stop_event.set()
            sampler.join(10)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"{len(errors)} clients failed, first: {errors[0]!r}"
    for n, got in results:
        assert got == [n * 1000, n * 1000 + 1, n * 1000 + 2, f"c{n}-x", n], (n, got)
    if sampler:
        assert sampler.error is None, sampler.error
        assert sampler.samples > 0
        assert 1 <= sampler.max_seen <= POOL_SIZE, f"saw {sampler.max_seen} server connections for app/app"


@pytest.mark.timeout(180)
def test_concurrent_writers_simple_protocol(pgcat, primary):
    """40 threads, each with its own psycopg connection (client-side binding: simple Query messages), 5 committed
    transactions each; every row arrives exactly once."""
    table = primary.make_table("it_conc_writers")
    t = pgcat(pool_size=POOL_SIZE, general={"connect_timeout": 30000})
    errors = []

    def worker(w: int):
        try:
            with t.connect(cursor_factory=psycopg.ClientCursor) as c:
                for i in range(5):
                    with c.transaction():
                        c.execute(f"insert into {table} values (%s, %s)", (w * 100 + i, f"w{w}"))
                        n = c.execute(f"select count(*) from {table} where v = %s", (f"w{w}",)).fetchone()[0]
                        assert n == i + 1, (w, i, n)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(40)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not any(th.is_alive() for th in threads), "some workers hung"
    assert not errors, errors[:3]
    ids = [r[0] for r in primary.sql(f"select id from {table} order by id")]
    assert ids == sorted(w * 100 + i for w in range(40) for i in range(5))
