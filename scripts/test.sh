#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, real-socket tests and, when
# run as root, the network-namespace end-to-end tests.
#
# The netns tests run the release build of antq-tun (built here first, so it
# is never stale): hole punching between two home NATs depends on both peers
# sending within microseconds of each other, which is what users run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin antq-tun
ANTQ_TUN_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/antq-tun"
export ANTQ_TUN_BIN
if cargo nextest --version >/dev/null 2>&1; then
    exec cargo nextest run --workspace --all-targets --no-fail-fast "$@"
else
    exec cargo test --workspace --all-targets --no-fail-fast "$@"
fi
