#!/usr/bin/env bash
# The floor of a relay's CPU per transaction: pgbench select-only through three minimal 1:1 TCP relays (no protocol
# logic, one connection to Postgres per client), alternating: one on SwiftNIO (NIOPosix), one on a hand-written
# epoll loop, and one on that epoll loop with each socket behind a small custom NIO Channel and its ChannelPipeline
# (what NIO's pipeline costs without NIOPosix).
# It shows what the I/O layer alone costs per transaction, before any pooler logic (docs/benchmarks.md, "What would
# close the gap").
#
#   benchmarks/relay-floor/run.sh                 # starts the bench cluster (scripts/cluster.sh, port 16432)
#   RELAY_FLOOR_EXTRA="pgbouncer:6501:<pid> pgcat:6502:<pid>" benchmarks/relay-floor/run.sh   # alternate others too
#
# Environment: RELAY_FLOOR_ROUNDS (3), RELAY_FLOOR_SECONDS (10), RELAY_FLOOR_CLIENTS (10), RELAY_FLOOR_RATE (4000;
# the fixed-rate pass), BENCH_CLUSTER_PORT (16432). The database needs pgbench tables for user app/app (bench.sh
# creates them). Prints TPS and the relay's user and system CPU µs per transaction (from /proc).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
ROUNDS="${RELAY_FLOOR_ROUNDS:-3}" SECONDS_PER_RUN="${RELAY_FLOOR_SECONDS:-10}" CLIENTS="${RELAY_FLOOR_CLIENTS:-10}"
RATE="${RELAY_FLOOR_RATE:-4000}" PG_PORT="${BENCH_CLUSTER_PORT:-16432}"
export PGPASSWORD=app

(cd "$HERE" && swift build -c release >/dev/null)
# Started only when not running: a start resets app's password, and with it the verifier another pooler may hold.
if ! pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; then
    PGCAT_CLUSTER_PORT="$PG_PORT" PGCAT_CLUSTER_DIR="/tmp/pgcat-bench-cluster-$PG_PORT" "$ROOT/scripts/cluster.sh" start >/dev/null
fi
"$HERE/.build/release/NIORelay" 6701 "$PG_PORT" & NIO_PID=$!
"$HERE/.build/release/EpollRelay" 6702 "$PG_PORT" & EPOLL_PID=$!
"$HERE/.build/release/PipelineRelay" 6703 "$PG_PORT" & PIPELINE_PID=$!
trap 'kill $NIO_PID $EPOLL_PID $PIPELINE_PID 2>/dev/null || true' EXIT
sleep 1
TARGETS="nio-relay:6701:$NIO_PID epoll-relay:6702:$EPOLL_PID pipeline-relay:6703:$PIPELINE_PID ${RELAY_FLOOR_EXTRA:-}"

measure() { # name port pid [pgbench args...]
    local name=$1 port=$2 pid=$3 u0 s0 u1 s1 out tx tps
    shift 3
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    out="$(pgbench -n -S "$@" -c "$CLIENTS" -j 2 -T "$SECONDS_PER_RUN" -h 127.0.0.1 -p "$port" -U app app 2>&1)"
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    tx="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")"
    tps="$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | head -n1)"
    echo "$name $tps $((u1 - u0)) $((s1 - s0)) $tx"
}

for pass in "fixed rate $RATE:-R $RATE" "saturated:"; do
    label="${pass%%:*}" args="${pass#*:}"
    for t in $TARGETS; do IFS=: read -r n p _ <<<"$t"; pgbench -n -S -c "$CLIENTS" -j 2 -T 2 -h 127.0.0.1 -p "$p" -U app app >/dev/null 2>&1; done
    for (( r = 1; r <= ROUNDS; r++ )); do
        for t in $TARGETS; do IFS=: read -r n p pid <<<"$t"; measure "$n" "$p" "$pid" $args; done
    done | python3 -c '
import collections, os, sys
hz = os.sysconf("SC_CLK_TCK"); rows = collections.OrderedDict()
for line in sys.stdin:
    name, tps, u, s, tx = line.split()
    rows.setdefault(name, []).append((float(tps), int(u) * 1e6 / hz / int(tx), int(s) * 1e6 / hz / int(tx)))
print(f"{sys.argv[1]}, {sys.argv[2]} clients, mean of {sys.argv[3]} alternating runs:")
for name, runs in rows.items():
    n = len(runs); tps, user, sys_ = (sum(r[i] for r in runs) / n for i in range(3))
    print(f"  {name:14} {tps:8.0f} tps  user {user:5.1f}  system {sys_:5.1f}  total {user + sys_:5.1f} µs/tx")
' "$label" "$CLIENTS" "$ROUNDS"
done
