"""A steady read/write workload that keeps a ledger: every write the client saw commit is recorded, every write
whose commit outcome the client cannot know (the connection broke during COMMIT) is recorded as ambiguous. After a
run, the table must hold every committed write exactly once and nothing that was neither committed nor ambiguous."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import psycopg

TABLE = "chaos_ledger"
CLIENT_TIMEOUT = 20.0  # every operation must end (succeed or fail) within this many seconds


def create_table(connection) -> None:
    connection.execute(f"drop table if exists {TABLE}")
    # no unique key: a write applied twice must show up as a duplicate rather than be refused
    connection.execute(f"create table {TABLE} (worker int not null, seq int not null, at timestamptz default now())")
    connection.execute(f"grant all on {TABLE} to public")


# What libpq says when the bytes it reads do not parse as protocol messages.
GARBLED_STREAM = ("lost synchronization with server", "message contents do not agree with length",
                  "unexpected message type", "insufficient data in")


@dataclass
class Ledger:
    conninfo: str
    workers: int = 6
    reads: bool = True
    committed: set = field(default_factory=set)
    ambiguous: set = field(default_factory=set)
    errors: Counter = field(default_factory=Counter)
    # error class -> its first message with SQLSTATE: what a client actually saw, for the report
    error_samples: dict = field(default_factory=dict)
    # errors that mean the byte stream from the pooler was garbled (libpq lost its place in it); never acceptable
    garbled: list = field(default_factory=list)
    # connections that ended with no message from the pooler (libpq: "server closed the connection unexpectedly");
    # the pooler always says why it ends a session, also when the client was idle (stop 25)
    unexplained: list = field(default_factory=list)
    slowest: float = 0.0
    commit_times: list = field(default_factory=list)  # monotonic time of every commit, in order
    started_at: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # worker -> (statement, started): what each worker waits for now, named when one hangs (by then the others
    # have disconnected, so the pooler's SHOW CLIENTS lists only the hung ones)
    _current: dict = field(default_factory=dict)
    # called when a worker hangs; its text joins the assertion (e.g. the pooler's SHOW CLIENTS)
    diagnose: object = None

    def start(self) -> "Ledger":
        self.started_at = time.monotonic()
        for worker in range(self.workers):
            thread = threading.Thread(target=self._run, args=(worker,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=CLIENT_TIMEOUT + 10)
        hung = [t for t in self._threads if t.is_alive()]
        if hung:
            now = time.monotonic()
            with self._lock:
                waits = [f"worker {w}: {op} for {now - at:.1f}s"
                         for w, (op, at) in sorted(self._current.items()) if op]
            extra = ""
            if self.diagnose is not None:
                try:
                    extra = "\n" + str(self.diagnose())
                except Exception as error:  # the diagnosis must not hide the hang
                    extra = f"\n(diagnosis failed: {error})"
            raise AssertionError(f"{len(hung)} workload clients hung past {CLIENT_TIMEOUT}s: " + "; ".join(waits) + extra)

    def commits(self) -> int:
        with self._lock:
            return len(self.committed)

    def wait_for_commits(self, more: int, timeout: float) -> None:
        """Waits until `more` further writes commit (the workload makes progress)."""
        target = self.commits() + more
        deadline = time.monotonic() + timeout
        while self.commits() < target:
            assert time.monotonic() < deadline, f"the workload made no progress for {timeout}s: {dict(self.errors)}"
            time.sleep(0.05)

    def _note(self, started: float, error: str | None = None, message: str = "") -> None:
        with self._lock:
            self.slowest = max(self.slowest, time.monotonic() - started)
            if error:
                self.errors[error] += 1
                self.error_samples.setdefault(error, message[:300])
                if any(sign in message for sign in GARBLED_STREAM):  # (the whole text: libpq appends these)
                    self.garbled.append(message)
                if "server closed the connection unexpectedly" in message:
                    self.unexplained.append(message)

    def _doing(self, worker: int, op: str | None) -> None:
        with self._lock:
            self._current[worker] = (op, time.monotonic())

    def _run(self, worker: int) -> None:
        seq = 0
        connection = None
        while not self._stop.is_set():
            started = time.monotonic()
            committing = False
            try:
                if connection is None or connection.closed:
                    self._doing(worker, "connect")
                    connection = psycopg.connect(self.conninfo, connect_timeout=5, prepare_threshold=None, autocommit=True,
                                                 options=f"-c statement_timeout={int(CLIENT_TIMEOUT * 500)}")
                seq += 1
                self._doing(worker, "begin")
                connection.execute("begin")
                self._doing(worker, f"insert ({worker}, {seq})")
                connection.execute(f"insert into {TABLE} (worker, seq) values (%s, %s)", (worker, seq))
                committing = True
                self._doing(worker, "commit")
                connection.execute("commit")
                committing = False
                with self._lock:
                    self.committed.add((worker, seq))
                    self.commit_times.append(time.monotonic())
                if self.reads:
                    self._doing(worker, "select count(*)")
                    connection.execute(f"select count(*) from {TABLE} where worker = %s", (worker,)).fetchone()
                self._doing(worker, None)
                self._note(started)
            except psycopg.Error as error:
                # A failure while committing leaves the outcome unknown; before that, nothing was written.
                if committing:
                    with self._lock:
                        self.ambiguous.add((worker, seq))
                doing = self._current.get(worker, (None, 0))[0]
                self._note(started, type(error).__name__,
                           f"{getattr(error, 'sqlstate', None)} at {doing}: {str(error).strip()}")
                try:
                    if connection is not None:
                        connection.close()
                except Exception:
                    pass
                connection = None
                self._doing(worker, None)
                time.sleep(0.05)
        if connection is not None:
            connection.close()

    def longest_outage(self, since: float | None = None) -> float:
        """The longest time without any write committing (from `since`, by default the start): what a fault cost
        the workload until it recovered."""
        with self._lock:
            times = [t for t in self.commit_times if since is None or t >= since]
        start = self.started_at if since is None else since
        gaps = [b - a for a, b in zip([start, *times], times)]
        return max(gaps, default=0.0)

    def check(self, superuser_conn) -> dict:
        """The table against the ledger; returns a summary for the test's message."""
        rows = superuser_conn.execute(f"select worker, seq, count(*) from {TABLE} group by worker, seq").fetchall()
        present = {(w, s): n for w, s, n in rows}
        duplicated = {k: n for k, n in present.items() if n > 1}
        lost = self.committed - present.keys()
        phantom = present.keys() - self.committed - self.ambiguous
        assert not duplicated, f"writes applied more than once: {sorted(duplicated)[:10]}"
        assert not lost, f"{len(lost)} committed writes lost: {sorted(lost)[:10]}"
        assert not phantom, f"{len(phantom)} writes present that never committed: {sorted(phantom)[:10]}"
        assert not self.garbled, f"clients saw a garbled stream from the pooler: {self.garbled[:3]}"
        assert not self.unexplained, f"the pooler closed clients without a message: {self.unexplained[:3]}"
        assert self.slowest < CLIENT_TIMEOUT + 5, f"an operation took {self.slowest:.1f}s"
        return {"committed": len(self.committed), "ambiguous": len(self.ambiguous), "errors": dict(self.errors),
                "slowest_s": round(self.slowest, 2), "error_samples": dict(self.error_samples)}
