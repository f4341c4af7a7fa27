#!/usr/bin/env bash
# Benchmark: pgbench through the pooler (pgcat), through PgBouncer and straight to Postgres, in one run.
#
#   scripts/bench.sh                 # build the release binary, run everything, print a markdown report
#   scripts/bench.sh --write-docs    # ... and replace the results section of docs/benchmarks.md
#   scripts/bench.sh --help
#
# Workloads: select-only (`-S`) with `-M simple`, `-M extended` and `-M prepared` at 1, 10, 50, 200 and 1,000
# clients; TPC-B (pgbench's default script) at 20 clients; select-only with a new connection per transaction (`-C`,
# SCRAM every time) at 10 clients; select-only simple and extended at a fixed rate (`-R`, 10 clients), where every pooler does the
# same work per second and its CPU per transaction is not skewed by how much it batches when saturated; each for a
# fixed duration, `-j 2`. Both poolers run in transaction mode with the
# same pool size. For every run the report gives TPS, average and p99 latency (from pgbench's per-transaction
# log), the pooler's CPU time (utime+stime from /proc/<pid>/stat) per 1,000 transactions and its largest RSS during
# the run; then the ratios against PgBouncer and direct Postgres, the targets of issue 9, the resident memory of
# each pooler holding 10,000 idle clients, and a PNG chart.
#
# Environment (defaults in brackets):
#   BENCH_DURATION        seconds per pgbench run [15]
#   BENCH_ROUNDS          runs of every (workload, clients, target); the targets alternate within each round and the
#                         report gives the median of each figure (RSS: the largest) and the spread of TPS [1]
#   BENCH_POOL_SIZE       server connections per pooler [10]
#   BENCH_WORKER_THREADS  pgcat general.worker_threads, 0 = pgcat's default, one per two cores [0]
#   BENCH_CLIENTS         client counts of the select-only workloads [1 10 50 200 1000]
#   BENCH_TPCB_CLIENTS    client counts of TPC-B [20]
#   BENCH_CONNECT_CLIENTS client counts of connect-per-transaction [10]
#   BENCH_IDLE_CLIENTS    idle clients each pooler holds for the memory figure, 0 = skip [10000]
#   BENCH_JOBS            pgbench -j [2]
#   BENCH_SCALE           pgbench -i scale [10]
#   BENCH_TARGETS         any of: direct pgbouncer pgcat pgcat-noparser pgcat-parser [all five]; pgcat-noparser
#                         and pgcat-parser list the same Postgres twice (primary, replica), parser off and on: the
#                         parser's cost is their ratio (pgcat-noparser runs the select-only workloads only)
#   BENCH_WORKLOADS       any of: select-simple select-extended select-prepared tpcb-simple connect-simple
#                         rate-simple rate-extended (also tpcb-extended, tpcb-prepared, connect-extended)
#                         [select-simple select-extended select-prepared tpcb-simple connect-simple rate-simple
#                         rate-extended]
#   BENCH_RATE            transactions per second of the rate-* workloads [4000]
#   BENCH_RATE_CLIENTS    client counts of the rate-* workloads [10]
#   BENCH_CLUSTER_PORT    Postgres primary port for scripts/cluster.sh [16432] (replicas use +1, +2 and are
#                         stopped during the benchmark)
#   BENCH_CLUSTER_DIR     cluster data directory [/tmp/pgcat-bench-cluster-$BENCH_CLUSTER_PORT] (kept for reuse)
#   PGCAT_BIN             use this pgcat binary instead of building (default: swift build -c release
#                         --scratch-path .build-release -Xswiftc -enforce-exclusivity=unchecked, as the
#                         Dockerfile builds it; binary .build-release/release/pgcat)
#   BENCH_SKIP_BUILD=1    use the existing .build-release/release/pgcat without building
#   BENCH_KEEP_TMP=1      keep the temp dir (configs, logs, pgbench outputs) and print its path
#
# Everything listens on 127.0.0.1 only. Every pgbench run is bounded by `timeout`; the cluster, PgBouncer and
# pgcat are stopped on exit (also on failure or Ctrl-C).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DOCS="$ROOT/docs/benchmarks.md"

