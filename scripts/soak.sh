#!/usr/bin/env bash
# Soak test: a mesh of three hosts in the NAT lab (home, full-cone,
# symmetric: one direct and two relayed pairs) carrying a continuous iperf3
# TCP stream b -> a and ping streams c -> a and a -> b for MINUTES. Samples
# the resident memory of every antq-tun process each 30 s and prints, at the
# end, RSS first/min/max/last per process, ping loss, iperf3 totals, and the
# WARN/ERROR lines of every log.
#
#   sudo scripts/soak.sh [--minutes 30] [--rate 100M] [--bin PATH] [--prefix soak]
#
# `--rate` caps iperf3 (its -b) so the soak leaves the machine usable; 0 means
# as fast as it goes. Exit status 1 if a process died, a stream stopped, or a
# log has an ERROR line.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=antq-bin.sh
source "$HERE/antq-bin.sh"
MINUTES=30
RATE=100M
BIN=
PREFIX=soak
while [ $# -gt 0 ]; do
	case "$1" in
	--minutes) MINUTES=${2:?}; shift 2 ;;
	--rate) RATE=${2:?}; shift 2 ;;
	--bin) BIN=${2:?}; shift 2 ;;
	--prefix) PREFIX=${2:?}; shift 2 ;;
	*) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done
[ -n "$BIN" ] || BIN=$(antq_bin)
SECS=$((MINUTES * 60))
DIR=/run/antq-lab/$PREFIX.mesh
OUT=$(mktemp -d)
cleanup() {
	pkill -f "iperf3 -s -B 10.90.0.1" 2>/dev/null || true
	bash "$HERE/mesh.sh" down --prefix "$PREFIX" >/dev/null 2>&1 || true
	rm -rf "$OUT"
}
trap cleanup EXIT INT TERM

bash "$HERE/mesh.sh" up --prefix "$PREFIX" --hosts home,full-cone,symmetric --bin "$BIN" >/dev/null
ns() { echo "$PREFIX-$1"; }
# Wait for the tunnel between every pair used below.
for pair in "c 10.90.0.1" "b 10.90.0.1" "a 10.90.0.2"; do
	set -- $pair
	for _ in $(seq 1 100); do
		ip netns exec "$(ns "$1")" ping -c1 -W1 "$2" >/dev/null 2>&1 && break
		sleep 0.1
	done
done
# paths: every host's path to each other host
paths() {
	local h
	for h in a b c; do
		ip netns exec "$(ns "$h")" "$BIN" status --json -i antq0 | python3 -c '
import json, sys
keys = dict(reversed(l.split()) for l in sys.argv[2:])
peers = json.load(sys.stdin)["peers"]
print(sys.argv[1] + ": " + ", ".join(keys.get(p["public_key"], "?") + " " + p["path"] for p in peers))
' "$h" "a $(cat "$DIR/a.pub")" "b $(cat "$DIR/b.pub")" "c $(cat "$DIR/c.pub")"
	done
}
sleep 2
paths

ip netns exec "$(ns a)" iperf3 -s -B 10.90.0.1 -D </dev/null >/dev/null 2>&1
sleep 0.5
rate_arg=()
[ "$RATE" = 0 ] || rate_arg=(-b "$RATE")
ip netns exec "$(ns b)" iperf3 -c 10.90.0.1 -t "$SECS" -i 60 -f m "${rate_arg[@]}" >"$OUT/iperf3" 2>&1 </dev/null &
IPERF=$!
ip netns exec "$(ns c)" ping -n -i 0.2 -w "$SECS" 10.90.0.1 >"$OUT/ping-ca" 2>&1 </dev/null &
PING1=$!
ip netns exec "$(ns a)" ping -n -i 0.2 -w "$SECS" 10.90.0.2 >"$OUT/ping-ab" 2>&1 </dev/null &
PING2=$!

# pids: bootstrap first, then hosts a, b, c (mesh.sh's order)
mapfile -t PIDS <"$DIR/pids"
NAMES=(boot a b c)
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
echo "soak: ${MINUTES} min, iperf3 b -> a at ${RATE}, pings c -> a and a -> b every 0.2 s"
printf '%-8s' t_min; for n in "${NAMES[@]}"; do printf '%10s' "$n"; done; echo "   (RSS KiB)"
start=$(date +%s)
died=0
while :; do
	now=$(( $(date +%s) - start ))
	printf '%-8s' "$((now / 60)).$(((now % 60) / 6))"
	for i in "${!PIDS[@]}"; do
		r=$(rss "${PIDS[$i]}")
		[ "$r" = 0 ] && died=1
		echo "$r" >>"$OUT/rss.${NAMES[$i]}"
		printf '%10s' "$r"
	done
	echo
	((now >= SECS)) && break
	sleep 30
done
wait "$IPERF" || true
wait "$PING1" || true
wait "$PING2" || true

echo
paths
echo "RSS KiB per process: first / min / max / last"
for n in "${NAMES[@]}"; do
	sort -n "$OUT/rss.$n" | awk -v n="$n" -v first="$(head -1 "$OUT/rss.$n")" -v last="$(tail -1 "$OUT/rss.$n")" \
		'NR==1{min=$1} {max=$1} END {printf "  %-5s %8d %8d %8d %8d\n", n, first, min, max, last}'
done
echo "ping c -> a: $(grep -E 'packets transmitted' "$OUT/ping-ca")"
echo "ping a -> b: $(grep -E 'packets transmitted' "$OUT/ping-ab")"
echo "iperf3 b -> a: $(grep -E 'receiver' "$OUT/iperf3" | tail -1 | sed 's/  */ /g')"
errors=0
for log in "$DIR"/*.log; do
	w=$(grep -c ' WARN ' "$log" || true)
	e=$(grep -c ' ERROR ' "$log" || true)
	echo "log $(basename "$log"): $w WARN, $e ERROR lines"
	{ grep -E ' (WARN|ERROR) ' "$log" || true; } | sed 's/^/    /' | head -5
	errors=$((errors + e))
done
status=0
grep -q receiver "$OUT/iperf3" || { echo "iperf3 stream did not complete:"; tail -5 "$OUT/iperf3"; status=1; }
((died == 0)) || { echo "an antq-tun process died"; status=1; }
((errors == 0)) || status=1
exit "$status"
