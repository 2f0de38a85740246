#!/usr/bin/env bash
# antq demo: three hosts behind NATs in a private network-namespace lab, a
# bootstrap/relay, and `antq-tun up` on each host; then status, ping, iperf3
# and an HTTP download over the tunnel. Root only; everything is torn down on
# exit (also on error and Ctrl-C). Nothing leaves the lab.
#
#   sudo bash scripts/demo.sh [--prefix P] [--bin PATH] [--hosts K1,K2,K3]
#
# Hosts (default home,home,symmetric): a and b behind home NATs (a<->b:
# direct, hole-punched), c behind a symmetric NAT (a<->c: relayed through the
# bootstrap). Tunnel addresses: a 10.90.0.1 / fd90::1, b 10.90.0.2 /
# fd90::2, c 10.90.0.3 / fd90::3. Takes ~25 s once the binary is built.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PREFIX=aqdemo
BIN=
HOSTS=home,home,symmetric

usage() {
	sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
}

while [ $# -gt 0 ]; do
	case "$1" in
	--prefix) PREFIX=${2:?}; shift 2 ;;
	--bin) BIN=${2:?}; shift 2 ;;
	--hosts) HOSTS=${2:?}; shift 2 ;;
	-h | --help) usage ;;
	*) usage ;;
	esac
done

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() {
	echo "demo.sh: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, TUN devices): run it with sudo"

START=$SECONDS
TMP=$(mktemp -d /tmp/antq-demo.XXXXXX)
chmod 755 "$TMP"
MESH_UP=0

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ "$MESH_UP" = 1 ]; then
		say "tearing down"
		bash "$HERE/mesh.sh" down --prefix "$PREFIX" || true
	fi
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- build
if [ -z "$BIN" ]; then
	BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/antq-tun
	if command -v cargo >/dev/null 2>&1; then
		say "building antq-tun (cargo build --release; quick when up to date)"
		(cd "$ROOT" && cargo build --release --quiet --bin antq-tun)
	fi
	[ -x "$BIN" ] || die "no $BIN and no cargo to build it"
fi
[ -x "$BIN" ] || die "not executable: $BIN"

# ---------------------------------------------------------------- deps
say "checking tools (apt-get installs what is missing)"
bash "$HERE/lab.sh" deps
if ! command -v ping >/dev/null 2>&1; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iputils-ping >/dev/null
fi

# ---------------------------------------------------------------- mesh
IFS=, read -r KIND_A KIND_B KIND_C <<<"$HOSTS"
[ -n "$KIND_C" ] || die "--hosts needs three NAT kinds, e.g. home,home,symmetric"
say "bringing up the lab and the mesh: a=$KIND_A b=$KIND_B c=$KIND_C + bootstrap/relay"
MESH_UP=1
# mesh.sh's background helpers keep its stdout open: log to a file, not a pipe.
if ! bash "$HERE/mesh.sh" up --prefix "$PREFIX" --hosts "$HOSTS" --bin "$BIN" >"$TMP/mesh.log" 2>&1; then
	cat "$TMP/mesh.log" >&2
	die "mesh.sh up failed"
fi
cat "$TMP/mesh.log"

in_ns() {
	local host=$1
	shift
	ip netns exec "$PREFIX-$host" "$@"
}

# Number of peers of HOST that have a path (direct or relay).
connected_peers() {
	in_ns "$1" "$BIN" status --json -i antq0 2>/dev/null | grep -cE '"path": "(direct|relay)"' || true
}

# Waits until every host has a path to both of its peers and a <-> b is
# direct, up to 10 s.
say "waiting for the peers to connect (up to 10 s)"
WAIT_START=$SECONDS
while [ $((SECONDS - WAIT_START)) -lt 10 ]; do
	ok=1
	for h in a b c; do
		[ "$(connected_peers "$h")" = 2 ] || ok=0
	done
	if [ "$ok" = 1 ] && in_ns a "$BIN" status --json -i antq0 | grep -q '"path": "direct"'; then
		break
	fi
	sleep 0.1
done
echo "waited $((SECONDS - WAIT_START)) s"

say "antq-tun status on host a"
in_ns a "$BIN" status

B4=10.90.0.2
B6=fd90::2

say "ping a -> b over IPv4 ($B4)"
in_ns a ping -c 3 -i 0.2 -W 2 "$B4"

say "ping a -> b over IPv6 ($B6)"
in_ns a ping -6 -c 3 -i 0.2 -W 2 "$B6"

say "ping a -> c over IPv4 (10.90.0.3)"
in_ns a ping -c 3 -i 0.2 -W 2 10.90.0.3

wait_listen() {
	local host=$1 addr=$2
	for _ in $(seq 1 100); do
		in_ns "$host" ss -Htln | grep -q "$addr " && return 0
		sleep 0.05
	done
	die "nothing listens on $addr in host $host"
}

say "iperf3 TCP a -> b, 5 s"
in_ns b iperf3 -s -B "$B4" -p 5201 --one-off >"$TMP/iperf3-server.log" 2>&1 &
wait_listen b "$B4:5201"
in_ns a iperf3 -c "$B4" -p 5201 -t 5 --connect-timeout 5000 | grep -E '^\[ *ID\]|sender|receiver'

say "HTTP download a <- b: 5 MiB random file, python3 http.server on $B4:8080"
mkdir -p "$TMP/www"
head -c $((5 * 1024 * 1024)) /dev/urandom >"$TMP/www/blob"
in_ns b python3 -m http.server 8080 --bind "$B4" --directory "$TMP/www" >"$TMP/http.log" 2>&1 &
wait_listen b "$B4:8080"
in_ns a curl -sS --fail --max-time 30 -o "$TMP/fetched" \
	-w 'fetched %{size_download} bytes in %{time_total} s (%{speed_download} B/s)\n' \
	"http://$B4:8080/blob"
SUM_B=$(sha256sum <"$TMP/www/blob" | cut -d' ' -f1)
SUM_A=$(sha256sum <"$TMP/fetched" | cut -d' ' -f1)
echo "sha256 on b: $SUM_B"
echo "sha256 on a: $SUM_A"
[ "$SUM_A" = "$SUM_B" ] || die "checksums differ"
echo "checksums match"

say "paths seen by host a"
MESH_DIR=/run/antq-lab/$PREFIX.mesh
in_ns a "$BIN" status --json -i antq0 | python3 -c '
import json, sys
names = {open(f"{sys.argv[1]}/{h}.pub").read().strip(): h for h in "abc"}
for p in json.load(sys.stdin)["peers"]:
    name = names.get(p["public_key"], "?")
    line = "  a -> %s: %-6s via %s" % (name, p["path"], p["remote"])
    if p["rtt_ms"] is not None:
        line += ", rtt %.2f ms" % p["rtt_ms"]
    print(line)
' "$MESH_DIR"
echo "  direct = hole-punched through both NATs; relay = through the bootstrap at"
echo "  198.18.0.10:9000 (still end-to-end encrypted: the relay cannot read it)"
if ! in_ns a "$BIN" status --json -i antq0 | grep -q '"path": "direct"'; then
	echo "  note: a -> b did not punch within 10 s and uses the relay. Between two"
	echo "  home NATs the first punch packets can cross and clash in conntrack;"
	echo "  antq retries later (usually direct within ~45 s)."
fi

say "done in $((SECONDS - START)) s"
