#!/usr/bin/env bash
# One command for a working demo: installs what is missing, builds pgcat (release), starts a local PostgreSQL 15
# cluster (primary 127.0.0.1:25432, streaming replicas :25433 and :25434) and runs pgcat with the shipped
# pgcat.yaml on 127.0.0.1:6432, with read/write splitting and the ML router on (the stand-in pgml schema is
# loaded, the replica on :25434 is tagged gpu). Then, in another terminal:
#     PGPASSWORD=app psql -h 127.0.0.1 -p 6432 -U app app
# Ctrl-C stops pgcat (gracefully); `scripts/cluster.sh stop` stops the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
swift build -c release --product pgcat
PGCAT_CLUSTER_PORT=25432 bash scripts/cluster.sh start
# A stand-in for PostgresML's pgml schema (same functions, deterministic results, no GPU), so the ML router has
# something to route: pgml.embed(...) runs on the replica tagged gpu in pgcat.yaml.
PGOPTIONS="-c client_min_messages=warning" PGCAT_CLUSTER_PORT=25432 \
    bash scripts/cluster.sh psql -d app -q -v ON_ERROR_STOP=1 -f tests/fixtures/pgml_stub.sql >/dev/null
PGCAT_CLUSTER_PORT=25432 bash scripts/cluster.sh psql -d app -q -c \
    "grant usage on schema pgml to public; grant all on all tables in schema pgml to public; grant all on all sequences in schema pgml to public" >/dev/null
echo "demo: pgcat on 127.0.0.1:6432 (database app, user app, password app); Ctrl-C to stop"
exec .build/release/pgcat pgcat.yaml "$@"
