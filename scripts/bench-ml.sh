#!/usr/bin/env bash
# Isolation of ordinary queries from inference (issue 6): pgbench select-only through pgcat, once alone and once
# beside a flood of slow inference (the stand-in pgml's embed with a per-call delay), on a cluster whose second
# replica is tagged gpu. Reports ordinary-query p50/p99 latency, TPS and failures for both runs, and what the
# flood achieved. A measurement, not a test.
#
#   scripts/bench-ml.sh                # builds the release binary if needed, prints the table
#   scripts/bench-ml.sh --write-docs   # ... and replaces the "ML isolation" section of docs/benchmarks.md
#
# Environment: BENCH_DURATION (s, 15), BENCH_CLIENTS (ordinary pgbench clients, 10), BENCH_FLOOD_CLIENTS (20),
# BENCH_INFERENCE_MS (delay of each inference, 50), BENCH_ROUNDS (alternating alone/flood rounds, 3),
# BENCH_CLUSTER_PORT (16432), BENCH_SKIP_BUILD=1, PGCAT_BIN, BENCH_PIN (0).
#
# BENCH_PIN=1 stands in for the deployment the ML router is for: the gpu server and the clients
# flooding it are other machines. They run on the last CPU (taskset), pgcat, the primary, the read replica and
# the ordinary pgbench on the others, so what remains of the flood's effect on ordinary queries is what they
# share: pgcat. BENCH_PIN=0 runs everything on every CPU (then the stand-in's own CPU work on the gpu server
# competes with the ordinary queries too).
#
# The runs alternate (alone, flood, alone, flood, ...) and the summary compares the p99 of all ordinary
# transactions of the alone runs with that of the flood runs: a single pair of runs on a small VM differs by
# 10-20% from noise and from which run came first.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DURATION="${BENCH_DURATION:-15}"
CLIENTS="${BENCH_CLIENTS:-10}"
FLOOD="${BENCH_FLOOD_CLIENTS:-20}"
INFER_MS="${BENCH_INFERENCE_MS:-50}"
ROUNDS="${BENCH_ROUNDS:-3}"
INFERENCE_POOL=4
PIN="${BENCH_PIN:-0}"
CPUS="$(nproc)"
(( CPUS >= 2 )) || PIN=0
LAST_CPU=$((CPUS - 1))
OTHER_CPUS="0-$((CPUS - 2))"
pinned() { # cpu list, command...: runs the command on those CPUs when pinning
    local cpus="$1"; shift
    if (( PIN )); then taskset -c "$cpus" "$@"; else "$@"; fi
}
pin_node() { # node, cpu list: a running Postgres node and all its processes
    local pid
    pid="$(head -n1 "$CLUSTER_DIR/$1/postmaster.pid")"
    for p in "$pid" $(pgrep -P "$pid"); do taskset -a -p -c "$2" "$p" >/dev/null; done
}
PG_PORT="${BENCH_CLUSTER_PORT:-16432}"
CLUSTER_DIR="${BENCH_CLUSTER_DIR:-/tmp/pgcat-bench-cluster-$PG_PORT}"
WRITE_DOCS=0
[[ "${1:-}" == --write-docs ]] && WRITE_DOCS=1

