#!/usr/bin/env bash
# The single test command (README and CI):
#   1. install dependencies (scripts/install-deps.sh, fast when present)
#   2. swift build (debug) and swift test (unit tests)
#   3. start the PostgreSQL test cluster on its own port (15432; the demo uses 25432; both below the ephemeral port range so no client socket can take them), always stopped at exit
#   4. the integration suite: python3 -m pytest tests/integration
#   5. the chaos suite with short fault phases: scripts/chaos.sh (its own cluster on port 27432)
# and a final line "N passed, N failed, N skipped" over unit and integration tests. Exits non-zero on any failure.
#
# Options:  --no-build    skip swift build and swift test (use the existing .build/debug/pgcat)
#           --no-unit     skip swift test
#           --keep        leave the cluster running afterwards
#           --no-chaos    skip the chaos suite
#           -- ARGS       extra pytest arguments, e.g.  scripts/test.sh --no-build -- -k auth -x
# Environment: PGCAT_TEST_CLUSTER_PORT (default 15432), PGCAT_TEST_DIRECT=1 (integration tests straight against
# Postgres, implies --no-build), PGCAT_TEST_TIMEOUT (integration suite limit in seconds, default 900).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

BUILD=1
UNIT=1
KEEP=0
CHAOS=1
PYTEST_ARGS=()
while (($#)); do
    case "$1" in
        --no-build) BUILD=0; UNIT=0 ;;
        --no-unit) UNIT=0 ;;
        --keep) KEEP=1 ;;
        --no-chaos) CHAOS=0 ;;
        --) shift; PYTEST_ARGS=("$@"); break ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "test.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [[ "${PGCAT_TEST_DIRECT:-0}" =~ ^(1|true|yes)$ ]]; then BUILD=0; UNIT=0; fi

export PGCAT_CLUSTER_PORT="${PGCAT_TEST_CLUSTER_PORT:-15432}"
export PGCAT_CLUSTER_DIR="${PGCAT_TEST_CLUSTER_DIR:-/tmp/pgcat-cluster-$PGCAT_CLUSTER_PORT}"
PY="${PYTHON:-python3}"
SUITE_TIMEOUT="${PGCAT_TEST_TIMEOUT:-900}"
WORK="$(mktemp -d /tmp/pgcat-test.XXXXXX)"

PASSED=0
FAILED=0
SKIPPED=0
FAILURES=()
CLUSTER_STARTED=0

section() { printf '\n==== %s ====\n' "$*"; }
fail_step() { FAILED=$((FAILED + 1)); FAILURES+=("$1"); echo "test.sh: FAILED: $1" >&2; }

