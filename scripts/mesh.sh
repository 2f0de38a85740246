#!/usr/bin/env bash
# An antq mesh in the NAT lab: a bootstrap in P-boot and `antq-tun up` on
# every host, each behind its own NAT kind. Used by the demo, the netns
# end-to-end tests and the benchmarks.
#
#   mesh.sh up   [--prefix P] --hosts K1,K2[,K3...] [--bin PATH] [--outer ipv4|dual]
#                [--bootstraps 1|2] [--delay MS] [--boot-listen IP]
#                [--network] [--hold H1,H2]
#   mesh.sh down [--prefix P]
#   mesh.sh stop-boot  [--prefix P] [--index 1|2]   (SIGKILL, like a crash)
#   mesh.sh start-boot [--prefix P] [--index 1|2]   (same key and config)
#
# Tunnel addresses: host i (a, b, c, ...) gets 10.90.0.(i+1)/24 and
# fd90::(i+1)/64 on interface antq0; every other host is a peer with its /32
# and /128, named by its letter (`b.antq` answers b's addresses). The bootstrap listens on 0.0.0.0:9000 (`--boot-listen '::'`:
# [::]:9000, dual-stack) with relay on, its Prometheus metrics on
# 127.0.0.1:9901 in P-boot; with `--bootstraps 2` they listen on
# BOOT_IP4:9000 and BOOT_IP4_ALT:9000 (own keys, metrics on :9901 and
# :9902) and every host lists both, in that order.
# `--outer ipv4` (default) turns IPv6 off on the hosts' LAN side so that peers
# meet over the IPv4 NATs (the lab routes IPv6 without NAT).
# `--delay MS` adds MS of one-way latency at every NAT router's WAN side
# (lab.sh up --delay): two NATed hosts are then 2*MS apart, like NATs a few
# routers apart on the internet, instead of microseconds on one bridge.
# `--network`: a network CA (ca.key) signs each host's certificate
# (H.cert: name H, its two addresses) and the configs have a [network]
# section and no [[peer]] at all: hosts find each other through the
# bootstrap's directory. `--hold d,e`: those hosts get keys, certificates
# and configs but are not started (a test starts them later).
# Files (keys, configs, logs, pids) go to /run/antq-lab/P.mesh/.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=antq-bin.sh
source "$HERE/antq-bin.sh"
PREFIX=aqlab
HOSTS=
BIN=
OUTER=ipv4
BOOTS=1
INDEX=1
DELAY=""
BOOT_LISTEN=0.0.0.0
NETWORK=0
HOLD=

usage() {
	sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
}

parse() {
	while [ $# -gt 0 ]; do
		case "$1" in
		--prefix) PREFIX=${2:?}; shift 2 ;;
		--hosts) HOSTS=${2:?}; shift 2 ;;
		--bin) BIN=${2:?}; shift 2 ;;
		--outer) OUTER=${2:?}; shift 2 ;;
		--bootstraps) BOOTS=${2:?}; shift 2 ;;
		--delay) DELAY=${2:?}; shift 2 ;;
		--boot-listen) BOOT_LISTEN=${2:?}; shift 2 ;;
		--index) INDEX=${2:?}; shift 2 ;;
		--network) NETWORK=1; shift ;;
		--hold) HOLD=,${2:?},; shift 2 ;;
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

# boot_name INDEX: file name of bootstrap INDEX (boot, boot2)
boot_name() {
	if [ "$1" = 1 ]; then echo boot; else echo "boot$1"; fi
}