note() { echo "bench-ml.sh: $*" >&2; }
die() { note "$*"; exit 1; }
cluster() { PGCAT_CLUSTER_PORT="$PG_PORT" PGCAT_CLUSTER_DIR="$CLUSTER_DIR" "$ROOT/scripts/cluster.sh" "$@"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
export PGPASSWORD=app PGSSLMODE=disable PGCONNECT_TIMEOUT=10

BIN="${PGCAT_BIN:-$ROOT/.build-release/release/pgcat}"
if [[ -z "${PGCAT_BIN:-}" && "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    note "building pgcat (release)"
    (cd "$ROOT" && swift build -c release --scratch-path .build-release --product pgcat >/dev/null)
fi
[[ -x "$BIN" ]] || die "pgcat binary not found at $BIN"

WORK="$(mktemp -d /tmp/pgcat-bench-ml.XXXXXX)"
chmod 0755 "$WORK"
PGCAT_PID=""
cleanup() {
    [[ -n "$PGCAT_PID" ]] && kill "$PGCAT_PID" 2>/dev/null && wait "$PGCAT_PID" 2>/dev/null || true
    cluster psql -d app -q -c "alter database app reset pgml_stub.warm_ms; alter database app reset pgml_stub.embed_dim" >/dev/null 2>&1 || true
    cluster stop >/dev/null 2>&1 || true
    if [[ "${BENCH_KEEP_TMP:-0}" == 1 ]]; then note "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

note "starting the cluster (primary $PG_PORT, replicas $((PG_PORT + 1)) and $((PG_PORT + 2)))"
cluster start >&2
PGOPTIONS="-c client_min_messages=warning" cluster psql -d app -q -v ON_ERROR_STOP=1 -f "$ROOT/tests/fixtures/pgml_stub.sql" >/dev/null
cluster psql -d app -q -c "grant usage on schema pgml to public; grant all on all tables in schema pgml to public;
    grant all on all sequences in schema pgml to public; alter database app set pgml_stub.warm_ms = $INFER_MS;
    alter database app set pgml_stub.embed_dim = 8" >/dev/null
if ! psql -X -q -A -t -h 127.0.0.1 -p "$PG_PORT" -U app -d app -c "select 1 from pgbench_accounts limit 1" >/dev/null 2>&1; then
    pgbench -i -s 10 -q -h 127.0.0.1 -p "$PG_PORT" -U app app >/dev/null 2>&1
fi
sleep 1  # let the replicas replay the stub
if (( PIN )); then
    note "pinning: the gpu server (replica2) and the flood on CPU $LAST_CPU, the rest on CPUs $OTHER_CPUS"
    pin_node replica2 "$LAST_CPU"
    pin_node primary "$OTHER_CPUS"
    pin_node replica1 "$OTHER_CPUS"
fi

PORT="$(free_port)"
cat >"$WORK/pgcat.yaml" <<EOF
general: {host: 127.0.0.1, port: $PORT, admin_username: admin, admin_password: admin, connect_timeout: 10000}
pools:
  app:
    query_parser_enabled: true
    query_parser_read_write_splitting: true
    primary_reads_enabled: false
    ml_routing: {enabled: true, target_tags: [gpu], inference_pool_size: $INFERENCE_POOL, queue_max: 1000, queue_timeout: 60000}
    users: [{username: app, password: app, pool_size: 10, auth_type: scram-sha-256}]
    shards:
      - database: app
        servers:
          - [127.0.0.1, $PG_PORT, primary]
          - [127.0.0.1, $((PG_PORT + 1)), replica]
          - {host: 127.0.0.1, port: $((PG_PORT + 2)), role: replica, tags: [gpu]}
EOF
pinned "$OTHER_CPUS" "$BIN" "$WORK/pgcat.yaml" >"$WORK/pgcat.log" 2>&1 &
PGCAT_PID=$!
for _ in $(seq 1 100); do psql -X -q -h 127.0.0.1 -p "$PORT" -U app -d app -c 'select 1' >/dev/null 2>&1 && break; sleep 0.1; done

echo "select pgml.embed('intfloat/e5-small-v2', 'text ' || (random() * 1000)::int::text) is not null;" >"$WORK/flood.sql"

stats() { # pgbench --log files -> "p50_ms p99_ms count"
    python3 - "$@" <<'EOF'
import math, sys
lat = []
for path in sys.argv[1:]:
    for line in open(path):
        parts = line.split()
        if len(parts) >= 3 and parts[2].isdigit():
            lat.append(int(parts[2]))
lat.sort()
pick = lambda q: lat[max(0, math.ceil(q * len(lat)) - 1)] / 1000 if lat else float("nan")
print(f"{pick(0.5):.3f} {pick(0.99):.3f} {len(lat)}")
EOF
}

run() { # label, flood: 0 none, 1 through pgcat, 2 straight to the gpu server (a control: same clients, no
        # pooler), 3 straight to the gpu server with as many clients as pgcat's inference pool (the same inference
        # rate as through pgcat, without pgcat)
    local label="$1" flood="$2" dir="$WORK/$1" flood_pid="" flood_port="$PORT" flood_clients="$FLOOD"
    mkdir -p "$dir"
    [[ "$flood" == 2 || "$flood" == 3 ]] && flood_port=$((PG_PORT + 2))
    [[ "$flood" == 3 ]] && flood_clients="$INFERENCE_POOL"
    if [[ "$flood" != 0 ]]; then
        (cd "$dir" && pinned "$LAST_CPU" pgbench -n -f "$WORK/flood.sql" -c "$flood_clients" -j 2 -T $((DURATION + 4)) -h 127.0.0.1 -p "$flood_port" -U app \
            app >flood.out 2>flood.err) &
        flood_pid=$!
        sleep 2
    fi
    (cd "$dir" && pinned "$OTHER_CPUS" pgbench -n -S -M simple -c "$CLIENTS" -j 2 -T "$DURATION" -h 127.0.0.1 -p "$PORT" -U app \
        --log --log-prefix=ord app >out.txt 2>err.txt) || true
    [[ -n "$flood_pid" ]] && wait "$flood_pid" || true
    local tps failed p50 p99 count
    tps="$(sed -n 's/^tps = \([0-9.]*\) (without.*/\1/p' "$dir/out.txt")"
    failed="$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$dir/out.txt")"
    read -r p50 p99 count <<<"$(stats "$dir"/ord.*)"
    local ftps="-" ffailed="-"
    if [[ "$flood" != 0 ]]; then
        ftps="$(sed -n 's/^tps = \([0-9.]*\) (without.*/\1/p' "$dir/flood.out")"
        ffailed="$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$dir/flood.out")"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "${tps:--}" "$p50" "$p99" "${failed:-?}" "${ftps:--}" "${ffailed:--}" >>"$WORK/results.tsv"
}

note "warm-up (3 s)"
pgbench -n -S -M simple -c "$CLIENTS" -j 2 -T 3 -h 127.0.0.1 -p "$PORT" -U app app >/dev/null 2>&1 || true
for round in $(seq 1 "$ROUNDS"); do
    note "round $round/$ROUNDS: ordinary queries alone"
    run "alone-$round" 0
    note "round $round/$ROUNDS: ordinary queries beside $FLOOD clients of ${INFER_MS} ms inference through pgcat"
    run "flood-$round" 1
done
note "control: the same flood straight to the gpu server, not through pgcat"
run flood-direct 2
note "control: $INFERENCE_POOL flood clients straight to the gpu server (pgcat's inference rate, without pgcat)"
run flood-direct-capped 3

report() {
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`scripts/bench-ml.sh\`: pgbench select-only (simple, $CLIENTS clients,"
    echo "${DURATION}s) through pgcat with read/write splitting and ML routing (one replica for reads, one tagged gpu"
    echo "with an inference pool of 4), alone and beside $FLOOD pgbench clients running \`pgml.embed\` of the"
    echo "stand-in schema, each call taking ${INFER_MS} ms. $(nproc) CPUs; everything on one machine. $ROUNDS rounds"
    echo "alternate alone and flood runs; the summary pools the ordinary transactions of each kind."
    if (( PIN )); then
        echo "Pinned (BENCH_PIN=1): the gpu server and the flood clients, which stand for other machines, on CPU"
        echo "$LAST_CPU; pgcat, the primary, the read replica and the ordinary pgbench on CPUs $OTHER_CPUS."
    else
        echo "Not pinned: every process on every CPU."
    fi
    echo "The \`flood-direct\` run sends the same flood straight to the gpu server, bypassing pgcat; \`flood-direct-capped\`"
    echo "sends it with only $INFERENCE_POOL clients, the inference rate pgcat lets through, still bypassing pgcat: what"
    echo "that much inference on this machine's shared CPUs does to the ordinary queries without any pooler in its way."
    echo
    echo "| Run | Ordinary TPS | Ordinary p50 (ms) | Ordinary p99 (ms) | Ordinary failures | Inference TPS | Inference failures |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    while IFS=$'\t' read -r label tps p50 p99 failed ftps ffailed; do
        [[ "$tps" != - ]] && tps="$(printf '%.0f' "$tps")"
        [[ "$ftps" != - ]] && ftps="$(printf '%.1f' "$ftps")"
        echo "| $label | $tps | $p50 | $p99 | $failed | $ftps | $ffailed |"
    done <"$WORK/results.tsv"
    read -r ap50 ap99 acount <<<"$(stats "$WORK"/alone-*/ord.*)"
    read -r fp50 fp99 fcount <<<"$(stats "$WORK"/flood-[0-9]*/ord.*)"
    read -r dp50 dp99 dcount <<<"$(stats "$WORK"/flood-direct/ord.*)"
    read -r cp50 cp99 ccount <<<"$(stats "$WORK"/flood-direct-capped/ord.*)"
    python3 - "$ap50" "$ap99" "$acount" "$fp50" "$fp99" "$fcount" "$dp99" "$cp99" "$WORK/results.tsv" <<'EOF'
import sys
ap50, ap99, acount, fp50, fp99, fcount, dp99, cp99 = map(float, sys.argv[1:9])
failures = sum(int(r.split("\t")[4]) for r in open(sys.argv[9]).read().splitlines()
               if r.split("\t")[4].isdigit())
print()
print(f"All rounds pooled: alone p50 {ap50:.3f} ms, p99 {ap99:.3f} ms ({int(acount)} transactions); beside the flood "
      f"p50 {fp50:.3f} ms, p99 {fp99:.3f} ms ({int(fcount)}).")
print(f"Ordinary p99 with the flood through pgcat: {(fp99 / ap99 - 1) * 100:+.0f}% (target: under +20%, and no "
      f"ordinary failure: {failures} failed); with the flood bypassing pgcat: {(dp99 / ap99 - 1) * 100:+.0f}%; with "
      f"pgcat's inference rate sent straight to the gpu server (no pgcat): {(cp99 / ap99 - 1) * 100:+.0f}%.")
EOF
}
report | tee "$WORK/report.md"
if (( WRITE_DOCS )); then
    python3 - "$ROOT/docs/benchmarks.md" "$WORK/report.md" <<'EOF'
import sys
doc, report = open(sys.argv[1]).read(), open(sys.argv[2]).read()
head = "## ML isolation\n\n<!-- written by scripts/bench-ml.sh --write-docs: rerun the script rather than editing -->\n\n"
start = doc.find("## ML isolation")
if start >= 0:
    end = doc.find("\n## ", start + 3)
    doc = doc[:start] + head + report + ("\n" + doc[end + 1:] if end >= 0 else "")
else:
    doc = doc.rstrip() + "\n\n" + head + report
open(sys.argv[1], "w").write(doc)
EOF
    note "wrote the results to docs/benchmarks.md"
fi