# Pooler processes the suite started (conftest.py appends their pids): end any that outlived pytest (e.g. killed
# by the suite timeout before its fixtures could stop them).
export PGCAT_TEST_PIDFILE="$WORK/pgcat.pids"
stop_leftover_poolers() {
    [[ -f "$PGCAT_TEST_PIDFILE" ]] || return 0
    local pid
    while read -r pid; do
        if [[ "$pid" =~ ^[0-9]+$ ]] && [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$WORK\|pgcat"; then
            kill -KILL "$pid" 2>/dev/null && echo "test.sh: killed leftover pooler process $pid"
        fi
    done <"$PGCAT_TEST_PIDFILE"
}

finish() {
    local rc=$?
    stop_leftover_poolers
    if ((CLUSTER_STARTED)) && ((KEEP == 0)); then
        section "stopping the test cluster"
        bash scripts/cluster.sh stop || true
    fi
    section "summary"
    if ((${#FAILURES[@]})); then
        printf 'failed: %s\n' "${FAILURES[@]}"
    fi
    echo "logs and reports: $WORK"
    if ((FAILED > 0)) && ((rc == 0)); then rc=1; fi
    if ((PASSED + FAILED == 0)) && ((rc == 0)); then
        echo "test.sh: no test ran" >&2
        rc=1
    fi
    echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
    exit "$rc"
}
trap finish EXIT
trap 'echo "test.sh: interrupted" >&2; exit 130' INT TERM

# ---------------------------------------------------------------------------------------------------------------
section "dependencies"
if ! bash scripts/install-deps.sh; then
    fail_step "install-deps.sh"
    exit 1
fi

# ---------------------------------------------------------------------------------------------------------------
if ((BUILD)); then
    section "swift build"
    start=$SECONDS
    timeout 2400 swift build 2>&1 | tee "$WORK/build.log" | grep -vE '^\[[0-9]+/[0-9]+\] (Compiling|Emitting|Write|Linking|Applying|Merging)'
    rc=${PIPESTATUS[0]}
    echo "swift build: exit $rc after $((SECONDS - start))s"
    if ((rc != 0)); then
        fail_step "swift build (exit $rc)"
        exit 1
    fi
fi

# Counts from swift test output: XCTest's "Executed N tests, with F failures" (the last, overall line) and
# Swift Testing's "Test run with N tests ... passed|failed" plus one "Test x() failed after" line per failed test.
count_swift_tests() {
    "$PY" - "$1" <<'EOF'
import re, sys
text = open(sys.argv[1], errors="replace").read()
passed = failed = 0
skipped = 0
# "Executed 421 tests, with 1 test skipped and 0 failures": the last such line is the overall one
xc = re.findall(r"Executed (\d+) tests?, with (?:(\d+) tests? skipped and )?(\d+) failures?", text)
if xc:
    n, s, f = xc[-1]
    n, s, f = int(n), int(s or 0), int(f)
    passed += n - f - s
    failed += f
    skipped += s
st = re.findall(r"Test run with (\d+) tests?\b.*?(passed|failed)", text)
if st:
    n = int(st[-1][0])
    f = len(set(re.findall(r"Test (?!run with)(\S.*?) failed after", text)))
    if st[-1][1] == "failed" and f == 0:
        f = 1
    passed += max(n - f, 0)
    failed += f
print(passed, failed, skipped)
EOF
}

if ((UNIT)); then
    section "swift test"
    start=$SECONDS
    timeout 1200 swift test 2>&1 | tee "$WORK/unit.log" | grep -vE '^\[[0-9]+/[0-9]+\] (Compiling|Emitting|Write|Linking|Applying|Merging)|^Test Case .* (started|passed)|^Test Suite .* started|^[^ ]+ Test .*\) (started\.|passed after)'
    rc=${PIPESTATUS[0]}
    read -r up uf us < <(count_swift_tests "$WORK/unit.log")
    echo "swift test: exit $rc after $((SECONDS - start))s: $up passed, $uf failed, $us skipped"
    PASSED=$((PASSED + up))
    FAILED=$((FAILED + uf))
    SKIPPED=$((SKIPPED + us))
    if ((rc != 0)); then
        FAILURES+=("swift test (exit $rc)")
        if ((uf == 0)); then FAILED=$((FAILED + 1)); fi
    fi
fi

# Adds a pytest JUnit report to the totals: report, pytest exit status, label, step name, time limit (s).
count_junit() {
    local xml="$1" rc="$2" label="$3" step="$4" limit="$5" ipass ifail iskip
    if [[ -f "$xml" ]]; then
        read -r ipass ifail iskip < <("$PY" - "$xml" <<'EOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = f = e = s = 0
for su in suites:
    t += int(su.get("tests", 0)); f += int(su.get("failures", 0)); e += int(su.get("errors", 0)); s += int(su.get("skipped", 0))
print(t - f - e - s, f + e, s)
EOF
)
        PASSED=$((PASSED + ipass))
        FAILED=$((FAILED + ifail))
        SKIPPED=$((SKIPPED + iskip))
        if ((rc != 0 && ifail == 0)); then
            fail_step "$step (exit $rc)"
        elif ((rc != 0)); then
            FAILURES+=("$label ($ifail failed)")
        fi
    elif ((rc == 124 || rc == 137)); then
        fail_step "$step timed out after ${limit}s"
    else
        fail_step "$step (exit $rc, no report)"
    fi
    if ((rc == 5)); then
        fail_step "$step collected no tests"
    fi
}

# ---------------------------------------------------------------------------------------------------------------
section "PostgreSQL test cluster on port $PGCAT_CLUSTER_PORT"
CLUSTER_STARTED=1
if ! bash scripts/cluster.sh start; then
    echo "test.sh: cluster start failed; retrying from scratch" >&2
    bash scripts/cluster.sh reset || true
    if ! bash scripts/cluster.sh start; then
        fail_step "scripts/cluster.sh start"
        exit 1
    fi
fi

# ---------------------------------------------------------------------------------------------------------------
section "integration tests (pytest tests/integration)"
if [[ -z "${PGCAT_BIN:-}" && ! "${PGCAT_TEST_DIRECT:-0}" =~ ^(1|true|yes)$ && ! -x "$ROOT/.build/debug/pgcat" ]]; then
    echo "test.sh: warning: $ROOT/.build/debug/pgcat does not exist; pooler tests will fail" >&2
fi
start=$SECONDS
timeout --kill-after=30 "$SUITE_TIMEOUT" "$PY" -m pytest tests/integration -q -p no:cacheprovider \
    --junitxml="$WORK/integration.xml" "${PYTEST_ARGS[@]}"
rc=$?
echo "pytest: exit $rc after $((SECONDS - start))s"
count_junit "$WORK/integration.xml" "$rc" "integration tests" "pytest" "$SUITE_TIMEOUT"

# ---------------------------------------------------------------------------------------------------------------
# The chaos suite (tests/chaos, its own cluster on port 27432: it kills and promotes servers) with short fault
# phases; scripts/chaos.sh runs it alone with longer ones.
if ((CHAOS)) && [[ ! "${PGCAT_TEST_DIRECT:-0}" =~ ^(1|true|yes)$ ]]; then
    section "chaos suite (scripts/chaos.sh)"
    start=$SECONDS
    CHAOS_SECONDS="${CHAOS_SECONDS:-5}" CHAOS_SOAK_SECONDS="${CHAOS_SOAK_SECONDS:-30}" \
        timeout --kill-after=30 900 bash scripts/chaos.sh -- --junitxml="$WORK/chaos.xml"
    rc=$?
    echo "chaos: exit $rc after $((SECONDS - start))s"
    count_junit "$WORK/chaos.xml" "$rc" "chaos tests" "chaos suite" 900
fi
