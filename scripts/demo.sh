#!/usr/bin/env bash
# One command for a working demo: installs what is missing, builds pgcat (release), starts a local PostgreSQL 15
# cluster (primary 127.0.0.1:25432, streaming replicas :25433 and :25434) and runs pgcat with the shipped
# pgcat.yaml on 127.0.0.1:6432. Then, in another terminal:
#     PGPASSWORD=app psql -h 127.0.0.1 -p 6432 -U app app
# Ctrl-C stops pgcat (gracefully); `scripts/cluster.sh stop` stops the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
swift build -c release --product pgcat
PGCAT_CLUSTER_PORT=25432 bash scripts/cluster.sh start
echo "demo: pgcat on 127.0.0.1:6432 (database app, user app, password app); Ctrl-C to stop"
exec .build/release/pgcat pgcat.yaml "$@"