DURATION="${BENCH_DURATION:-15}"
ROUNDS="${BENCH_ROUNDS:-1}"
POOL_SIZE="${BENCH_POOL_SIZE:-10}"
WORKER_THREADS="${BENCH_WORKER_THREADS:-0}"
CLIENTS="${BENCH_CLIENTS:-1 10 50 200 1000}"
TPCB_CLIENTS="${BENCH_TPCB_CLIENTS:-20}"
CONNECT_CLIENTS="${BENCH_CONNECT_CLIENTS:-10}"
RATE="${BENCH_RATE:-4000}"
RATE_CLIENTS="${BENCH_RATE_CLIENTS:-10}"
IDLE_CLIENTS="${BENCH_IDLE_CLIENTS:-10000}"
JOBS="${BENCH_JOBS:-2}"
SCALE="${BENCH_SCALE:-10}"
TARGETS="${BENCH_TARGETS:-direct pgbouncer pgcat pgcat-noparser pgcat-parser}"
WORKLOADS="${BENCH_WORKLOADS:-select-simple select-extended select-prepared tpcb-simple connect-simple rate-simple rate-extended}"
PG_PORT="${BENCH_CLUSTER_PORT:-16432}"
CLUSTER_DIR="${BENCH_CLUSTER_DIR:-/tmp/pgcat-bench-cluster-$PG_PORT}"
WRITE_DOCS=0

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "bench.sh: error: $*" >&2; exit 1; }
note() { echo "bench.sh: $*" >&2; }

for arg in "$@"; do
    case "$arg" in
        --write-docs) WRITE_DOCS=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $arg" ;;
    esac
done

isnum() { [[ "$1" =~ ^[0-9]+$ ]]; }
isnum "$DURATION" && (( DURATION > 0 )) || die "BENCH_DURATION must be a positive integer (got '$DURATION')"
isnum "$POOL_SIZE" && (( POOL_SIZE > 0 )) || die "BENCH_POOL_SIZE must be a positive integer (got '$POOL_SIZE')"
isnum "$WORKER_THREADS" || die "BENCH_WORKER_THREADS must be a non-negative integer (got '$WORKER_THREADS')"
isnum "$JOBS" && (( JOBS > 0 )) || die "BENCH_JOBS must be a positive integer (got '$JOBS')"
isnum "$SCALE" && (( SCALE > 0 )) || die "BENCH_SCALE must be a positive integer (got '$SCALE')"
isnum "$RATE" && (( RATE > 0 )) || die "BENCH_RATE must be a positive integer (got '$RATE')"
isnum "$ROUNDS" && (( ROUNDS > 0 )) || die "BENCH_ROUNDS must be a positive integer (got '$ROUNDS')"
for c in $CLIENTS $TPCB_CLIENTS $CONNECT_CLIENTS $RATE_CLIENTS; do isnum "$c" && (( c > 0 )) || die "client counts must be positive integers (got '$c')"; done
isnum "$IDLE_CLIENTS" || die "BENCH_IDLE_CLIENTS must be a non-negative integer (got '$IDLE_CLIENTS')"
for t in $TARGETS; do [[ "$t" =~ ^(direct|pgbouncer|pgcat|pgcat-noparser|pgcat-parser)$ ]] || die "BENCH_TARGETS: unknown target '$t'"; done
for w in $WORKLOADS; do
    [[ "$w" =~ ^(select|tpcb)-(simple|extended|prepared)$|^connect-(simple|extended)$|^rate-(simple|extended)$ ]] || die "BENCH_WORKLOADS: unknown workload '$w'"
