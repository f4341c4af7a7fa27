"""PostgresML calls under read/write splitting, on the stand-in pgml schema (tests/fixtures/pgml_stub.sql): pgml's
write functions (train, deploy, ...) go to the primary, where they succeed (PgCat sends them to a replica, where
they fail with 25006); inference and metadata reads stay reads."""

import psycopg
import pytest

from support import HOST

pytestmark = pytest.mark.pooler_only


def test_pgml_writes_go_to_the_primary_inference_to_replicas(pgcat, cluster, pgml):
    servers = [[HOST, cluster.primary, "primary"], [HOST, cluster.replica1, "replica"], [HOST, cluster.replica2, "replica"]]
    t = pgcat(pool_size=2, users=["app"], servers=servers,
              pool={"query_parser_enabled": True, "query_parser_read_write_splitting": True,
                    "primary_reads_enabled": False})
    # On a replica, train fails: that is where a pooler that takes it for a read would send it.
    with psycopg.connect(host=HOST, port=cluster.replica1, user="app", password="app", dbname="app") as direct:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            direct.execute("select * from pgml.train('it_project', 'regression', 'it_train_data', 'y')")
    with t.connect() as c:
        trained = c.execute("select * from pgml.train('it_project', 'regression', 'it_train_data', 'y')").fetchall()
        assert trained and trained[0][0] == "it_project"
        c.execute("select * from pgml.deploy('it_project', 'most_recent')")
        standby = c.execute("select pgml.stub_node()->>'standby', pgml.embed('intfloat/e5-small-v2', 'hello') "
                            "is not null").fetchone()
        assert standby == ("true", True), "inference is a read"
        assert c.execute("select pgml.version(), pg_is_in_recovery()").fetchone()[1] is True
