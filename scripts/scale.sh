#!/usr/bin/env bash
# Scale benchmark on loopback, one bootstrap process. --pairs N: N concurrent
# traversal sessions (2N peers in one process); prints connect/direct counts,
# median and p99 times, the bootstrap's CPU and RSS, and memory per idle peer.
# --hub N: one node with N peers in its own process, its N peers here; prints
# the node's RSS before and after they connected and idled, per idle peer;
# with --known-endpoint its peers also dial its address.
#
#   scripts/scale.sh [--pairs N | --hub N [--known-endpoint]]
#                    [--bin PATH/antq-tun] [--timeout-secs S]
#                    (default --pairs 1000; S: how long to wait for every
#                    peer to go direct, 120)
#
# No root needed. Opens about 2N+10 file descriptors: the soft limit is raised
# to the hard one.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=--pairs
COUNT=1000
BIN=
EXTRA=()
while [ $# -gt 0 ]; do
	case "$1" in
	--pairs | --hub) MODE=$1; COUNT=${2:?}; shift 2 ;;
	--bin) BIN=${2:?}; shift 2 ;;
	--known-endpoint) EXTRA+=("$1"); shift ;;
	--timeout-secs) EXTRA+=("$1" "${2:?}"); shift 2 ;;
	*) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --example scale >&2
if [ -z "$BIN" ]; then
	cargo build --release --bin antq-tun >&2
	BIN=$TARGET/release/antq-tun
fi
ulimit -n "$(ulimit -Hn)"
need=$((COUNT * 2 + 64))
if [ "$(ulimit -n)" -lt "$need" ]; then
	echo "scale.sh: $need file descriptors needed, limit is $(ulimit -n)" >&2
	exit 1
fi
echo "machine: $(nproc) cores, $(uname -r)"
exec "$TARGET/release/examples/scale" "$MODE" "$COUNT" --bin "$BIN" ${EXTRA[@]+"${EXTRA[@]}"}