done
[[ "$CLUSTER_DIR" = /* ]] || die "BENCH_CLUSTER_DIR must be an absolute path"

for tool in pgbench psql python3 timeout; do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs the PostgreSQL client tools)"
done
has_target() { [[ " $TARGETS " == *" $1 "* ]]; }
if has_target pgbouncer && ! command -v pgbouncer >/dev/null; then
    die "pgbouncer not found: apt-get install -y pgbouncer (or leave it out of BENCH_TARGETS)"
fi
if [[ "$(id -u)" == 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' OS user to run PgBouncer"
    command -v setpriv >/dev/null || die "setpriv (util-linux) not found"
fi

# ---------------------------------------------------------------- state and cleanup

# 1,000 pgbench clients and 10,000 idle ones need file descriptors (the poolers inherit this limit).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK="$(mktemp -d /tmp/pgcat-bench.XXXXXX)"
chmod 0755 "$WORK"
mkdir -p "$WORK/runs"
PGCAT_PID=""
PGCAT_PARSER_PID=""
PGCAT_PARSER_PORT=""
PGCAT_NOPARSER_PID=""
PGCAT_NOPARSER_PORT=""
PGBOUNCER_PID=""
CLUSTER_STARTED=0
PGCAT_PORT=""
PGBOUNCER_PORT=""
NOTES=()

stop_pid() { # pid, name: SIGTERM, wait up to 10 s, then SIGKILL
    local pid="$1" name="$2" i
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        note "$name (pid $pid) did not stop after SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$PGCAT_PID" pgcat
    stop_pid "$PGCAT_PARSER_PID" pgcat-parser
    stop_pid "$PGCAT_NOPARSER_PID" pgcat-noparser
    stop_pid "$PGBOUNCER_PID" pgbouncer
    if (( CLUSTER_STARTED )); then
        cluster stop >&2 || note "cluster.sh stop failed"
    fi
    if [[ "${BENCH_KEEP_TMP:-0}" == 1 ]]; then
        note "kept temp dir $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'note "interrupted"; exit 130' INT
trap 'note "terminated"; exit 143' TERM

cluster() { PGCAT_CLUSTER_PORT="$PG_PORT" PGCAT_CLUSTER_DIR="$CLUSTER_DIR" "$ROOT/scripts/cluster.sh" "$@"; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

export PGPASSWORD=app PGSSLMODE=disable PGCONNECT_TIMEOUT=10 PGAPPNAME=pgcat-bench
psql_at() { # port, sql...: one value from database app as user app
    local port="$1"
    shift
    timeout --foreground 60 psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U app -d app "$@"
}

wait_accepting() { # port, name, pid: until `select 1` works through it
    local port="$1" name="$2" pid="$3" deadline=$((SECONDS + 30))
    until psql_at "$port" -c 'select 1' >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || return 1
        (( SECONDS < deadline )) || { note "$name did not accept connections on port $port within 30 s"; return 1; }
        sleep 0.2
    done
}

cpu_ticks() { # utime+stime (clock ticks) of a process, all threads
    local s
    s="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    s="${s##*) }" # fields after the command name (which may contain spaces)
    # shellcheck disable=SC2086
    set -- $s
    echo $((${12} + ${13}))
}

# ---------------------------------------------------------------- build

if [[ -n "${PGCAT_BIN:-}" ]]; then
    BIN="$PGCAT_BIN"
elif has_target pgcat || has_target pgcat-parser; then
    BIN="$ROOT/.build-release/release/pgcat"
    if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
        note "building pgcat (swift build -c release --scratch-path .build-release; the first build takes minutes)"
        # Exclusivity checks off, as in the Dockerfile: the profile showed them at ~7% of the pooler's user time.
        (cd "$ROOT" && timeout --foreground 3600 swift build -c release --scratch-path .build-release --product pgcat \
            -Xswiftc -enforce-exclusivity=unchecked >"$WORK/build.log" 2>&1) \
            || { tail -n 40 "$WORK/build.log" >&2; die "release build failed (full log above)"; }
    fi
else
    BIN=""
fi
if has_target pgcat || has_target pgcat-parser; then
    [[ -x "$BIN" ]] || die "pgcat binary not found at $BIN"
fi
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$ROOT" status --porcelain -- Sources Package.swift 2>/dev/null)" ]]; then
    COMMIT="$COMMIT + uncommitted changes in Sources"
fi

# ---------------------------------------------------------------- Postgres

note "starting the Postgres cluster on 127.0.0.1:$PG_PORT ($CLUSTER_DIR)"
CLUSTER_STARTED=1
cluster start >&2
# Replicas are not benchmarked: stop them so WAL replay does not compete for the CPU (cluster.sh start brings
# them back next time).
PG_CTL="${PG_BINDIR:-/usr/lib/postgresql/15/bin}/pg_ctl"
[[ -x "$PG_CTL" ]] || PG_CTL="$(ls -d /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n1)"
for node in replica1 replica2; do
    d="$CLUSTER_DIR/$node"
    [[ -f "$d/postmaster.pid" && -x "$PG_CTL" ]] || continue
    if [[ "$(id -u)" == 0 ]]; then
        (cd / && runuser -u postgres -- "$PG_CTL" -D "$d" -m fast -w -t 60 stop >/dev/null 2>&1) || note "could not stop $node"
    else
        "$PG_CTL" -D "$d" -m fast -w -t 60 stop >/dev/null 2>&1 || note "could not stop $node"
    fi
done
PG_VERSION="$(psql_at "$PG_PORT" -c 'show server_version')"
PG_MAX_CONNECTIONS="$(psql_at "$PG_PORT" -c 'show max_connections')"

note "initialising pgbench tables (scale $SCALE)"
timeout --foreground 600 pgbench -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U app app >"$WORK/init.log" 2>&1 \
    || { cat "$WORK/init.log" >&2; die "pgbench -i failed"; }

# ---------------------------------------------------------------- PgBouncer

start_pgbouncer() {
    local dir="$WORK/pgbouncer"
    mkdir -p "$dir"
    PGBOUNCER_PORT="$(free_port)"
    # The stored SCRAM verifier rather than the password, as a careful operator configures it: with a plain
    # password PgBouncer runs PBKDF2 on every login (milliseconds each), with the verifier it does not.
    local secret
    secret="$(PGPASSWORD=postgres timeout 60 psql -X -q -A -t -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
        -c "select rolpassword from pg_authid where rolname = 'app'" 2>/dev/null || true)"
    [[ "$secret" == SCRAM-SHA-256\$* ]] || { note "no SCRAM verifier for app; PgBouncer gets the plain password"; secret=app; }
    printf '"app" "%s"\n' "$secret" >"$dir/userlist.txt"
    cat >"$dir/pgbouncer.ini" <<EOF
[databases]
app = host=127.0.0.1 port=$PG_PORT dbname=app

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = $POOL_SIZE
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 12000
server_tls_sslmode = disable
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
log_connections = 0
log_disconnections = 0
EOF
    chmod 0600 "$dir/userlist.txt"
    if [[ "$(id -u)" == 0 ]]; then
        chown -R postgres "$dir"
        # setpriv execs pgbouncer, so $! is pgbouncer's own pid
        setpriv --reuid=postgres --regid=postgres --init-groups pgbouncer "$dir/pgbouncer.ini" \
            >"$dir/stdout.log" 2>&1 &
    else
        pgbouncer "$dir/pgbouncer.ini" >"$dir/stdout.log" 2>&1 &
    fi
    PGBOUNCER_PID=$!
    wait_accepting "$PGBOUNCER_PORT" pgbouncer "$PGBOUNCER_PID" \
        || { tail -n 20 "$dir/pgbouncer.log" "$dir/stdout.log" >&2 2>/dev/null; die "PgBouncer did not start"; }
    note "PgBouncer (pid $PGBOUNCER_PID) on 127.0.0.1:$PGBOUNCER_PORT"
}

# ---------------------------------------------------------------- pgcat

PGCAT_STARTS=0
start_pgcat() {
    local dir="$WORK/pgcat"
    mkdir -p "$dir"
    PGCAT_PORT="$(free_port)"
    cat >"$dir/pgcat.yaml" <<EOF
general:
  host: 127.0.0.1
  port: $PGCAT_PORT
  admin_username: admin
  admin_password: admin
  connect_timeout: 10000
  shutdown_timeout: 2000
  worker_threads: $WORKER_THREADS
  log_client_connections: false
  log_client_disconnections: false
  max_client_conn: 12000
pools:
  app:
    pool_mode: transaction
    default_role: primary
    users:
      - {username: app, password: app, pool_size: $POOL_SIZE, auth_type: scram-sha-256}
    shards:
      - database: app
        servers: [[127.0.0.1, $PG_PORT, primary]]
EOF
    PGCAT_STARTS=$((PGCAT_STARTS + 1))
    "$BIN" "$dir/pgcat.yaml" >>"$dir/pgcat.log" 2>&1 &
    PGCAT_PID=$!
    wait_accepting "$PGCAT_PORT" pgcat "$PGCAT_PID" \
        || { tail -n 20 "$dir/pgcat.log" >&2; return 1; }
    note "pgcat (pid $PGCAT_PID) on 127.0.0.1:$PGCAT_PORT"
}

# pgcat-parser and pgcat-noparser: the same Postgres listed twice (as primary, and as a replica under the name
# localhost) with primary reads on, BENCH_POOL_SIZE connections per entry; one with read/write splitting by the
# parser, one without. On select-only their ratio is the parser's cost alone (against the plain pgcat target it would
# also count the second entry: a random choice of server per transaction). TPC-B, where the parser sends every
# transaction to the primary entry, compares with the plain pgcat target: the same pool size on one server. (With half
# the pool size per entry, as before stop 24, TPC-B with the parser on ran on half the connections and measured that.)
start_pgcat_split() { # name parser(true|false): sets SPLIT_PORT and SPLIT_PID
    local name="$1" parser="$2" dir="$WORK/$1"
    mkdir -p "$dir"
    SPLIT_PORT="$(free_port)"
    cat >"$dir/pgcat.yaml" <<EOF
general:
  host: 127.0.0.1
  port: $SPLIT_PORT
  admin_username: admin
  admin_password: admin
  connect_timeout: 10000
  shutdown_timeout: 2000
  worker_threads: $WORKER_THREADS
  max_client_conn: 12000
pools:
  app:
    pool_mode: transaction
    query_parser_enabled: $parser
    query_parser_read_write_splitting: $parser
    primary_reads_enabled: true
    users:
      - {username: app, password: app, pool_size: $POOL_SIZE, auth_type: scram-sha-256}
    shards:
      - database: app
        servers: [[127.0.0.1, $PG_PORT, primary], [localhost, $PG_PORT, replica]]
EOF
    "$BIN" "$dir/pgcat.yaml" >>"$dir/pgcat.log" 2>&1 &
    SPLIT_PID=$!
    wait_accepting "$SPLIT_PORT" "$name" "$SPLIT_PID" || { tail -n 20 "$dir/pgcat.log" >&2; return 1; }
    note "$name (parser $parser, pid $SPLIT_PID) on 127.0.0.1:$SPLIT_PORT"
}

has_target pgbouncer && start_pgbouncer
if has_target pgcat; then
    start_pgcat || die "pgcat did not start (log above)"
fi
if has_target pgcat-parser; then
    start_pgcat_split pgcat-parser true || die "pgcat (parser) did not start (log above)"
    PGCAT_PARSER_PORT="$SPLIT_PORT" PGCAT_PARSER_PID="$SPLIT_PID"
fi
if has_target pgcat-noparser; then
    start_pgcat_split pgcat-noparser false || die "pgcat (two entries, no parser) did not start (log above)"
    PGCAT_NOPARSER_PORT="$SPLIT_PORT" PGCAT_NOPARSER_PID="$SPLIT_PID"
fi
PGBOUNCER_VERSION="$(pgbouncer --version 2>/dev/null | head -n1 || echo "not installed")"

# ---------------------------------------------------------------- runs

RESULTS="$WORK/results.tsv" # workload clients target tps avg_ms p99_ms cpu_ms_per_1k rss_mb status
ROUND_RESULTS="$WORK/rounds.tsv" # the same columns, one line per run; RESULTS holds their medians
: >"$ROUND_RESULTS"

# Per-transaction latencies (µs, column 3 of pgbench's --log files) -> "avg_ms p99_ms count" (nearest rank).
latency_stats() {
    python3 - "$@" <<'EOF'
import math, sys
lat = []
for path in sys.argv[1:]:
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2].isdigit():  # skip "failed" / "skipped" entries
                lat.append(int(parts[2]))
if not lat:
    print("- - 0")
else:
    lat.sort()
    p99 = lat[max(0, math.ceil(0.99 * len(lat)) - 1)]
    print(f"{sum(lat) / len(lat) / 1000:.3f} {p99 / 1000:.3f} {len(lat)}")
EOF
}

run_one() { # workload clients target round
    local workload="$1" clients="$2" target="$3" round="$4" port pid="" mode script_args=() id
    mode="${workload#*-}"
    [[ "$workload" == select-* ]] && script_args=(-S)
    [[ "$workload" == connect-* ]] && script_args=(-S -C)
    [[ "$workload" == rate-* ]] && script_args=(-S -R "$RATE")
    local jobs=$(( clients < JOBS ? clients : JOBS ))
    if [[ "$target" == direct ]] && (( clients > PG_MAX_CONNECTIONS - 10 )); then
        printf '%s\t%s\t%s\t-\t-\t-\t-\t-\tnot run: over max_connections (%s)\n' "$workload" "$clients" "$target" \
            "$PG_MAX_CONNECTIONS" >>"$ROUND_RESULTS"
        return
    fi
    case "$target" in
        direct) port="$PG_PORT" ;;
        pgbouncer) port="$PGBOUNCER_PORT"; pid="$PGBOUNCER_PID" ;;
        pgcat)
            if ! kill -0 "$PGCAT_PID" 2>/dev/null; then
                NOTES+=("pgcat was not running before $workload c=$clients (see its log); restarted it")
                start_pgcat || { printf '%s\t%s\t%s\t-\t-\t-\t-\t-\tpgcat did not restart\n' "$workload" "$clients" "$target" >>"$ROUND_RESULTS"; return; }
            fi
            port="$PGCAT_PORT"; pid="$PGCAT_PID" ;;
        pgcat-parser) port="$PGCAT_PARSER_PORT"; pid="$PGCAT_PARSER_PID" ;;
        pgcat-noparser) port="$PGCAT_NOPARSER_PORT"; pid="$PGCAT_NOPARSER_PID" ;;
    esac
    id="$workload-c$clients-$target"
    (( ROUNDS > 1 )) && id="$id-r$round"
    mkdir -p "$WORK/runs/$id"
    note "run $id (${DURATION}s)"
    # What pgbench does before a run unless -n, done straight on Postgres so every target starts alike. TPC-B
    # also vacuums pgbench_accounts (pgbench -v): its updates bloat the table, and without it each run was slower
    # than the one before, so the target run later in a round (pgcat after PgBouncer) was measured on a worse table.
    psql_at "$PG_PORT" -c 'vacuum pgbench_branches' -c 'vacuum pgbench_tellers' -c 'truncate pgbench_history' >/dev/null
    [[ "$workload" == tpcb-* ]] && psql_at "$PG_PORT" -c 'vacuum pgbench_accounts' >/dev/null

    local cpu0="" cpu1="" rc=0 sampler="" rss="-"
    if [[ -n "$pid" ]]; then
        cpu0="$(cpu_ticks "$pid" || true)"
        sample_rss "$pid" "$WORK/runs/$id/rss" &
        sampler=$!
    fi
    (cd "$WORK/runs/$id" && timeout --foreground -k 5 $((DURATION + 120)) \
        pgbench -n "${script_args[@]}" -M "$mode" -c "$clients" -j "$jobs" -T "$DURATION" \
        -h 127.0.0.1 -p "$port" -U app --log --log-prefix=txlog app >out.txt 2>err.txt) || rc=$?
    if [[ -n "$pid" ]]; then
        cpu1="$(cpu_ticks "$pid" || true)"
        kill "$sampler" 2>/dev/null || true
        wait "$sampler" 2>/dev/null || true
        [[ -s "$WORK/runs/$id/rss" ]] && rss="$(awk '{printf "%.1f", $1 / 1024}' "$WORK/runs/$id/rss")"
    fi

    local out="$WORK/runs/$id/out.txt" err="$WORK/runs/$id/err.txt" tx tps status=ok stats avg p99 cpu="-"
    tx="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")"
    tps="$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time).*/\1/p' "$out")"
    # -C: every transaction connects, so pgbench counts connection time in (there is no "without" figure)
    [[ -n "$tps" ]] || tps="$(sed -n 's/^tps = \([0-9.]*\) (including reconnection times).*/\1/p' "$out")"
    stats="$(latency_stats "$WORK"/runs/"$id"/txlog.*)"
    read -r avg p99 _ <<<"$stats"
    if (( rc != 0 )); then
        status="pgbench exit $rc"
        (( rc == 124 || rc == 137 )) && status="timed out"
        local first
        first="$(grep -m1 -iE 'error|abort|fatal' "$err" | cut -c1-160 || true)"
        NOTES+=("$id: $status${first:+: $first}")
    fi
    local failed
    failed="$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")"
    if (( rc == 0 )) && [[ "${tx:-0}" == 0 ]]; then
        status="no transaction completed"
        NOTES+=("$id: no transaction completed in ${DURATION}s")
    fi
    if [[ -n "$failed" && "$failed" != 0 ]]; then
        NOTES+=("$id: $failed failed transactions")
        [[ "$status" == ok ]] && status="$failed failed"
    fi
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
        NOTES+=("$id: $target exited during the run")
        status="$target exited"
    fi
    if [[ -n "$cpu0" && -n "$cpu1" && -n "$tx" && "$tx" != 0 ]]; then
        cpu="$(python3 -c "import sys; t, tx, hz = map(int, sys.argv[1:]); print(f'{t / hz * 1000 / tx * 1000:.1f}')" \
            $((cpu1 - cpu0)) "$tx" "$(getconf CLK_TCK)")"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$workload" "$clients" "$target" "${tps:--}" "${avg:--}" "${p99:--}" \
        "$cpu" "$rss" "$status" >>"$ROUND_RESULTS"
    rm -f "$WORK"/runs/"$id"/txlog.*
}

