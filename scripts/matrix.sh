#!/usr/bin/env bash
# The NAT traversal matrix: for every pair of NAT kinds, a two-host mesh
# (scripts/mesh.sh) with a public bootstrap, and per pair: connected yes/no
# (a ping through the tunnel), the path after settling (direct/relay), the
# time from `antq-tun up` to the first connection (first datagram possible)
# and to the direct path.
#
#   matrix.sh [--kinds k1,k2,...] [--settle SECONDS] [--json FILE] [--bin PATH]
#             [--keep-logs DIR]
#
# Kinds: any of lab.sh's (none, full-cone, home, home-fw, symmetric,
# symmetric-range, udp-blocked, cgnat, upnp); default: none, full-cone,
# home, symmetric, symmetric-range, udp-blocked (21 pairs). Needs root.
# Prints a table; with --json also writes the rows as JSON; with
# --keep-logs keeps each pair's logs (bootstrap, a, b) in DIR/KA-KB/.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=antq-bin.sh
source "$HERE/antq-bin.sh"
KINDS=none,full-cone,home,symmetric,symmetric-range,udp-blocked
SETTLE=6
JSON=
BIN=
KEEP_LOGS=
PREFIX=aqmx

while [ $# -gt 0 ]; do
	case "$1" in
	--kinds) KINDS=${2:?}; shift 2 ;;
	--settle) SETTLE=${2:?}; shift 2 ;;
	--json) JSON=${2:?}; shift 2 ;;
	--bin) BIN=${2:?}; shift 2 ;;
	--prefix) PREFIX=${2:?}; shift 2 ;;
	--keep-logs) KEEP_LOGS=${2:?}; shift 2 ;;
	*) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done

cleanup() { bash "$HERE/mesh.sh" down --prefix "$PREFIX" >/dev/null 2>&1 || true; }
trap cleanup EXIT INT TERM

IFS=, read -r -a kinds <<<"$KINDS"
for k in "${kinds[@]}"; do
	case " $(sed -n 's/^KINDS="\(.*\)"$/\1/p' "$HERE/lab.sh") " in
	*" $k "*) ;;
	*) echo "matrix.sh: unknown kind '$k'" >&2; exit 2 ;;
	esac
done
[ -n "$BIN" ] || BIN=$(antq_bin)
rows=()
printf '%-16s %-16s %-9s %-7s %-14s %-14s\n' "host a" "host b" connected path "first ms" "direct ms"
for ((i = 0; i < ${#kinds[@]}; i++)); do
	for ((j = i; j < ${#kinds[@]}; j++)); do
		ka=${kinds[$i]} kb=${kinds[$j]}
		bash "$HERE/mesh.sh" up --prefix "$PREFIX" --hosts "$ka,$kb" --bin "$BIN" >/dev/null
		# Let the paths settle, then read both sides.
		sleep "$SETTLE"
		connected=no
		if ip netns exec "$PREFIX-a" ping -c 2 -i 0.2 -W 1 10.90.0.2 >/dev/null 2>&1; then connected=yes; fi
		status=$(ip netns exec "$PREFIX-a" "$BIN" status --json -i antq0 2>/dev/null || echo '{}')
		read -r path first direct < <(python3 -c '
import json, sys
try:
    p = json.loads(sys.argv[1])["peers"][0]
    print(p["path"], p["first_connect_ms"] if p["first_connect_ms"] is not None else "-",
          p["first_direct_ms"] if p["first_direct_ms"] is not None else "-")
except Exception:
    print("none - -")
' "$status")
		printf '%-16s %-16s %-9s %-7s %-14s %-14s\n' "$ka" "$kb" "$connected" "$path" "$first" "$direct"
		if [ -n "$KEEP_LOGS" ]; then
			mkdir -p "$KEEP_LOGS/$ka-$kb"
			cp /run/antq-lab/"$PREFIX".mesh/*.log "$KEEP_LOGS/$ka-$kb/" 2>/dev/null || true
		fi
		rows+=("{\"a\":\"$ka\",\"b\":\"$kb\",\"connected\":\"$connected\",\"path\":\"$path\",\"first_ms\":\"$first\",\"direct_ms\":\"$direct\"}")
		bash "$HERE/mesh.sh" down --prefix "$PREFIX" >/dev/null
	done
done
if [ -n "$JSON" ]; then
	(IFS=,; echo "[${rows[*]}]") >"$JSON"
fi
