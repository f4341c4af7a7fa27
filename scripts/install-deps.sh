#!/usr/bin/env bash
# Installs what the build and the integration tests need, each piece only when it is missing, so a second run
# takes a second or two: PostgreSQL 15 (server, contrib, client, pgbench), pgbouncer (benchmark baseline),
# libpg-query-dev (the query parser the pooler links), procps and iproute2 (ps, ss), and the Python test
# clients psycopg 3, asyncpg, pytest, pytest-timeout and prometheus-client (the metrics test parses with it).
# Needs root (or sudo) for apt-get. Debian 12.
set -euo pipefail

log() { echo "install-deps: $*"; }

SUDO=""
if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null; then SUDO="sudo"; else log "not root and no sudo: apt packages cannot be installed"; fi
fi

pkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

APT_UPDATED=0
apt_update_once() {
    if (( APT_UPDATED == 0 )); then
        log "apt-get update"
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
}

# A real (non-virtual) package that apt can install.
apt_has_candidate() {
    local c
    c="$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')"
    [[ -n "$c" && "$c" != "(none)" ]]
}

want=(postgresql-15 postgresql-client-15 pgbouncer libpg-query-dev procps iproute2)
missing=()
for p in "${want[@]}"; do
    pkg_installed "$p" || missing+=("$p")
done
# contrib (pg_stat_statements): postgresql-contrib-15 where it is a real package; on Debian 12 it is a virtual
# package provided by postgresql-15 itself, and postgresql-contrib is the real one.
if ! pkg_installed postgresql-contrib-15 && ! pkg_installed postgresql-contrib \
    && [[ ! -f /usr/share/postgresql/15/extension/pg_stat_statements.control ]]; then
    missing+=(CONTRIB)
fi

if (( ${#missing[@]} > 0 )); then
    apt_update_once
    final=()
    for p in "${missing[@]}"; do
        if [[ "$p" == CONTRIB ]]; then
            if apt_has_candidate postgresql-contrib-15; then final+=(postgresql-contrib-15); else final+=(postgresql-contrib); fi
        else
            final+=("$p")
        fi
    done
    # Do not let the Debian package create and start its default cluster on 5432: the tests run their own.
    if ! pkg_installed postgresql-common; then
        $SUDO mkdir -p /etc/postgresql-common
        echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
    fi
    log "apt-get install ${final[*]}"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${final[@]}" >/dev/null
else
    log "apt packages present"
fi

# Python test clients (pip package name : import name)
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || { echo "install-deps: $PY not found" >&2; exit 1; }
pip_missing=()
for spec in "psycopg[binary]:psycopg" "asyncpg:asyncpg" "pytest:pytest" "pytest-timeout:pytest_timeout" "prometheus-client:prometheus_client"; do
    pkg="${spec%%:*}"
    mod="${spec##*:}"
    "$PY" -c "import $mod" >/dev/null 2>&1 || pip_missing+=("$pkg")
done
# psycopg needs libpq: the binary wheel ships one; make sure it loads
if [[ ! " ${pip_missing[*]-} " == *" psycopg[binary] "* ]] && ! "$PY" -c "import psycopg; psycopg.pq.version()" >/dev/null 2>&1; then
    pip_missing+=("psycopg[binary]")
fi
if (( ${#pip_missing[@]} > 0 )); then
    log "pip install ${pip_missing[*]}"
    PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip install -q "${pip_missing[@]}"
else
    log "python packages present"
fi
log "done"
