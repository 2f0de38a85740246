#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, real-socket tests and, when
# run as root, the root-only tests (network namespaces, TUN devices, root's
# /run/antq). Those are `#[ignore = "needs root"]`: as root this script runs
# them too (`--run-ignored all`); as a user it runs the rest and says how
# many root-only tests it skipped. Arguments go to `cargo nextest run` (or
# `cargo test`, without nextest), e.g. a filter: `scripts/test.sh migration`.
#
# The netns tests run the release build of antq-tun (built here first, so it
# is never stale): hole punching between two home NATs depends on both peers
# sending within microseconds of each other, which is what users run. The
# Debian package test packs the same binary.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin antq-tun
ANTQ_TUN_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/antq-tun"
export ANTQ_TUN_BIN

root=false
[ "$(id -u)" = 0 ] && root=true
# The Debian package test (root) runs scripts/package.sh --no-build: get
# its tools (cargo-deb, built once per machine) before any test runs.
# (If that fails, the package test fails and says why; the rest runs.)
if $root; then
    bash scripts/package.sh --tools-only || echo "test.sh: packaging tools not installed" >&2
fi

status=0
if cargo nextest --version >/dev/null 2>&1; then
    # One test per process; the netns tests run one at a time
    # (.config/nextest.toml).
    if $root; then
        exec cargo nextest run --workspace --all-targets --no-fail-fast --run-ignored all "$@"
    fi
    cargo nextest run --workspace --all-targets --no-fail-fast "$@" || status=$?
    list() { cargo nextest list --workspace --all-targets --run-ignored only -T oneline "$@"; }
    # (Arguments `list` does not take, such as run options: count them all.)
    ignored=$(list "$@" 2>/dev/null || list)
    skipped=$(grep -c . <<<"$ignored" || true)
else
    # The tests of a binary share one process here; the netns tests take a
    # lock so that they still run one at a time. The benchmarks (criterion)
    # take no --ignored: the root-only tests run in a second pass without
    # them. Arguments after `--` go to the test binaries.
    cargo_args=() test_args=() after=false
    for arg in "$@"; do
        if $after; then
            test_args+=("$arg")
        elif [ "$arg" = -- ]; then
            after=true
        else
            cargo_args+=("$arg")
        fi
    done
    cargo test --workspace --all-targets --no-fail-fast "${cargo_args[@]}" -- "${test_args[@]}" ||
        status=$?
    if $root; then
        cargo test --workspace --lib --bins --tests --examples --no-fail-fast "${cargo_args[@]}" \
            -- --ignored "${test_args[@]}" || status=$?
        exit "$status"
    fi
    ignored=$(cargo test --workspace --all-targets "${cargo_args[@]}" -- --list --ignored 2>/dev/null)
    skipped=$(grep -c ': test$' <<<"$ignored" || true)
fi
echo
echo "$skipped root-only tests (#[ignore = \"needs root\"]) were skipped: run them with sudo scripts/test.sh"
exit "$status"
