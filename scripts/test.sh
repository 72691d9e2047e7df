#!/usr/bin/env bash
# The project's full check, as CI runs it (.ci/run calls this):
#
#   1. scripts/build-demo-image.sh      (the offline demo image; fast if built)
#   2. scripts/build-old.sh             (earlier releases for the upgrade tests)
#   3. cargo build --workspace --all-targets
#   4. cargo fmt --all -- --check
#   5. cargo clippy --workspace --all-targets -- -D warnings
#   6. cargo nextest run --workspace    (+ cargo test --doc; or cargo test
#      --workspace when cargo-nextest is not installed)
#
# A failing fmt or clippy phase does not stop the tests, but fails the run.
# At the end, also on failure or Ctrl-C, it removes containers labelled
# `skein.job` or `skein.test` that this run left behind. Leftovers make the
# run fail: tests must clean up after themselves (the harness's Drop does).
#
# Which containers count as this run's: in CI (CI=true) every such container
# (any found at the start are removed first, with a notice). Locally, where
# other runs may share the Docker daemon, only containers created during this
# run, and of those with a `skein.node` label only the ones whose node id an
# agent of this run reported (the harness appends them to $SKEIN_E2E_NODE_LIST).
#
# Environment:
#   SKEIN_TEST_THREADS   parallel tests (default 4: e2e tests mostly wait on Docker)
#   SKEIN_TEST_ARGS      extra arguments for the test runner (before any `--`)
#   SKEIN_NO_NEXTEST=1   use `cargo test` even if cargo-nextest is installed
# Arguments are passed to the test runner too, e.g. `scripts/test.sh -p skein-e2e`.
# shellcheck disable=SC2317  # functions run from traps look unreachable to shellcheck
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

THREADS="${SKEIN_TEST_THREADS:-4}"
IS_CI=0
case "${CI:-}" in true | 1 | yes) IS_CI=1 ;; esac

RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/skein-test-run.XXXXXX")"
export SKEIN_E2E_NODE_LIST="$RUN_DIR/node-ids"
: >"$SKEIN_E2E_NODE_LIST"

TIMINGS=()
T0=$(date +%s.%N)
CURRENT_PHASE=""

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# phase NAME CMD...: runs CMD, records its duration and outcome.
phase() {
    local name="$1"
    shift
    say "$name: $*"
    CURRENT_PHASE="$name"
    local t rc=0
    t=$(date +%s.%N)
    "$@" || rc=$?
    local d
    d=$(elapsed "$t")
    CURRENT_PHASE=""
    if [ "$rc" = 0 ]; then
        TIMINGS+=("$(printf '%-14s %7ss  ok' "$name" "$d")")
        echo "--- $name: ok in ${d}s"
    else
        TIMINGS+=("$(printf '%-14s %7ss  FAILED (exit %s)' "$name" "$d" "$rc")")
        echo "--- $name: FAILED (exit $rc) after ${d}s" >&2
        return "$rc"
    fi
}

# ids of containers with label key $1 (any value)
labelled() { docker ps -aq --no-trunc --filter "label=$1" 2>/dev/null || true; }
all_skein_containers() { { labelled skein.job; labelled skein.test; } | sort -u; }

# Containers present before the run.
PRE_EXISTING="$(all_skein_containers)"
if [ -n "$PRE_EXISTING" ]; then
    n=$(printf '%s\n' "$PRE_EXISTING" | wc -l)
    if [ "$IS_CI" = 1 ]; then
        echo "note: removing $n skein.job/skein.test container(s) present before the run" >&2
        # shellcheck disable=SC2086
        docker rm -f -v $PRE_EXISTING >/dev/null || true
        PRE_EXISTING=""
    else
        echo "note: $n skein.job/skein.test container(s) existed before this run; leaving them alone" >&2
    fi
fi

# Is container $1 this run's?
ours() {
    local id="$1" node
    if printf '%s\n' "$PRE_EXISTING" | grep -qx "$id"; then
        return 1
    fi
    [ "$IS_CI" = 1 ] && return 0
    node="$(docker inspect --format '{{index .Config.Labels "skein.node"}}' "$id" 2>/dev/null || true)"
    [ -z "$node" ] && return 0
    grep -qx "$node" "$SKEIN_E2E_NODE_LIST"
}

finish() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$CURRENT_PHASE" ]; then
        TIMINGS+=("$(printf '%-14s %7s   interrupted' "$CURRENT_PHASE" "")")
    fi
    say "cleanup: containers labelled skein.job / skein.test left by this run"
    local leftovers=() id
    for id in $(all_skein_containers); do
        if ours "$id"; then leftovers+=("$id"); fi
    done
    if [ "${#leftovers[@]}" -gt 0 ]; then
        echo "ERROR: ${#leftovers[@]} leftover container(s) (a test did not clean up):" >&2
        docker ps -a --no-trunc --filter "id=${leftovers[0]}" --format 'table {{.ID}}\t{{.Image}}\t{{.Status}}\t{{.Labels}}' >&2 || true
        for id in "${leftovers[@]:1}"; do
            docker ps -a --no-trunc --filter "id=$id" --format '{{.ID}}\t{{.Image}}\t{{.Status}}\t{{.Labels}}' >&2 || true
        done
        docker rm -f -v "${leftovers[@]}" >/dev/null || true
        [ "$rc" = 0 ] && rc=1
    else
        echo "none"
    fi
    rm -rf "$RUN_DIR"
    say "timings"
    local line
    for line in "${TIMINGS[@]}"; do echo "  $line"; done
    printf '  %-14s %7ss\n' total "$(elapsed "$T0")"
    if [ "$rc" = 0 ]; then
        echo "scripts/test.sh: OK"
    else
        echo "scripts/test.sh: FAILED (exit $rc)" >&2
    fi
    exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Without the image or a build nothing else can run: stop there. A fmt or
# clippy failure does not stop the tests (one CI run reports everything); the
# script still fails at the end.
phase demo-image scripts/build-demo-image.sh
# Earlier releases for the upgrade tests (tests/src/old.rs lists them), in
# the same cargo target dir before HEAD's build: dependencies compile once,
# and HEAD's build then puts its own target/debug/skein back.
mapfile -t OLD_COMMITS < <(grep -oP 'pub const \w+: &str = "\K[0-9a-f]{7,40}(?=";)' tests/src/old.rs | sort -u)
phase old-builds scripts/build-old.sh --target-dir target "${OLD_COMMITS[@]}"
phase build cargo build --workspace --all-targets
rc=0
phase fmt cargo fmt --all -- --check || rc=1
phase clippy cargo clippy --workspace --all-targets -- -D warnings || rc=1

# shellcheck disable=SC2206  # word splitting wanted
extra=(${SKEIN_TEST_ARGS:-})
if [ "${SKEIN_NO_NEXTEST:-0}" != 1 ] && cargo nextest --version >/dev/null 2>&1; then
    phase test cargo nextest run --workspace --no-fail-fast --test-threads "$THREADS" "${extra[@]}" "$@" || rc=1
    # nextest does not run doc tests; skipped when a test selection was given.
    if [ "${#extra[@]}" = 0 ] && [ $# = 0 ]; then
        phase doctest cargo test --workspace --doc || rc=1
    fi
else
    # Doc tests run here too (nextest does not run them).
    phase test cargo test --workspace --no-fail-fast "${extra[@]}" "$@" -- --test-threads "$THREADS" || rc=1
fi
exit "$rc"