# Largest VmRSS (kB) of a process, sampled every 0.2 s into a file, until killed.
sample_rss() {
    local pid="$1" out="$2" max=0 kb
    while kb="$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)" && [[ -n "$kb" ]]; do
        if (( kb > max )); then max=$kb; echo "$max" >"$out"; fi
        sleep 0.2
    done
}

# Share of the machine's CPU busy over 2 s before the first run (after the build): other work skews everything.
cpu_busy_pct() {
    local a b
    a=($(head -n1 /proc/stat)); sleep 2; b=($(head -n1 /proc/stat))
    python3 -c 'import sys; a, b = [list(map(int, x.split())) for x in sys.argv[1:]]
d = [y - x for x, y in zip(a, b)]; idle = d[3] + d[4]
print(f"{100 * (sum(d) - idle) / max(1, sum(d)):.0f}%")' "${a[*]:1}" "${b[*]:1}"
}
BUSY_START="$(cpu_busy_pct)"
# Targets innermost, so slow drift (caches, table bloat from TPC-B) affects all of them alike.
for workload in $WORKLOADS; do
    case "$workload" in
        tpcb-*) counts="$TPCB_CLIENTS" ;;
        connect-*) counts="$CONNECT_CLIENTS" ;;
        rate-*) counts="$RATE_CLIENTS" ;;
        *) counts="$CLIENTS" ;;
    esac
    for clients in $counts; do
        for (( round = 1; round <= ROUNDS; round++ )); do
            for target in $TARGETS; do
                # The parser's baseline is needed where its cost is judged (select-only) and at the fixed rate.
                [[ "$target" == pgcat-noparser && "$workload" != select-* && "$workload" != rate-* ]] && continue
                run_one "$workload" "$clients" "$target" "$round"
            done
        done
    done
