#!/usr/bin/env bash
# An antq mesh in the NAT lab: a bootstrap in P-boot and `antq-tun up` on
# every host, each behind its own NAT kind. Used by the demo, the netns
# end-to-end tests and the benchmarks.
#
#   mesh.sh up   [--prefix P] --hosts K1,K2[,K3...] [--bin PATH] [--outer ipv4|dual]
#   mesh.sh down [--prefix P]
#
# Tunnel addresses: host i (a, b, c, ...) gets 10.90.0.(i+1)/24 and
# fd90::(i+1)/64 on interface antq0; every other host is a peer with its /32
# and /128. The bootstrap listens on BOOT_IP4:9000 with relay on.
# `--outer ipv4` (default) turns IPv6 off on the hosts' LAN side so that peers
# meet over the IPv4 NATs (the lab routes IPv6 without NAT).
# Files (keys, configs, logs, pids) go to /run/antq-lab/P.mesh/.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=antq-bin.sh
source "$HERE/antq-bin.sh"
PREFIX=aqlab
HOSTS=
BIN=
OUTER=ipv4

usage() {
	sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
}

parse() {
	while [ $# -gt 0 ]; do
		case "$1" in
		--prefix) PREFIX=${2:?}; shift 2 ;;
		--hosts) HOSTS=${2:?}; shift 2 ;;
		--bin) BIN=${2:?}; shift 2 ;;
		--outer) OUTER=${2:?}; shift 2 ;;
		*) usage ;;
		esac
	done
}

find_bin() {
	if [ -z "$BIN" ]; then BIN=$(antq_bin); fi
}

cmd_down() {
	local dir=/run/antq-lab/$PREFIX.mesh
	if [ -f "$dir/pids" ]; then
		# SIGTERM first: antq-tun removes its device and exits 0.
		xargs -r kill -TERM <"$dir/pids" 2>/dev/null || true
		for _ in $(seq 1 30); do
			local alive=0
			while read -r pid; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$dir/pids"
			[ "$alive" = 0 ] && break
			sleep 0.1
		done
	fi
	bash "$HERE/lab.sh" down --prefix "$PREFIX"
	rm -rf "$dir"
}

cmd_up() {
	[ -n "$HOSTS" ] || usage
	find_bin
	cmd_down >/dev/null 2>&1 || true
	bash "$HERE/lab.sh" up --prefix "$PREFIX" --hosts "$HOSTS" >/dev/null 2>&1
	# shellcheck disable=SC1090
	source "/run/antq-lab/$PREFIX.env"
	local dir=/run/antq-lab/$PREFIX.mesh
	mkdir -p "$dir"
	chmod 700 "$dir"
	: >"$dir/pids"

	local names=(boot)
	for h in $LAB_HOSTS; do names+=("$h"); done
	for n in "${names[@]}"; do
		"$BIN" keygen --out "$dir/$n.key" >/dev/null
		"$BIN" pubkey <"$dir/$n.key" >"$dir/$n.pub"
	done
	cat >"$dir/boot.toml" <<-EOF
		[bootstrap]
		private_key_file = "boot.key"
		listen = "0.0.0.0:9000"
		relay = true
	EOF
	local i=0
	for h in $LAB_HOSTS; do
		i=$((i + 1))
		{
			echo "[interface]"
			echo "name = \"antq0\""
			echo "private_key_file = \"$h.key\""
			echo "address = [\"10.90.0.$i/24\", \"fd90::$i/64\"]"
			echo "bootstrap = [\"$(cat "$dir/boot.pub")@$BOOT_IP4:9000\"]"
			local j=0
			for p in $LAB_HOSTS; do
				j=$((j + 1))
				[ "$p" = "$h" ] && continue
				echo
				echo "[[peer]]"
				echo "public_key = \"$(cat "$dir/$p.pub")\""
				echo "allowed_ips = [\"10.90.0.$j/32\", \"fd90::$j/128\"]"
			done
		} >"$dir/$h.toml"
		if [ "$OUTER" = ipv4 ]; then
			local ns_var="HOST_${h^^}_NS"
			ip netns exec "${!ns_var}" sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1
		fi
	done

	# Key paths in the configs are relative to the config files.
	ip netns exec "$BOOT_NS" "$BIN" bootstrap -c "$dir/boot.toml" >"$dir/boot.log" 2>&1 </dev/null &
	echo $! >>"$dir/pids"
	for _ in $(seq 1 50); do
		ip netns exec "$BOOT_NS" ss -uln 2>/dev/null | grep -q ':9000 ' && break
		sleep 0.05
	done
	for h in $LAB_HOSTS; do
		local ns_var="HOST_${h^^}_NS"
		ip netns exec "${!ns_var}" "$BIN" up -c "$dir/$h.toml" >"$dir/$h.log" 2>&1 </dev/null &
		echo $! >>"$dir/pids"
	done
	for h in $LAB_HOSTS; do
		local ns_var="HOST_${h^^}_NS" ok=0
		for _ in $(seq 1 100); do
			if ip -n "${!ns_var}" link show antq0 >/dev/null 2>&1; then ok=1; break; fi
			sleep 0.05
		done
		if [ "$ok" = 0 ]; then
			echo "mesh.sh: antq0 did not come up on host $h; its log:" >&2
			cat "$dir/$h.log" >&2
			exit 1
		fi
	done
	echo "mesh $PREFIX up: hosts $LAB_HOSTS ($HOSTS), files in $dir"
}

cmd=${1:-}
[ -n "$cmd" ] || usage
shift
parse "$@"
case "$cmd" in
up) cmd_up ;;
down) cmd_down ;;
*) usage ;;
esac
