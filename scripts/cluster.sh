#!/usr/bin/env bash
# Real PostgreSQL 15 test cluster on loopback: one primary and two streaming replicas.
#
#   scripts/cluster.sh start     # idempotent; waits until both replicas stream and accept connections
#   scripts/cluster.sh stop      # fast shutdown of all three; fine when nothing runs
#   scripts/cluster.sh status    # ports and states (exit 0 only when all three run)
#   scripts/cluster.sh psql ...  # psql to the primary as superuser postgres (extra args passed through)
#   scripts/cluster.sh reset     # stop and delete the data directory
#
# Environment:
#   PGCAT_CLUSTER_PORT  primary port (default 25432); replicas use port+1 and port+2
#   PGCAT_CLUSTER_DIR   data, logs and unix sockets (default /tmp/pgcat-cluster-$PORT); when run as
#                       root the servers run as the `postgres` OS user, which must be able to reach this path
#   PG_BINDIR           PostgreSQL server binaries (default: newest /usr/lib/postgresql/15/bin)
#
# Roles (created on the primary before the replicas are cloned): postgres/postgres (superuser), app/app (SCRAM),
# md5_user/md5_user (password stored as MD5), plain_user/plain_user (pg_hba `password`, cleartext),
# trust_user (pg_hba `trust`). Databases: app (owner app; every role may connect and create in public),
# shard0, shard1, shard2 (owner app).
set -euo pipefail

PORT="${PGCAT_CLUSTER_PORT:-25432}"
DIR="${PGCAT_CLUSTER_DIR:-/tmp/pgcat-cluster-$PORT}"
HOST=127.0.0.1
NODES=(primary replica1 replica2)
START_TIMEOUT="${PGCAT_CLUSTER_TIMEOUT:-90}"

die() { echo "cluster.sh: error: $*" >&2; exit 1; }
note() { echo "cluster.sh: $*"; }