done
SPREAD="$(python3 "$ROOT/scripts/lib/bench_rounds.py" "$ROUND_RESULTS" "$RESULTS")"

# Idle clients: each pooler holds BENCH_IDLE_CLIENTS logged-in, idle connections; its RSS before and with them.
IDLE="$WORK/idle.tsv" # target connected failed baseline_kb rss_kb seconds
: >"$IDLE"
if (( IDLE_CLIENTS > 0 )); then
    for target in pgbouncer pgcat; do
        has_target "$target" || continue
        case "$target" in
            pgbouncer) port="$PGBOUNCER_PORT"; pid="$PGBOUNCER_PID" ;;
            pgcat) port="$PGCAT_PORT"; pid="$PGCAT_PID" ;;
        esac
        note "idle: $IDLE_CLIENTS clients on $target"
        line="$(timeout --foreground 600 python3 "$ROOT/scripts/lib/idle_clients.py" --port "$port" --pid "$pid" \
            --count "$IDLE_CLIENTS" 2>&1 | tail -n1)" || true
        connected="$(sed -n 's/.*connected=\([0-9]*\).*/\1/p' <<<"$line")"
        if [[ -z "$connected" ]]; then
            NOTES+=("idle clients on $target: $line")
            continue
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$connected" \
            "$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' <<<"$line")" "$(sed -n 's/.*baseline_kb=\([0-9]*\).*/\1/p' <<<"$line")" \
            "$(sed -n 's/.*rss_kb=\([0-9]*\).*/\1/p' <<<"$line")" "$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$line")" >>"$IDLE"
        [[ "$line" == *first_error=* ]] && NOTES+=("idle clients on $target: ${line#*first_error=}")
        sleep 3  # the clients' sockets close before the next pooler's turn
    done
