"""Session pinning in transaction mode: LISTEN, session-level advisory locks, temporary tables and WITH HOLD
cursors keep state on the server connection past the transaction. The pooler pins such a client to its server
connection (and says so with a NOTICE) until it disconnects, then resets the connection with DISCARD ALL."""

import threading

import psycopg
import pytest

pytestmark = pytest.mark.pooler_only


def notices(conn) -> list[str]:
    seen: list[str] = []
    conn.add_notice_handler(lambda d: seen.append(d.message_primary or ""))
    return seen


def test_listen_pins_and_notifications_arrive(pgcat, primary):
    t = pgcat(pool_size=2)
    with t.connect() as listener, t.connect() as other:
        told = notices(listener)
        listener.execute("listen pinned_jobs")
        assert any("LISTEN pins this session" in n for n in told), told
        pid = listener.execute("select pg_backend_pid()").fetchone()[0]
        for _ in range(5):  # other clients' transactions do not take the pinned connection
            assert other.execute("select pg_backend_pid()").fetchone()[0] != pid
        primary.sql("notify pinned_jobs, 'hello'")
        got = list(listener.notifies(timeout=5, stop_after=1))
        assert [n.payload for n in got] == ["hello"]
        assert listener.execute("select pg_backend_pid()").fetchone()[0] == pid


def test_advisory_lock_stays_with_its_client_and_is_released_when_it_leaves(pgcat, primary):
    t = pgcat(pool_size=1)
    with t.connect() as a:
        assert a.execute("select pg_try_advisory_lock(4242)").fetchone()[0] is True
        a.execute("select 1")
        # Still held by a's backend (the lock would be lost, or leaked to another client, without pinning).
        assert primary.value("select count(*) from pg_locks where locktype = 'advisory' and objid = 4242") == 1
    primary.wait_until("select count(*) from pg_locks where locktype = 'advisory' and objid = 4242", expect=0)
    with t.connect() as b:
        assert b.execute("select pg_try_advisory_lock(4242)").fetchone()[0] is True


def test_temporary_table_survives_transactions_and_does_not_reach_the_next_client(pgcat):
    t = pgcat(pool_size=1)
    with t.connect() as a:
        a.execute("create temp table scratch (v int)")
        a.execute("insert into scratch values (1), (2)")
        assert a.execute("select sum(v) from scratch").fetchone()[0] == 2 + 1
    with t.connect() as b:
        with pytest.raises(psycopg.errors.UndefinedTable):
            b.execute("select * from scratch")


def test_with_hold_cursor_survives_commit(pgcat):
    t = pgcat(pool_size=1)
    with t.connect(autocommit=False) as a:
        a.execute("declare held cursor with hold for select g from generate_series(1, 3) g")
        a.commit()
        assert a.execute("fetch 2 from held").fetchall() == [(1,), (2,)]
        a.commit()
        assert a.execute("fetch 1 from held").fetchall() == [(3,)]


def test_pinned_client_does_not_block_others_beyond_its_connection(pgcat):
    """With pool_size 2 and one client pinned, 20 other clients share the remaining connection."""
    t = pgcat(pool_size=2)
    errors: list[BaseException] = []
    with t.connect() as pinned:
        pinned.execute("listen x")
        pid = pinned.execute("select pg_backend_pid()").fetchone()[0]

        def work(n: int):
            try:
                with t.connect() as c:
                    for i in range(10):
                        row = c.execute("select %s::int, pg_backend_pid()", (n * 100 + i,)).fetchone()
                        assert row[0] == n * 100 + i and row[1] != pid
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(20)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
    assert not errors, errors[:3]
