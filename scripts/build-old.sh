#!/usr/bin/env bash
# Builds the `skein` binary of earlier commits of this repository, for the
# upgrade tests (tests/tests/upgrade.rs):
#
#   scripts/build-old.sh [--target-dir DIR] COMMIT...
#
# Each binary lands in target/old/<COMMIT>/skein (skipped when present). The
# commit is checked out in a temporary git worktree and built with cargo's
# dev profile. With --target-dir the build shares that cargo target dir (the
# test script passes the workspace's own `target` before it builds HEAD, so
# dependencies compile once); without, it uses target/old/cargo, which never
# touches the binaries other tests are running.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TARGET_DIR="$ROOT/target/old/cargo"
if [ "${1:-}" = "--target-dir" ]; then
    TARGET_DIR="$(realpath -m "$2")"
    shift 2
fi
if [ $# = 0 ]; then
    echo "usage: $0 [--target-dir DIR] COMMIT..." >&2
    exit 2
fi

for commit in "$@"; do
    out="$ROOT/target/old/$commit/skein"
    if [ -x "$out" ]; then
        echo "build-old: $commit: $out exists"
        continue
    fi
    if ! git cat-file -e "$commit^{commit}" 2>/dev/null; then
        echo "build-old: commit $commit is not in this clone (a shallow clone? fetch the history)" >&2
        exit 1
    fi
    src="$(mktemp -d "${TMPDIR:-/tmp}/skein-old-src.XXXXXX")"
    trap 'git worktree remove --force "$src" >/dev/null 2>&1 || rm -rf "$src"' EXIT
    git worktree add --detach --quiet "$src" "$commit"
    echo "build-old: building $commit"
    (cd "$src" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --quiet --locked -p skein-cli)
    mkdir -p "$(dirname "$out")"
    cp "$TARGET_DIR/debug/skein" "$out.tmp"
    mv "$out.tmp" "$out"
    git worktree remove --force "$src"
    trap - EXIT
    echo "build-old: $commit -> $out"
done