fi

# ---------------------------------------------------------------- report

# The parser's cache use, logged by pgcat-parser when it stops.
PARSER_STATS=""
if has_target pgcat-parser && [[ -n "$PGCAT_PARSER_PID" ]]; then
    stop_pid "$PGCAT_PARSER_PID" pgcat-parser
    PGCAT_PARSER_PID=""
    line="$(grep 'msg="query parser"' "$WORK/pgcat-parser/pgcat.log" | tail -n1)"
    hits="$(sed -n 's/.*cache_hits=\([0-9]*\).*/\1/p' <<<"$line")"
    misses="$(sed -n 's/.*cache_misses=\([0-9]*\).*/\1/p' <<<"$line")"
    quick="$(sed -n 's/.*quick_reads=\([0-9]*\).*/\1/p' <<<"$line")"
    if [[ -n "$hits" && -n "$misses" && -n "$quick" ]]; then
        rate="$(awk -v h="$hits" -v m="$misses" 'BEGIN { if (h + m > 0) printf "%.1f%%", 100 * h / (h + m); else print "n/a" }')"
        PARSER_STATS="pgcat-parser classified $((hits + misses + quick)) texts: $quick plain reads by the lexical check, $hits from the parse cache, $misses parsed (cache hit rate $rate)"
    fi