[[ "$PORT" =~ ^[0-9]+$ ]] && (( PORT > 1024 && PORT < 65533 )) || die "PGCAT_CLUSTER_PORT must be a port number (got '$PORT')"
[[ "$DIR" = /* ]] || die "PGCAT_CLUSTER_DIR must be an absolute path (got '$DIR')"

find_bindir() {
    if [[ -n "${PG_BINDIR:-}" ]]; then echo "$PG_BINDIR"; return; fi
    if [[ -x /usr/lib/postgresql/15/bin/postgres ]]; then echo /usr/lib/postgresql/15/bin; return; fi
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
    if [[ -n "$d" && -x "$d/postgres" ]]; then echo "$d"; return; fi
    if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/postgres" ]]; then pg_config --bindir; return; fi
    echo ""
}
BINDIR="$(find_bindir)"
[[ -n "$BINDIR" && -x "$BINDIR/postgres" ]] || die "PostgreSQL server binaries not found (install postgresql-15, see scripts/install-deps.sh, or set PG_BINDIR)"

node_port() {
    case "$1" in
        primary) echo "$PORT" ;;
        replica1) echo $((PORT + 1)) ;;
        replica2) echo $((PORT + 2)) ;;
    esac
}
node_dir() { echo "$DIR/$1"; }
node_log() { echo "$DIR/$1.log"; }

# Postgres refuses to run as root: run its tools as the `postgres` OS user when we are root.
if [[ "$(id -u)" == 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' OS user (install postgresql-15)"
    PG_OS_USER=postgres
else
    PG_OS_USER="$(id -un)"
fi
as_pg() {
    if [[ "$(id -u)" == 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

pg_ctl_() { as_pg "$BINDIR/pg_ctl" "$@"; }
# psql over the unix socket in $DIR as superuser postgres (local trust).
sql() {
    local node="$1" db="$2"
    shift 2
    PGCONNECT_TIMEOUT=5 PGOPTIONS='-c client_min_messages=warning' "$BINDIR/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$DIR" -p "$(node_port "$node")" -U postgres -d "$db" "$@"
}

# The pid in postmaster.pid is a live postgres started on this data directory (pg_ctl status alone is fooled
# by a stale pid file whose pid was reused by another process after a crash).
# (A killed postmaster can linger as a zombie when nothing reaps it, as in containers: its cmdline is empty.)
live_postgres() {
    local pid="$1" dir="${2:-}"
    [[ "$pid" =~ ^[0-9]+$ && -d "/proc/$pid" ]] || return 1
    grep -q postgres "/proc/$pid/comm" 2>/dev/null || return 1
    local cmd
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    [[ -n "$cmd" ]] || return 1
    [[ -z "$dir" ]] || [[ "$cmd" == *"$dir"* ]]
}
is_running() {
    local d pid
    d="$(node_dir "$1")"
    [[ -f "$d/PG_VERSION" && -f "$d/postmaster.pid" ]] || return 1
    pid="$(head -n1 "$d/postmaster.pid" 2>/dev/null || true)"
    live_postgres "$pid" "$d"
}

# Remove a postmaster.pid (and socket lock) left behind by a crash when its pid is not a live postgres.
clear_stale_pid() {
    local node="$1" d pid p
    d="$(node_dir "$node")"
    if [[ -f "$d/postmaster.pid" ]] && ! is_running "$node"; then
        pid="$(head -n1 "$d/postmaster.pid" 2>/dev/null || true)"
        note "$node: removing stale postmaster.pid (pid ${pid:-?} is not a running postgres for $d)"
        rm -f "$d/postmaster.pid"
    fi
    p="$(node_port "$node")"
    if [[ -f "$DIR/.s.PGSQL.$p.lock" ]]; then
        pid="$(head -n1 "$DIR/.s.PGSQL.$p.lock" 2>/dev/null || true)"
        if ! live_postgres "$pid"; then
            rm -f "$DIR/.s.PGSQL.$p.lock" "$DIR/.s.PGSQL.$p"
        fi
    fi
}

port_busy() {
    # true when something (not ours) listens on 127.0.0.1:$1
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

tail_log() {
    local f
    f="$(node_log "$1")"
    if [[ -f "$f" ]]; then
        echo "----- last lines of $f -----" >&2
        tail -n 25 "$f" >&2
        echo "-----" >&2
    fi
}

start_node() {
    local node="$1" d p
    d="$(node_dir "$node")"
    p="$(node_port "$node")"
    if is_running "$node"; then
        note "$node already running on port $p"
        return 0
    fi
    clear_stale_pid "$node"
    if port_busy "$p"; then
        die "port $p is already in use by another process (choose another PGCAT_CLUSTER_PORT)"
    fi
    # -w waits for the server to accept connections (a standby accepts once consistent)
    if ! pg_ctl_ -D "$d" -l "$(node_log "$node")" -w -t "$START_TIMEOUT" start >/dev/null; then
        tail_log "$node"
        return 1
    fi
    note "$node started on port $p"
}

wait_ready() {
    local node="$1" deadline=$((SECONDS + START_TIMEOUT))
    while ! sql "$node" postgres -c 'select 1' >/dev/null 2>&1; do
        if (( SECONDS > deadline )); then
            tail_log "$node"
            die "$node (port $(node_port "$node")) did not accept connections within ${START_TIMEOUT}s"
        fi
        sleep 0.2
    done
}

# Test certificates in $DIR/tls: a CA, a server certificate it signed (localhost and 127.0.0.1) used by the
# primary and by the pooler's TLS tests, and an unrelated CA (verify-full must reject the server with it).
make_tls_files() {
    local t="$DIR/tls"
    [[ -f "$t/server.crt" && -f "$t/other-ca.crt" ]] && return 0
    command -v openssl >/dev/null || die "openssl is needed for the test certificates"
    mkdir -p "$t"
    (
        cd "$t"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=pgcat test CA" \
            -keyout ca.key -out ca.crt
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=unrelated CA" \
            -keyout other-ca.key -out other-ca.crt
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile server.ext -out server.crt
    ) >"$DIR/tls.log" 2>&1 || { cat "$DIR/tls.log" >&2; die "making the test certificates failed"; }
    chown -R "$PG_OS_USER" "$t"
    chmod 0600 "$t"/*.key
}

write_primary_conf() {
    local d
    d="$(node_dir primary)"
    make_tls_files
    cat >"$d/pgcat_test.conf" <<EOF
# written by scripts/cluster.sh
listen_addresses = '$HOST'
port = $PORT
unix_socket_directories = '$DIR'
max_connections = 300
shared_buffers = 32MB
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = 256MB
hot_standby = on
hot_standby_feedback = on
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
pg_stat_statements.max = 10000
password_encryption = 'scram-sha-256'
log_line_prefix = '%m [%p] %q%u@%d '
log_connections = off
dynamic_shared_memory_type = posix
max_locks_per_transaction = 128
ssl = on
ssl_cert_file = '$DIR/tls/server.crt'
ssl_key_file = '$DIR/tls/server.key'
EOF
    grep -q "^include 'pgcat_test.conf'" "$d/postgresql.conf" || echo "include 'pgcat_test.conf'" >>"$d/postgresql.conf"
    cat >"$d/pg_hba.conf" <<EOF
# written by scripts/cluster.sh: specific users first, then everyone with SCRAM
# TYPE  DATABASE      USER        ADDRESS        METHOD
local   all           all                        trust
local   replication   all                        trust
host    replication   all         127.0.0.1/32   trust
host    all           trust_user  127.0.0.1/32   trust
host    all           plain_user  127.0.0.1/32   password
host    all           md5_user    127.0.0.1/32   md5
host    all           all         127.0.0.1/32   scram-sha-256
EOF
    chown "$PG_OS_USER" "$d/pgcat_test.conf" "$d/pg_hba.conf"
}

init_primary() {
    local d
    d="$(node_dir primary)"
    note "initdb primary in $d"
    rm -rf "$d"
    as_pg "$BINDIR/initdb" -D "$d" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 \
        || as_pg "$BINDIR/initdb" -D "$d" -U postgres --auth=trust --encoding=UTF8 --locale=C >"$DIR/initdb.log" 2>&1 \
        || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
}

setup_roles() {
    sql primary postgres <<'EOF'
ALTER ROLE postgres PASSWORD 'postgres';
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app') THEN CREATE ROLE app LOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'md5_user') THEN CREATE ROLE md5_user LOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'plain_user') THEN CREATE ROLE plain_user LOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'trust_user') THEN CREATE ROLE trust_user LOGIN; END IF;
END $$;
SET password_encryption = 'scram-sha-256';
ALTER ROLE app PASSWORD 'app';
ALTER ROLE plain_user PASSWORD 'plain_user';
SET password_encryption = 'md5';
ALTER ROLE md5_user PASSWORD 'md5_user';
RESET password_encryption;
ALTER ROLE trust_user PASSWORD NULL;
GRANT pg_read_all_stats TO app;
SELECT format('CREATE DATABASE %I OWNER app', d)
  FROM unnest(ARRAY['app', 'shard0', 'shard1', 'shard2']) AS d
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = d)
\gexec
EOF
    local db
    for db in app shard0 shard1 shard2; do
        sql primary "$db" <<'EOF'
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
GRANT ALL ON SCHEMA public TO app, md5_user, plain_user, trust_user;
GRANT EXECUTE ON FUNCTION pg_stat_statements_reset TO app;
EOF
    done
}

# Returns 0 when the replica's data directory is a usable standby of the current primary.
replica_valid() {
    local d
    d="$(node_dir "$1")"
    [[ -f "$d/PG_VERSION" && -f "$d/standby.signal" ]] || return 1
    local a b
    a="$(as_pg "$BINDIR/pg_controldata" "$(node_dir primary)" 2>/dev/null | awk -F: '/Database system identifier/ {gsub(/ /,"",$2); print $2}')"
    b="$(as_pg "$BINDIR/pg_controldata" "$d" 2>/dev/null | awk -F: '/Database system identifier/ {gsub(/ /,"",$2); print $2}')"
    [[ -n "$a" && "$a" == "$b" ]]
}

clone_replica() {
    local node="$1" d p
    d="$(node_dir "$node")"
    p="$(node_port "$node")"
    note "pg_basebackup $node from the primary"
    rm -rf "$d"
    sql primary postgres -c "SELECT pg_drop_replication_slot('$node') FROM pg_replication_slots WHERE slot_name = '$node' AND NOT active" >/dev/null
    as_pg "$BINDIR/pg_basebackup" -h "$HOST" -p "$PORT" -U postgres -D "$d" -R -X stream -C -S "$node" \
        --checkpoint=fast >"$(node_log "$node").basebackup" 2>&1 \
        || { cat "$(node_log "$node").basebackup" >&2; die "pg_basebackup for $node failed"; }
    # later settings win: its own port; cluster_name is also the walreceiver's application_name
    cat >>"$d/postgresql.conf" <<EOF
port = $p
cluster_name = '$node'
EOF
}

wait_streaming() {
    local deadline=$((SECONDS + START_TIMEOUT)) n=""
    while :; do
        n="$(sql primary postgres -c "select count(*) from pg_stat_replication where state = 'streaming'" 2>/dev/null || true)"
        [[ "$n" == 2 ]] && break
        if (( SECONDS > deadline )); then
            tail_log replica1
            tail_log replica2
            die "replicas are not streaming after ${START_TIMEOUT}s (pg_stat_replication streaming rows: ${n:-?})"
        fi
        sleep 0.2
    done
    local node r
    for node in replica1 replica2; do
        r="$(sql "$node" postgres -c 'select pg_is_in_recovery()')" || die "$node does not accept connections"
        [[ "$r" == t ]] || die "$node is not in recovery (pg_is_in_recovery = $r)"
    done
}

cmd_start() {
    mkdir -p "$DIR"
    chmod 0755 "$DIR"
    chown "$PG_OS_USER" "$DIR"
    local fresh=0
    if [[ ! -f "$(node_dir primary)/PG_VERSION" ]]; then
        init_primary
        fresh=1
    fi
    write_primary_conf
    start_node primary || die "primary failed to start (log: $(node_log primary))"
    wait_ready primary
    # a primary that was already running picks up settings written above (ssl) without a restart
    sql primary postgres -c "select pg_reload_conf()" >/dev/null
    setup_roles
    local node
    for node in replica1 replica2; do
        if (( fresh )) || ! replica_valid "$node"; then
            if is_running "$node"; then pg_ctl_ -D "$(node_dir "$node")" -m immediate -w stop >/dev/null 2>&1 || true; fi
            clone_replica "$node"
        fi
        if ! start_node "$node"; then
            note "$node failed to start; cloning it again"
            clone_replica "$node"
            start_node "$node" || die "$node failed to start (log: $(node_log "$node"))"
        fi
    done
    wait_streaming
    note "cluster ready: primary $HOST:$PORT, replicas $HOST:$((PORT + 1)) and $HOST:$((PORT + 2)) (data in $DIR)"
}

cmd_stop() {
    local node d rc=0
    for node in replica2 replica1 primary; do
        d="$(node_dir "$node")"
        [[ -f "$d/PG_VERSION" ]] || continue
        if is_running "$node"; then
            if pg_ctl_ -D "$d" -m fast -w -t 60 stop >/dev/null 2>&1; then
                note "$node stopped"
            elif pg_ctl_ -D "$d" -m immediate -w -t 30 stop >/dev/null 2>&1; then
                note "$node stopped (immediate)"
            else
                echo "cluster.sh: error: could not stop $node" >&2
                rc=1
            fi
        else
            clear_stale_pid "$node"
        fi
    done
    return $rc
}

cmd_status() {
    local node p state role all=0
    echo "cluster dir: $DIR"
    for node in "${NODES[@]}"; do
        p="$(node_port "$node")"
        if is_running "$node"; then
            if role="$(sql "$node" postgres -c "select case when pg_is_in_recovery() then 'standby' else 'primary' end" 2>/dev/null)"; then
                state="running ($role)"
            else
                state="running (not accepting connections)"
                all=1
            fi
        elif [[ -f "$(node_dir "$node")/PG_VERSION" ]]; then
            state="stopped"
            all=1
        else
            state="not initialised"
            all=1
        fi
        printf '%-9s %s:%-6s %s\n' "$node" "$HOST" "$p" "$state"
    done
    if is_running primary; then
        echo "replication (from the primary):"
        sql primary postgres -F ' ' -c "select '  ' || coalesce(application_name, '?'), client_port, state, sync_state from pg_stat_replication order by 1" 2>/dev/null || true
    fi
    return $all
}

cmd_psql() {
    is_running primary || die "the primary is not running (scripts/cluster.sh start)"
    exec "$BINDIR/psql" -X -h "$DIR" -p "$PORT" -U postgres "$@"
}

cmd_reset() {
    cmd_stop || true
    rm -rf "$DIR"
    note "removed $DIR"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    psql) shift; cmd_psql "$@" ;;
    reset) cmd_reset ;;
    *)
        echo "usage: $0 start|stop|status|psql [psql args]|reset" >&2
        exit 2
        ;;
esac
