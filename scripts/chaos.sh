#!/usr/bin/env bash
# The chaos suite (issue 9): faults injected under a ledger workload, on a cluster of its own (it kills, stops and
# promotes servers), then the checks of tests/chaos/test_chaos.py. Separate from the fast suite (scripts/test.sh).
#
#   scripts/chaos.sh                    # build (debug) if needed, start a cluster, run every chaos test, stop it
#   scripts/chaos.sh -- -k sigkill      # extra pytest arguments
#
# Environment: CHAOS_CLUSTER_PORT (27432; replicas +1, +2), CHAOS_SECONDS (each fault phase, 8),
# CHAOS_SOAK_SECONDS (the memory soak, 60; 600 for the ten-minute soak), PGCAT_BIN (default .build/debug/pgcat),
# CHAOS_REPORT (JSON lines, one per fault; printed as a table at the end).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PYTEST_ARGS=()
[[ "${1:-}" == -- ]] && { shift; PYTEST_ARGS=("$@"); }
export PGCAT_CLUSTER_PORT="${CHAOS_CLUSTER_PORT:-27432}"
export PGCAT_CLUSTER_DIR="/tmp/pgcat-chaos-cluster-$PGCAT_CLUSTER_PORT"
export PGCAT_BIN="${PGCAT_BIN:-$ROOT/.build/debug/pgcat}"
[[ -x "$PGCAT_BIN" ]] || swift build --product pgcat
ulimit -n 65536 2>/dev/null || true
cleanup() { bash scripts/cluster.sh stop >/dev/null 2>&1 || true; }
trap cleanup EXIT
bash scripts/cluster.sh start
export CHAOS_REPORT="${CHAOS_REPORT:-$PGCAT_CLUSTER_DIR.report.jsonl}"
: >"$CHAOS_REPORT"
rc=0
timeout --kill-after=30 3000 python3 -m pytest tests/chaos -q -p no:cacheprovider -s "${PYTEST_ARGS[@]}" || rc=$?
python3 scripts/lib/chaos_table.py "$CHAOS_REPORT"  # what each fault cost the workload
exit "$rc"