# Starts bootstrap INDEX of the mesh and waits until it listens.
start_boot() {
	local dir=/run/antq-lab/$PREFIX.mesh n
	n=$(boot_name "$1")
	# shellcheck disable=SC1090
	source "/run/antq-lab/$PREFIX.env"
	# Key paths in the configs are relative to the config files.
	ip netns exec "$BOOT_NS" "$BIN" bootstrap -c "$dir/$n.toml" >>"$dir/$n.log" 2>&1 </dev/null &
	echo $! >"$dir/$n.pid"
	echo $! >>"$dir/pids"
	local listen
	listen=$(sed -n 's/^listen = "\(.*\)"$/\1/p' "$dir/$n.toml")
	# (ss shows a dual-stack [::] socket as *:PORT)
	listen=${listen#0.0.0.0}
	listen=${listen#\[::\]}
	for _ in $(seq 1 50); do
		ip netns exec "$BOOT_NS" ss -Huln 2>/dev/null | grep -q "$listen " && break
		sleep 0.05
	done
}

cmd_stop_boot() {
	local dir=/run/antq-lab/$PREFIX.mesh n
	n=$(boot_name "$INDEX")
	[ -f "$dir/$n.pid" ] || { echo "mesh.sh: no $n.pid in $dir" >&2; exit 1; }
	local pid
	pid=$(cat "$dir/$n.pid")
	kill -KILL "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null; do sleep 0.02; done
}

cmd_start_boot() {
	find_bin
	start_boot "$INDEX"
}

cmd_up() {
	[ -n "$HOSTS" ] || usage
	case "$BOOTS" in 1 | 2) ;; *) usage ;; esac
	find_bin
	cmd_down >/dev/null 2>&1 || true
	bash "$HERE/lab.sh" up --prefix "$PREFIX" --hosts "$HOSTS" ${DELAY:+--delay "$DELAY"} >/dev/null 2>&1
	# shellcheck disable=SC1090
	source "/run/antq-lab/$PREFIX.env"
	local dir=/run/antq-lab/$PREFIX.mesh
	mkdir -p "$dir"
	chmod 700 "$dir"
	: >"$dir/pids"

	local names=(boot)
	[ "$BOOTS" = 2 ] && names+=(boot2)
	for h in $LAB_HOSTS; do names+=("$h"); done
	for n in "${names[@]}"; do
		"$BIN" keygen --out "$dir/$n.key" >/dev/null
		"$BIN" pubkey <"$dir/$n.key" >"$dir/$n.pub"
	done
	local boot_list="\"$(cat "$dir/boot.pub")@$BOOT_IP4:9000\""
	if [ "$BOOTS" = 1 ]; then
		write_boot_config boot "$BOOT_LISTEN" 9901
	else
		write_boot_config boot "$BOOT_IP4" 9901
		write_boot_config boot2 "$BOOT_IP4_ALT" 9902
		boot_list="$boot_list, \"$(cat "$dir/boot2.pub")@$BOOT_IP4_ALT:9000\""
	fi
	[ "$NETWORK" = 0 ] || "$BIN" ca init --name lab --out "$dir/ca.key" >"$dir/ca.pub" 2>/dev/null
	local i=0
	for h in $LAB_HOSTS; do
		i=$((i + 1))
		if [ "$NETWORK" = 1 ]; then
			"$BIN" ca sign --ca "$dir/ca.key" --pubkey "$(cat "$dir/$h.pub")" --name "$h" \
				--address "10.90.0.$i/24" --address "fd90::$i/64" --out "$dir/$h.cert" 2>/dev/null
		fi
		{
			echo "[interface]"
			echo "name = \"antq0\""
			echo "private_key_file = \"$h.key\""
			echo "address = [\"10.90.0.$i/24\", \"fd90::$i/64\"]"
			echo "bootstrap = [$boot_list]"
			if [ "$NETWORK" = 1 ]; then
				echo
				echo "[network]"
				echo "ca = [\"$(cat "$dir/ca.pub")\"]"
				echo "certificate_file = \"$h.cert\""
			else
				local j=0
				for p in $LAB_HOSTS; do
					j=$((j + 1))
					[ "$p" = "$h" ] && continue
					echo
					echo "[[peer]]"
					echo "public_key = \"$(cat "$dir/$p.pub")\""
					echo "name = \"$p\""
					echo "allowed_ips = [\"10.90.0.$j/32\", \"fd90::$j/128\"]"
				done
			fi
		} >"$dir/$h.toml"
		if [ "$OUTER" = ipv4 ]; then
			local ns_var="HOST_${h^^}_NS"
			ip netns exec "${!ns_var}" sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1
		fi
	done

	for i in $(seq 1 "$BOOTS"); do start_boot "$i"; done
	for h in $LAB_HOSTS; do
		[[ $HOLD == *",$h,"* ]] && continue
		local ns_var="HOST_${h^^}_NS"
		ip netns exec "${!ns_var}" "$BIN" up -c "$dir/$h.toml" >"$dir/$h.log" 2>&1 </dev/null &
		echo $! >>"$dir/pids"
	done
	for h in $LAB_HOSTS; do
		[[ $HOLD == *",$h,"* ]] && continue
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

# write_boot_config NAME IP METRICS_PORT: a relaying bootstrap on IP:9000
# with key NAME.key, metrics on 127.0.0.1:METRICS_PORT
write_boot_config() {
	local ip=$2
	[[ $ip != *:* ]] || ip="[$ip]"
	cat >"/run/antq-lab/$PREFIX.mesh/$1.toml" <<-EOF
		[bootstrap]
		private_key_file = "$1.key"
		listen = "$ip:9000"
		relay = true
		metrics = "127.0.0.1:$3"
	EOF
}

cmd=${1:-}
[ -n "$cmd" ] || usage
shift
parse "$@"
case "$cmd" in
up) cmd_up ;;
down) cmd_down ;;
stop-boot) cmd_stop_boot ;;
start-boot) cmd_start_boot ;;
*) usage ;;
esac
