#!/usr/bin/env bash
# Scale benchmark: N concurrent traversal sessions (2N peers in one process,
# one bootstrap process) on loopback. Prints connect/direct counts, median and
# p99 times, the bootstrap's CPU and RSS, and memory per idle peer.
#
#   scripts/scale.sh [--pairs N] [--bin PATH/antq-tun]     (default 1000 pairs)
#
# No root needed. Opens about 2N+10 file descriptors: the soft limit is raised
# to the hard one.
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=1000
BIN=
while [ $# -gt 0 ]; do
	case "$1" in
	--pairs) PAIRS=${2:?}; shift 2 ;;
	--bin) BIN=${2:?}; shift 2 ;;
	*) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --example scale >&2
if [ -z "$BIN" ]; then
	cargo build --release --bin antq-tun >&2
	BIN=$TARGET/release/antq-tun
fi
ulimit -n "$(ulimit -Hn)"
need=$((PAIRS * 2 + 64))
if [ "$(ulimit -n)" -lt "$need" ]; then
	echo "scale.sh: $need file descriptors needed, limit is $(ulimit -n)" >&2
	exit 1
fi
echo "machine: $(nproc) cores, $(uname -r)"
exec "$TARGET/release/examples/scale" --pairs "$PAIRS" --bin "$BIN"