fi

CPU_MODEL="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
[[ -n "$CPU_MODEL" ]] || CPU_MODEL="unknown"
report() {
    local wt="$WORKER_THREADS"
    (( wt == 0 )) && wt="0 (default: one event loop per two cores, here $(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 )))"
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`scripts/bench.sh\`."
    echo
    echo "- Machine: $(nproc) CPUs, $CPU_MODEL, $(uname -sr)"
    echo "- PostgreSQL $PG_VERSION (pgbench scale $SCALE, on 127.0.0.1, replicas stopped)"
    echo "- $PGBOUNCER_VERSION"
    has_target pgcat && echo "- pgcat commit $COMMIT, binary ${BIN#"$ROOT"/}"
    echo "- Parameters: ${DURATION}s per run, pgbench -j $JOBS (fewer with fewer clients), pool size $POOL_SIZE (poolers in"
    echo "  transaction mode), pgcat worker_threads $wt, SCRAM-SHA-256 client and server auth, no TLS,"
    echo "  Postgres max_connections $PG_MAX_CONNECTIONS, $IDLE_CLIENTS idle clients for the memory figure, fixed rate $RATE tps"
    echo "- CPU busy (whole machine) in the 2 s before the first run: $BUSY_START; other work running skews every number"
    if (( ROUNDS > 1 )); then
        echo "- Rounds: every figure is the median of $ROUNDS runs (RSS: the largest), the targets alternating within"
        echo "  each round; $SPREAD"
    fi
    echo
    python3 "$ROOT/scripts/lib/bench_report.py" "$RESULTS" "$IDLE" "$CHART" "$CHART_LINK"
    echo
    echo "Pooler CPU = utime+stime of the pooler process (all threads) over the run, including client connection"
    echo "setup, divided by transactions processed (\"-\" for direct). Clock-tick resolution: $((1000 / $(getconf CLK_TCK))) ms."
    echo "RSS = the largest resident set of the pooler process during the run (sampled every 0.2 s)."
    if has_target pgcat-parser; then
        echo
        echo "pgcat-parser: read/write splitting by the PostgreSQL parser, the same Postgres listed as primary and as"
        echo "replica (primary reads on), the full pool size each; pgcat-noparser is the same without the parser, so"
        echo "their ratio is the parser's cost on select-only (against pgcat it would also count the second server entry)."
        echo "TPC-B, which the parser sends wholly to the primary entry, is compared with pgcat (same pool, one server)."
        [[ -n "$PARSER_STATS" ]] && echo "$PARSER_STATS."
    fi
    if (( ${#NOTES[@]} )); then
        echo
        echo "Problems seen:"
        local n
        for n in "${NOTES[@]}"; do echo "- $n"; done
    fi
    if (( PGCAT_STARTS > 1 )); then
        echo
        echo "pgcat log (last lines):"
        echo '```'
        tail -n 20 "$WORK/pgcat/pgcat.log"
        echo '```'
    fi
}
CHART="$WORK/benchmarks.png"
CHART_LINK=""
if (( WRITE_DOCS )); then
    CHART="$ROOT/docs/benchmarks.png"
    CHART_LINK="benchmarks.png"
fi
report >"$WORK/report.md"
cat "$WORK/report.md"

if (( WRITE_DOCS )); then
    python3 - "$DOCS" "$WORK/report.md" <<'EOF'
# Replace the "## Results" section (up to the next "## " heading, or the end) and keep everything else.
import os, re, sys
docs, report_path = sys.argv[1], sys.argv[2]
report = open(report_path).read().rstrip("\n")
section = ("## Results\n\n<!-- written by scripts/bench.sh --write-docs: rerun the script rather than editing -->\n\n"
           + report + "\n")
text = open(docs).read() if os.path.exists(docs) else "# Benchmarks\n\nSee `scripts/bench.sh --help`.\n"
m = re.search(r"^## Results[ \t]*$", text, re.M)
if m:
    nxt = re.search(r"^## ", text[m.end():], re.M)
    rest = text[m.end() + nxt.start():] if nxt else ""
    text = text[: m.start()] + section + ("\n" + rest if rest else "")
else:
    text = text.rstrip("\n") + "\n\n" + section
with open(docs, "w") as f:
    f.write(text)
EOF
    note "wrote the results to ${DOCS#"$ROOT"/}"
fi
