#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, real-socket tests and, when
# run as root, the network-namespace end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if cargo nextest --version >/dev/null 2>&1; then
    exec cargo nextest run --workspace --all-targets --no-fail-fast "$@"
else
    exec cargo test --workspace --all-targets --no-fail-fast "$@"
fi
