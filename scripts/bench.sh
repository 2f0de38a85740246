#!/usr/bin/env bash
# antq benchmarks: throughput, loss, latency and time-to-first-packet of
# raw veth, wireguard-go (userspace), Nebula and antq-tun, measured between
# network namespaces that this script builds (and always tears down).  On the
# veth, socat moving packets between a TUN device and a UDP socket (no
# encryption, no framing) gives the latency floor of any userspace tunnel on
# the machine.
#
# usage: bench.sh [--quick] [--only veth,socat,wireguard-go,nebula,antq,antq-fw]
#                 [--scenarios veth,nat] [--antq-bin PATH] [--out FILE]
#
# System "antq-fw" (veth scenario only): antq-tun again, with a [firewall]
# of 20 inbound rules on A (the iperf3 server) that B's traffic matches only
# at the end of the table: UDP to 5201 at rule 18, ICMP at 19, TCP to 5201 at
# rule 20 (rules 1-17 name other ports or other sources).  With "antq" in
# the same run, a table compares the two (fw on / fw off).
#
# Scenario "veth": namespaces bnA and bnB joined by one veth pair
# (198.18.1.1/24 - 198.18.1.2/24), tunnel inner addresses 10.99.0.1/24 (A,
# server side) and 10.99.0.2/24 (B, client side).
# Scenario "nat": the NAT lab (scripts/lab.sh, prefix bnlab); see README.md.
#
# Network rules: traffic only on loopback or between namespaces built here;
# nothing is created in or changed in the root namespace.  Root only.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
LAB=$HERE/lab.sh

# ---------------------------------------------------------------- settings
NS_A=bnA
NS_B=bnB
OUTER_A=198.18.1.1
OUTER_B=198.18.1.2
INNER_A=10.99.0.1
INNER_B=10.99.0.2
INNER_BOOT=10.99.0.254 # nebula lighthouse in the NAT lab
LAB_PREFIX=bnlab
IPERF_PORT=5201
UDP_RATE=200M
UDP_LEN=1200
PING_COUNT=200
TTFP_TIMEOUT=${BENCH_TTFP_TIMEOUT:-20} # s: give up waiting for the first ping reply
ALL_SYSTEMS="veth socat wireguard-go nebula antq antq-fw"

QUICK=0
ONLY=$ALL_SYSTEMS
SCENARIOS="veth nat"
ANTQ_BIN=""
OUT=bench-results.json

usage() {
	cat <<EOF
usage: bench.sh [--quick] [--only SYS[,SYS...]] [--scenarios veth,nat]
                [--antq-bin PATH] [--out FILE]
  systems: ${ALL_SYSTEMS// /, }
  antq-fw: antq-tun with 20 firewall rules on the receiving side (veth only)
  --quick      5 s iperf3 runs and 3 time-to-first-ping runs (else 10 s and 5)
  --antq-bin   antq-tun binary (default: $REPO/target/release/antq-tun if present)
  --out        machine-readable results (default: ./bench-results.json)
EOF
}

die() {
	echo "bench.sh: $*" >&2
	exit 1
}
log() { echo "bench.sh: $*" >&2; }

while (($#)); do
	case $1 in
	--quick) QUICK=1; shift ;;
	--only) ONLY=${2:?--only needs a value}; ONLY=${ONLY//,/ }; shift 2 ;;
	--scenarios) SCENARIOS=${2:?--scenarios needs a value}; SCENARIOS=${SCENARIOS//,/ }; shift 2 ;;
	--antq-bin) ANTQ_BIN=${2:?--antq-bin needs a value}; shift 2 ;;
	--out) OUT=${2:?--out needs a value}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
for s in $ONLY; do [[ " $ALL_SYSTEMS " == *" $s "* ]] || die "unknown system '$s' (systems: $ALL_SYSTEMS)"; done
for s in $SCENARIOS; do [[ $s == veth || $s == nat ]] || die "unknown scenario '$s' (veth, nat)"; done
[[ $EUID -eq 0 ]] || die "must run as root"

if ((QUICK)); then DUR=5 RUNS=3; else DUR=10 RUNS=5; fi

want() { [[ " $ONLY " == *" $1 "* ]]; }
want_scen() { [[ " $SCENARIOS " == *" $1 "* ]]; }

# ---------------------------------------------------------------- cleanup
TMP=$(mktemp -d /tmp/antq-bench.XXXXXX)
RES=$TMP/results.tsv # scenario \t system \t key \t JSON value
: >"$RES"
DAEMONS=()    # pids of tunnel daemons (children of this shell)
SERVERS=()    # pids of iperf3 servers
LAB_USED=0

stop_pids() { # PID...: TERM, wait up to 3 s, KILL
	local p i
	for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "$@"; do
		for ((i = 0; i < 60; i++)); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.05
		done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
}

stop_daemons() {
	((${#DAEMONS[@]})) && stop_pids "${DAEMONS[@]}"
	DAEMONS=()
}

del_ns() { # NS: kill what runs in it (all started by us), delete it
	local ns=$1
	[[ -e /run/netns/$ns ]] || return 0
	local p
	for p in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$p" 2>/dev/null || true; done
	sleep 0.1
	for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
	ip netns del "$ns" 2>/dev/null || true
}

CLEANED=0
cleanup() {
	((CLEANED)) && return 0
	CLEANED=1
	set +e
	stop_daemons
	((${#SERVERS[@]})) && stop_pids "${SERVERS[@]}"
	del_ns "$NS_A"
	del_ns "$NS_B"
	((LAB_USED)) && "$LAB" down --prefix "$LAB_PREFIX" >/dev/null 2>&1
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'log "interrupted, cleaning up"; exit 130' INT TERM HUP

# ---------------------------------------------------------------- results
rec() { # SCEN SYS KEY JSON
	printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RES"
}
get() { # SCEN SYS KEY -> raw JSON value or empty (last one wins)
	awk -F'\t' -v s="$1" -v y="$2" -v k="$3" '$1==s && $2==y && $3==k {v=$4} END {print v}' "$RES"
}
jstr() { jq -Rn --arg s "$1" '$s'; }

# ---------------------------------------------------------------- deps
declare -A HAVE=()
install_deps() {
	local -A pkg_of=([ip]=iproute2 [ss]=iproute2 [iperf3]=iperf3 [ping]=iputils-ping [jq]=jq
		[timeout]=coreutils [awk]=gawk)
	if want wireguard-go; then pkg_of[wireguard-go]=wireguard-go pkg_of[wg]=wireguard-tools; fi
	if want nebula; then pkg_of[nebula]=nebula pkg_of[nebula-cert]=nebula; fi
	if want socat; then pkg_of[socat]=socat; fi
	local -A missing=()
	local c p
	for c in "${!pkg_of[@]}"; do command -v "$c" >/dev/null 2>&1 || missing[${pkg_of[$c]}]=1; done
	if ((${#missing[@]})); then
		log "installing: ${!missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		if ! apt-get install -y -qq --no-install-recommends "${!missing[@]}" >/dev/null 2>&1; then
			apt-get update -qq >/dev/null 2>&1 || true
			for p in "${!missing[@]}"; do
				apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1 ||
					log "package '$p' not available"
			done
		fi
	fi
	for c in "${!pkg_of[@]}"; do command -v "$c" >/dev/null 2>&1 && HAVE[$c]=1; done
	for c in ip ss iperf3 ping jq timeout awk; do
		[[ -n ${HAVE[$c]:-} ]] || die "required tool '$c' is missing and could not be installed"
	done
	[[ -c /dev/net/tun ]] || log "warning: /dev/net/tun missing: no tunnel can start"
}

# SYS -> "" when usable, else the reason shown in its column
declare -A UNAVAIL=()
check_systems() {
	UNAVAIL[veth]=""
	if [[ -n ${HAVE[socat]:-} ]]; then UNAVAIL[socat]=""; else UNAVAIL[socat]="not available"; fi
	if [[ -n ${HAVE[wireguard-go]:-} && -n ${HAVE[wg]:-} ]]; then UNAVAIL[wireguard-go]=""; else UNAVAIL[wireguard-go]="not available"; fi
	if [[ -n ${HAVE[nebula]:-} && -n ${HAVE[nebula-cert]:-} ]]; then UNAVAIL[nebula]=""; else UNAVAIL[nebula]="not available"; fi
	local bin=$ANTQ_BIN
	[[ -z $bin && -x $REPO/target/release/antq-tun ]] && bin=$REPO/target/release/antq-tun
	if [[ -z $bin ]]; then
		UNAVAIL[antq]="not built"
	elif [[ ! -x $bin ]]; then
		UNAVAIL[antq]="no binary"
	elif ! "$bin" up --help >/dev/null 2>&1; then
		UNAVAIL[antq]="not available yet"
	else
		UNAVAIL[antq]="" ANTQ_BIN=$bin
	fi
	UNAVAIL[antq-fw]=${UNAVAIL[antq]}
}

print_versions() {
	local v
	echo "== versions"
	printf '  %-14s %s\n' kernel "$(uname -r)"
	printf '  %-14s %s\n' iperf3 "$(iperf3 --version 2>&1 | head -n1)"
	rec meta - kernel "$(jstr "$(uname -r)")"
	rec meta - iperf3 "$(jstr "$(iperf3 --version 2>&1 | head -n1)")"
	if [[ -n ${HAVE[wireguard-go]:-} ]]; then
		v=$(wireguard-go --version 2>&1 | head -n1)
		printf '  %-14s %s\n' wireguard-go "$v"
		rec meta - wireguard-go "$(jstr "$v")"
		v=$(wg --version 2>&1 | head -n1)
		printf '  %-14s %s\n' wg "$v"
		rec meta - wireguard-tools "$(jstr "$v")"
	elif want wireguard-go; then
		printf '  %-14s %s\n' wireguard-go "not available"
	fi
	if [[ -n ${HAVE[nebula]:-} ]]; then
		v=$(nebula -version 2>&1 | head -n1)
		printf '  %-14s %s\n' nebula "$v"
		rec meta - nebula "$(jstr "$v")"
	elif want nebula; then
		printf '  %-14s %s\n' nebula "not available"
	fi
	if want antq || want antq-fw; then
		if [[ -z ${UNAVAIL[antq]} ]]; then
			v=$("$ANTQ_BIN" --version 2>&1 | head -n1 || true)
			printf '  %-14s %s (%s)\n' antq-tun "$v" "$ANTQ_BIN"
			rec meta - antq-tun "$(jstr "$v")"
		else
			printf '  %-14s %s\n' antq-tun "${UNAVAIL[antq]}"
		fi
	fi
	printf '  %-14s %s\n' cpus "$(nproc)"
	rec meta - cpus "$(nproc)"
	rec meta - quick "$QUICK"
	rec meta - iperf_seconds "$DUR"
	rec meta - ttfp_runs "$RUNS"
	rec meta - date "$(jstr "$(date -u +%Y-%m-%dT%H:%M:%SZ)")"
}

# ---------------------------------------------------------------- helpers
# Daemons are started with "ip netns exec NS CMD &" (never through the nsx
# function, which would fork a subshell): $! must be the daemon itself.
nsx() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}

now() { echo "$EPOCHREALTIME"; }

wait_tcp_listen() { # NS PORT
	local i
	for ((i = 0; i < 100; i++)); do
		[[ -n $(nsx "$1" ss -Hltn "sport = :$2") ]] && return 0
		sleep 0.05
	done
	return 1
}

start_iperf_server() { # NS
	ip netns exec "$1" iperf3 -s -p "$IPERF_PORT" >"$TMP/iperf-server-$1.log" 2>&1 &
	SERVERS+=($!)
	wait_tcp_listen "$1" "$IPERF_PORT" || die "iperf3 server in $1 did not start"
}

stop_iperf_servers() {
	((${#SERVERS[@]})) && stop_pids "${SERVERS[@]}"
	SERVERS=()
}

# Long steps run in the background and are waited for: a trapped signal
# (Ctrl-C, TERM) interrupts "wait" at once, where a foreground child or a
# command substitution would delay the trap until the child ends.
bgrun() { # OUTFILE CMD...: stdout to OUTFILE; returns CMD's status
	local out=$1
	shift
	"$@" >"$out" 2>/dev/null &
	wait $!
}

# iperf3 client; the JSON lands in $TMP/iperf.json (empty on failure)
iperf_json() { # NS DST ARGS...
	local ns=$1 dst=$2
	shift 2
	bgrun "$TMP/iperf.json" ip netns exec "$ns" timeout $((DUR + 20)) \
		iperf3 -c "$dst" -p "$IPERF_PORT" -t "$DUR" -J "$@" || true
}

measure_tcp() { # SCEN SYS NS DST STREAMS KEY
	local j v
	iperf_json "$3" "$4" -P "$5"
	j=$(<"$TMP/iperf.json")
	v=$(jq -r '.end.sum_received.bits_per_second // empty | . / 1e6 | . * 10 | round / 10' <<<"$j" 2>/dev/null || true)
	if [[ -n $v ]]; then
		rec "$1" "$2" "$6" "$v"
		log "  $2 $6 = $v Mbit/s"
		v=$(jq -r '[.end.sum_sent.retransmits // empty] | first // empty' <<<"$j" 2>/dev/null || true)
		[[ -n $v ]] && rec "$1" "$2" "${6%_mbps}_retransmits" "$v"
	else
		rec "$1" "$2" "$6" '"failed"'
		log "  $2 $6 failed: $(jq -r '.error // "no output"' <<<"$j" 2>/dev/null || echo 'no output')"
	fi
}

measure_udp() { # SCEN SYS NS DST
	local j loss mbps
	iperf_json "$3" "$4" -u -b "$UDP_RATE" -l "$UDP_LEN"
	j=$(<"$TMP/iperf.json")
	loss=$(jq -r '.end.sum.lost_percent // empty | . * 100 | round / 100' <<<"$j" 2>/dev/null || true)
	mbps=$(jq -r '.end.sum.bits_per_second // empty | . / 1e6 | . * 10 | round / 10' <<<"$j" 2>/dev/null || true)
	if [[ -n $loss ]]; then
		rec "$1" "$2" udp_loss_pct "$loss"
		# received rate = offered rate minus the lost share
		[[ -n $mbps ]] && rec "$1" "$2" udp_recv_mbps "$(awk -v m="$mbps" -v l="$loss" 'BEGIN{printf "%.1f", m*(100-l)/100}')"
		log "  $2 udp loss at $UDP_RATE = $loss %"
	else
		rec "$1" "$2" udp_loss_pct '"failed"'
		log "  $2 udp failed: $(jq -r '.error // "no output"' <<<"$j" 2>/dev/null || echo 'no output')"
	fi
}

measure_ping() { # SCEN SYS NS DST
	local out med summ loss
	bgrun "$TMP/ping.out" ip netns exec "$3" timeout 20 ping -n -i 0.01 -c "$PING_COUNT" -W 1 "$4" || true
	out=$(<"$TMP/ping.out")
	med=$(grep -o 'time=[0-9.]*' <<<"$out" | cut -d= -f2 | sort -g |
		awk '{a[NR]=$1} END {if (NR==0) exit; if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}')
	summ=$(sed -n 's|^rtt min/avg/max/mdev = \([0-9.]*\)/\([0-9.]*\)/\([0-9.]*\)/\([0-9.]*\) ms.*|\1 \2 \3 \4|p' <<<"$out")
	loss=$(sed -n 's|.* \([0-9.]*\)% packet loss.*|\1|p' <<<"$out")
	if [[ -n $med ]]; then
		rec "$1" "$2" rtt_median_ms "$med"
		read -r mn av mx md <<<"$summ"
		rec "$1" "$2" rtt_min_ms "$mn"
		rec "$1" "$2" rtt_avg_ms "$av"
		rec "$1" "$2" rtt_max_ms "$mx"
		rec "$1" "$2" rtt_mdev_ms "$md"
		rec "$1" "$2" ping_loss_pct "${loss:-0}"
		log "  $2 rtt median $med ms (min/avg/max/mdev $mn/$av/$mx/$md, loss ${loss:-?}%)"
	else
		rec "$1" "$2" rtt_median_ms '"failed"'
		log "  $2 ping failed"
	fi
}

# Poll until the first ping reply; sets FP_MS to the ms since T0 or fails.
FP_MS=""
first_ping_ms() { # NS DST T0
	local t
	FP_MS=""
	# the loop runs inside the namespace: one fork of ping per try, no ip-netns overhead
	# shellcheck disable=SC2016 # expanded by the inner bash
	bgrun "$TMP/fp.out" ip netns exec "$1" bash -c '
		dst=$1 dl=$2
		while :; do
			if ping -n -c1 -W 0.1 -q "$dst" >/dev/null 2>&1; then echo "$EPOCHREALTIME"; exit 0; fi
			n=$EPOCHREALTIME
			(( ${n%.*} >= dl )) && exit 1
			sleep 0.005
		done' _ "$2" "$((${3%.*} + TTFP_TIMEOUT))" || return 1
	t=$(<"$TMP/fp.out")
	FP_MS=$(awk -v a="$3" -v b="$t" 'BEGIN{printf "%.1f\n", (b-a)*1000}')
}

median() { # numbers on stdin
	sort -g | awk '{a[NR]=$1} END {if (NR==0) exit; if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'
}

# ---------------------------------------------------------------- topology
# Context of the current measurement (set by the scenario drivers):
#   SCEN, S_NS/C_NS (server side A / client side B), S_UL/C_UL (their underlay
#   addresses, C_UL empty when B is behind a NAT), BOOT_NS/BOOT_UL (lab only)
SCEN="" S_NS="" C_NS="" S_UL="" C_UL="" BOOT_NS="" BOOT_UL="" IN_LAB=0

veth_up() {
	del_ns "$NS_A"
	del_ns "$NS_B"
	ip netns add "$NS_A"
	ip netns add "$NS_B"
	local ns
	for ns in "$NS_A" "$NS_B"; do
		nsx "$ns" ip link set lo up
		nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 >/dev/null
	done
	# the pair is created inside bnA with its peer moved straight into bnB
	ip -n "$NS_A" link add eth0 type veth peer name eth0 netns "$NS_B"
	ip -n "$NS_A" addr add "$OUTER_A/24" dev eth0
	ip -n "$NS_B" addr add "$OUTER_B/24" dev eth0
	ip -n "$NS_A" link set eth0 up
	ip -n "$NS_B" link set eth0 up
	nsx "$NS_B" ping -n -c1 -W 2 -q "$OUTER_A" >/dev/null || die "veth: $OUTER_A unreachable from $NS_B"
}

# ---------------------------------------------------------------- socat
# The latency floor of a userspace tunnel here: socat copies packets between
# a TUN device and a UDP socket, nothing else (no encryption, no framing, one
# thread).  Ping only: it is a reference for the added RTT, not a VPN.
measure_socat() {
	log "[veth] socat (TUN <-> UDP, no encryption)"
	local side i up=0
	for side in A B; do
		local ns=$NS_A me=$OUTER_A other=$OUTER_B inner=$INNER_A
		[[ $side == B ]] && ns=$NS_B me=$OUTER_B other=$OUTER_A inner=$INNER_B
		ip netns exec "$ns" socat "UDP-DATAGRAM:$other:9003,bind=$me:9003" \
			"TUN:$inner/24,tun-name=bnsoc$side,tun-type=tun,iff-no-pi,up" </dev/null >"$TMP/socat-$side.log" 2>&1 &
		DAEMONS+=($!)
	done
	for ((i = 0; i < 40; i++)); do
		if nsx "$NS_B" ping -n -c1 -W 0.1 -q "$INNER_A" >/dev/null 2>&1; then up=1; break; fi
		sleep 0.05
	done
	if ((up)); then
		rec veth socat status '"ok"'
		measure_ping veth socat "$NS_B" "$INNER_A"
	else
		rec veth socat status '"tunnel down"'
		tail -n 3 "$TMP"/socat-[AB].log 2>/dev/null | sed 's/^/    /' >&2 || true
	fi
	stop_daemons
}

# ---------------------------------------------------------------- wireguard-go
WG_IF_A=bnwgA
WG_IF_B=bnwgB
wg_setup() { # writes $TMP/wg/{a,b}.conf for the current context
	local d=$TMP/wg ka kb pa pb
	mkdir -p "$d"
	ka=$(wg genkey) kb=$(wg genkey)
	pa=$(wg pubkey <<<"$ka") pb=$(wg pubkey <<<"$kb")
	{
		echo "[Interface]"
		echo "PrivateKey = $ka"
		echo "ListenPort = 51820"
		echo "[Peer]"
		echo "PublicKey = $pb"
		echo "AllowedIPs = $INNER_B/32"
		[[ -n $C_UL ]] && echo "Endpoint = $C_UL:51820"
	} >"$d/a.conf"
	{
		echo "[Interface]"
		echo "PrivateKey = $kb"
		echo "ListenPort = 51820"
		echo "[Peer]"
		echo "PublicKey = $pa"
		echo "AllowedIPs = $INNER_A/32"
		echo "Endpoint = $S_UL:51820"
		[[ -z $C_UL ]] && echo "PersistentKeepalive = 25"
	} >"$d/b.conf"
	true
}

wg_side() { # NS IF CONF ADDR: wait for the UAPI socket, configure, bring up
	local ns=$1 ifn=$2 i
	for ((i = 0; i < 1000; i++)); do
		[[ -S /var/run/wireguard/$ifn.sock ]] && break
		sleep 0.005
	done
	nsx "$ns" wg setconf "$ifn" "$3" &&
		nsx "$ns" ip addr add "$4/24" dev "$ifn" &&
		nsx "$ns" ip link set "$ifn" up
}

WG_CFG=()
wg_start() {
	local run=$1
	# -f: foreground, so that our pid is the daemon; userspace only (no kernel module involved)
	ip netns exec "$S_NS" env WG_PROCESS_FOREGROUND=1 wireguard-go -f "$WG_IF_A" >"$TMP/wg-a-$run.log" 2>&1 &
	DAEMONS+=($!)
	ip netns exec "$C_NS" env WG_PROCESS_FOREGROUND=1 wireguard-go -f "$WG_IF_B" >"$TMP/wg-b-$run.log" 2>&1 &
	DAEMONS+=($!)
	wg_side "$S_NS" "$WG_IF_A" "$TMP/wg/a.conf" "$INNER_A" &
	WG_CFG=($!)
	wg_side "$C_NS" "$WG_IF_B" "$TMP/wg/b.conf" "$INNER_B" &
	WG_CFG+=($!)
}
wg_started() { # after the first ping (or its timeout): did the configuration succeed?
	local p rc=0
	for p in "${WG_CFG[@]}"; do wait "$p" || rc=1; done
	WG_CFG=()
	return $rc
}
wg_check() { # is it really the userspace implementation (a tun device)?
	if nsx "$S_NS" ip -d link show "$WG_IF_A" | grep -qw tun; then
		rec "$SCEN" wireguard-go device '"tun (userspace wireguard-go)"'
	else
		rec "$SCEN" wireguard-go device '"NOT a tun device"'
		log "warning: $WG_IF_A is not a tun device"
	fi
}

# ---------------------------------------------------------------- nebula
NEB_IF_A=bnnebA
NEB_IF_B=bnnebB
NEB_IF_L=bnnebL
neb_conf() { # NAME IF LIGHTHOUSE(true|false) STATIC_MAP_JSON LH_HOSTS_JSON [RELAYS_JSON]
	local d=$TMP/nebula relays=${6:-} am_relay=false use_relays=false
	[[ -n $relays ]] && use_relays=true
	[[ $3 == true && -n $BOOT_NS ]] && am_relay=true use_relays=true
	cat <<EOF
pki:
  ca: $d/ca.crt
  cert: $d/$1.crt
  key: $d/$1.key
static_host_map: $4
lighthouse:
  am_lighthouse: $3
  interval: 60
  hosts: $5
listen:
  host: 0.0.0.0
  port: 4242
punchy:
  punch: true
  respond: true
relay:
  relays: ${relays:-[]}
  am_relay: $am_relay
  use_relays: $use_relays
tun:
  dev: $2
  mtu: 1300
logging:
  level: info
firewall:
  outbound:
    - {port: any, proto: any, host: any}
  inbound:
    - {port: any, proto: any, host: any}
EOF
}

neb_setup() {
	local d=$TMP/nebula
	mkdir -p "$d"
	nebula-cert ca -name antq-bench -out-crt "$d/ca.crt" -out-key "$d/ca.key" >/dev/null
	nebula-cert sign -name a -ip "$INNER_A/24" -ca-crt "$d/ca.crt" -ca-key "$d/ca.key" \
		-out-crt "$d/a.crt" -out-key "$d/a.key" >/dev/null
	nebula-cert sign -name b -ip "$INNER_B/24" -ca-crt "$d/ca.crt" -ca-key "$d/ca.key" \
		-out-crt "$d/b.crt" -out-key "$d/b.key" >/dev/null
	if [[ -z $BOOT_NS ]]; then
		# A is the lighthouse, B finds it through the static host map
		neb_conf a "$NEB_IF_A" true '{}' '[]' >"$d/a.yml"
		neb_conf b "$NEB_IF_B" false "{\"$INNER_A\": [\"$S_UL:4242\"]}" "[\"$INNER_A\"]" >"$d/b.yml"
	else
		# lighthouse in the lab's boot namespace, both hosts behind NATs
		nebula-cert sign -name lighthouse -ip "$INNER_BOOT/24" -ca-crt "$d/ca.crt" -ca-key "$d/ca.key" \
			-out-crt "$d/l.crt" -out-key "$d/l.key" >/dev/null
		neb_conf l "$NEB_IF_L" true '{}' '[]' >"$d/l.yml"
		# the lighthouse is also a relay (like antq's bootstrap with relay = true)
		neb_conf a "$NEB_IF_A" false "{\"$INNER_BOOT\": [\"$BOOT_UL:4242\"]}" "[\"$INNER_BOOT\"]" "[\"$INNER_BOOT\"]" >"$d/a.yml"
		neb_conf b "$NEB_IF_B" false "{\"$INNER_BOOT\": [\"$BOOT_UL:4242\"]}" "[\"$INNER_BOOT\"]" "[\"$INNER_BOOT\"]" >"$d/b.yml"
	fi
}

neb_infra_start() { # lighthouse in boot (lab only), stays up across runs
	[[ -n $BOOT_NS ]] || return 0
	ip netns exec "$BOOT_NS" nebula -config "$TMP/nebula/l.yml" >"$TMP/nebula-l.log" 2>&1 &
	INFRA+=($!)
	local i
	for ((i = 0; i < 100; i++)); do
		nsx "$BOOT_NS" ip addr show dev "$NEB_IF_L" 2>/dev/null | grep -q "$INNER_BOOT" && return 0
		sleep 0.05
	done
	log "nebula lighthouse did not come up:"
	tail -n 5 "$TMP/nebula-l.log" >&2
	return 1
}

neb_start() {
	local run=$1
	ip netns exec "$S_NS" nebula -config "$TMP/nebula/a.yml" >"$TMP/neb-a-$run.log" 2>&1 &
	DAEMONS+=($!)
	ip netns exec "$C_NS" nebula -config "$TMP/nebula/b.yml" >"$TMP/neb-b-$run.log" 2>&1 &
	DAEMONS+=($!)
}
neb_started() { true; }
wg_infra_start() { true; }
neb_check() { true; }

# ---------------------------------------------------------------- antq
antq_setup() {
	local d=$TMP/antq ka kb pa pb kboot pboot
	mkdir -p "$d"
	ka=$("$ANTQ_BIN" keygen) kb=$("$ANTQ_BIN" keygen)
	pa=$("$ANTQ_BIN" pubkey <<<"$ka") pb=$("$ANTQ_BIN" pubkey <<<"$kb")
	local boot_line=""
	if [[ -n $BOOT_NS ]]; then
		kboot=$("$ANTQ_BIN" keygen)
		pboot=$("$ANTQ_BIN" pubkey <<<"$kboot")
		boot_line="bootstrap = [\"$pboot@$BOOT_UL:9000\"]"
		cat >"$d/boot.toml" <<EOF
[bootstrap]
private_key = "$kboot"
listen = "0.0.0.0:9000"
relay = true
EOF
	fi
	{
		echo "[interface]"
		echo "name = \"antqA\""
		echo "private_key = \"$ka\""
		echo "address = [\"$INNER_A/24\"]"
		echo "listen_port = 9000"
		[[ -n $boot_line ]] && echo "$boot_line"
		echo "[[peer]]"
		echo "public_key = \"$pb\""
		echo "allowed_ips = [\"$INNER_B/32\"]"
		[[ -n $C_UL ]] && echo "endpoint = \"$C_UL:9000\""
	} >"$d/a.toml"
	{
		echo "[interface]"
		echo "name = \"antqB\""
		echo "private_key = \"$kb\""
		echo "address = [\"$INNER_B/24\"]"
		echo "listen_port = 9000"
		[[ -n $boot_line ]] && echo "$boot_line"
		echo "[[peer]]"
		echo "public_key = \"$pa\""
		echo "allowed_ips = [\"$INNER_A/32\"]"
		[[ -z $BOOT_NS ]] && echo "endpoint = \"$S_UL:9000\""
	} >"$d/b.toml"
	true
}

antq_infra_start() {
	[[ -n $BOOT_NS ]] || return 0
	ip netns exec "$BOOT_NS" "$ANTQ_BIN" bootstrap -c "$TMP/antq/boot.toml" >"$TMP/antq-boot.log" 2>&1 &
	INFRA+=($!)
	local i
	for ((i = 0; i < 100; i++)); do
		[[ -n $(nsx "$BOOT_NS" ss -Hlun "sport = :9000") ]] && return 0
		sleep 0.05
	done
	log "antq bootstrap did not come up:"
	tail -n 5 "$TMP/antq-boot.log" >&2
	return 1
}

antq_daemons() { # LOG_PREFIX RUN
	ip netns exec "$S_NS" "$ANTQ_BIN" up -c "$TMP/antq/a.toml" >"$TMP/$1-a-$2.log" 2>&1 &
	DAEMONS+=($!)
	ip netns exec "$C_NS" "$ANTQ_BIN" up -c "$TMP/antq/b.toml" >"$TMP/$1-b-$2.log" 2>&1 &
	DAEMONS+=($!)
}
antq_start() { antq_daemons antq "$1"; }
# In the NAT lab, after each run's first ping: how long after its start the
# daemon on B had a direct path (`first_direct_ms` in its status), waiting up
# to 10 s for one.
ANTQ_DIRECT_MS=()
antq_started() {
	((IN_LAB)) || return 0
	local i ms=""
	for ((i = 0; i < 100; i++)); do
		ms=$(nsx "$C_NS" "$ANTQ_BIN" status --json -i antqB 2>/dev/null |
			jq -r '(if type == "array" then .[0] else . end).peers[0].first_direct_ms // empty' 2>/dev/null || true)
		[[ -n $ms ]] && break
		sleep 0.1
	done
	ANTQ_DIRECT_MS+=("${ms:-null}")
	log "  antq: direct path after ${ms:-(none within 10 s)} ms"
}
antq_check() { true; }

# antq-fw: the same two daemons; A (server side) gets a [firewall] whose
# rules B's traffic matches only at the end: every rule before is walked
# (for TCP, all 20).  Rules 1-17: other ports, or port 5201 from other
# sources.  Replies to A's own packets pass by its connection table.
antq_fw_rules() { # CLIENT_INNER_ADDR
	local b=$1 r proto port from
	echo "[firewall]"
	echo "default_inbound = \"deny\""
	for r in \
		'tcp|22|any' 'tcp|80|any' 'tcp|443|any' 'udp|53|any' 'udp|123|any' \
		'tcp|8000-8100|any' 'tcp|5201|cidr:10.98.0.0/16' 'udp|5201|cidr:10.98.0.0/16' \
		'tcp|3000-3999|cidr:10.99.0.0/24' 'tcp|5432|cidr:10.99.0.0/24' "tcp|6379|cidr:$b/32" \
		'udp|51820|any' 'tcp|9090-9100|cidr:10.99.0.0/24' 'tcp|5201|cidr:192.0.2.0/24' \
		'udp|5000-5200|cidr:10.99.0.0/24' 'tcp|5202-6000|cidr:10.99.0.0/24' 'any|5300-5400|any' \
		"udp|$IPERF_PORT|cidr:$b/32" "icmp|any|cidr:$b/32" "tcp|$IPERF_PORT|cidr:$b/32"; do
		IFS='|' read -r proto port from <<<"$r"
		echo "[[firewall.inbound]]"
		echo "proto = \"$proto\""
		echo "port = \"$port\""
		echo "from = [\"$from\"]"
	done
}
ANTQ_FW_RULES=20
antqfw_setup() {
	antq_setup
	antq_fw_rules "$INNER_B" >>"$TMP/antq/a.toml"
}
antqfw_infra_start() { antq_infra_start; }
antqfw_start() { antq_daemons antqfw "$1"; }
antqfw_started() { antq_started; }
antqfw_check() { # the rules are in force: the table has them all
	local n
	n=$(nsx "$S_NS" "$ANTQ_BIN" status --json -i antqA 2>/dev/null |
		jq -r '(if type == "array" then .[0] else . end).firewall.rules | length' 2>/dev/null || true)
	if [[ $n == "$ANTQ_FW_RULES" ]]; then
		rec "$SCEN" antq-fw fw_rules "$n"
	else
		rec "$SCEN" antq-fw fw_rules '"missing"'
		log "warning: A's firewall has ${n:-no} rules, not $ANTQ_FW_RULES"
	fi
}
# After the measurements: how A's firewall let the traffic in (the last
# rule, the connection table) and what it dropped.
antqfw_done() {
	local j v k
	j=$(nsx "$S_NS" "$ANTQ_BIN" status --json -i antqA 2>/dev/null |
		jq -c '(if type == "array" then .[0] else . end).firewall' 2>/dev/null || true)
	[[ -n $j && $j != null ]] || return 0
	for k in "fw_rule_last_packets:.rules[-1].hits" "fw_rule_udp_packets:.rules[-3].hits" \
		"fw_rule_icmp_packets:.rules[-2].hits" "fw_tracked_packets:.counters.tracked" \
		"fw_dropped_packets:.dropped" "fw_tracked_flows:.tracked_flows"; do
		v=$(jq -r "${k#*:} // empty" <<<"$j" 2>/dev/null || true)
		[[ -n $v ]] && rec "$SCEN" antq-fw "${k%%:*}" "$v"
	done
	log "  antq-fw on A: rule $ANTQ_FW_RULES (tcp) let in $(get "$SCEN" antq-fw fw_rule_last_packets), rule 18 (udp) $(get "$SCEN" antq-fw fw_rule_udp_packets), rule 19 (icmp) $(get "$SCEN" antq-fw fw_rule_icmp_packets); connection table $(get "$SCEN" antq-fw fw_tracked_packets); dropped $(get "$SCEN" antq-fw fw_dropped_packets)"
}

# ---------------------------------------------------------------- driver
INFRA=()
fn_of() { # SYS -> function prefix
	case $1 in
	wireguard-go) echo wg ;;
	nebula) echo neb ;;
	antq) echo antq ;;
	antq-fw) echo antqfw ;;
	esac
}

lab_flush() {
	((IN_LAB)) || return 0
	local l
	for l in a b; do "$LAB" flush-conntrack --prefix "$LAB_PREFIX" "r$l" >/dev/null 2>&1 || true; done
}

# NAT lab: did the traffic flow directly between the hosts or through boot?
# Router B (always a NAT) has a replied UDP flow from host B to a peer other
# than boot only when a direct path is in use.
lab_path() { # SYS
	((IN_LAB)) || return 0
	local ct p=relayed
	ct=$(nsx "$ROUTER_B_NS" conntrack -L -p udp 2>/dev/null || true)
	if awk -v h="$HOST_B_LAN4" -v b1="$BOOT_IP4" -v b2="$BOOT_IP4_ALT" '
		/UNREPLIED/ {next}
		{ n=0; for (i=1;i<=NF;i++) if ($i ~ /^(src|dst)=/) { n++; split($i,kv,"="); f[n]=kv[2] } }
		n>=2 && f[1]==h && f[2]!=b1 && f[2]!=b2 {found=1}
		END {exit !found}' <<<"$ct"; then p=direct; fi
	rec nat "$1" path "\"$p\""
	log "  $1 path: $p"
}

# Bring the tunnel up RUNS times (time to first ping each run), leave the
# last one up and measure over it.  FULL=1: also 4 streams and UDP.
measure_tunnel() { # SYS FULL
	local sys=$1 full=$2 f run t t0 ok=0
	f=$(fn_of "$sys")
	log "[$SCEN] $sys"
	"${f}_setup"
	INFRA=()
	if ! "${f}_infra_start"; then
		rec "$SCEN" "$sys" status '"infra failed"'
		((${#INFRA[@]})) && stop_pids "${INFRA[@]}"
		INFRA=()
		return 0
	fi
	local -a times=()
	local med
	ANTQ_DIRECT_MS=()
	for ((run = 1; run <= RUNS; run++)); do
		lab_flush
		t0=$(now)
		"${f}_start" "$run"
		if first_ping_ms "$C_NS" "$INNER_A" "$t0"; then
			t=$FP_MS
			times+=("$t")
			ok=1
			log "  $sys run $run: first ping after $t ms"
		else
			log "  $sys run $run: no ping reply within ${TTFP_TIMEOUT}s"
			times+=("null")
			if ((!ok)); then
				"${f}_started" || true
				break # never came up: do not wait through the other runs
			fi
		fi
		"${f}_started" || log "  $sys run $run: configuration step failed"
		if ((run < RUNS)); then
			stop_daemons
		fi
	done
	rec "$SCEN" "$sys" first_ping_runs_ms "[$(
		IFS=,
		echo "${times[*]}"
	)]"
	if ((${#ANTQ_DIRECT_MS[@]})); then
		rec "$SCEN" "$sys" first_direct_runs_ms "[$(
			IFS=,
			echo "${ANTQ_DIRECT_MS[*]}"
		)]"
		med=$(printf '%s\n' "${ANTQ_DIRECT_MS[@]}" | grep -v null | median || true)
		[[ -n $med ]] && rec "$SCEN" "$sys" first_direct_median_ms "$med"
	fi
	med=$(printf '%s\n' "${times[@]}" | grep -v null | median || true)
	if [[ -n $med ]]; then
		rec "$SCEN" "$sys" first_ping_median_ms "$med"
		rec "$SCEN" "$sys" first_ping_min_ms "$(printf '%s\n' "${times[@]}" | grep -v null | sort -g | head -n1)"
	else
		rec "$SCEN" "$sys" first_ping_median_ms '"timeout"'
	fi
	if ((ok)) && nsx "$C_NS" ping -n -c1 -W 2 -q "$INNER_A" >/dev/null 2>&1; then
		rec "$SCEN" "$sys" status '"ok"'
		"${f}_check"
		measure_ping "$SCEN" "$sys" "$C_NS" "$INNER_A"
		measure_tcp "$SCEN" "$sys" "$C_NS" "$INNER_A" 1 tcp1_mbps
		lab_path "$sys"
		if ((full)); then
			measure_tcp "$SCEN" "$sys" "$C_NS" "$INNER_A" 4 tcp4_mbps
			measure_udp "$SCEN" "$sys" "$C_NS" "$INNER_A"
		fi
		if declare -F "${f}_done" >/dev/null; then "${f}_done"; fi
	else
		rec "$SCEN" "$sys" status '"tunnel down"'
		log "  $sys: tunnel did not come up; last logs:"
		tail -n 5 "$TMP/$f"-[ab]-"$RUNS".log 2>/dev/null | sed 's/^/    /' >&2 || true
	fi
	stop_daemons
	((${#INFRA[@]})) && stop_pids "${INFRA[@]}"
	INFRA=()
	rm -rf "${TMP:?}/$f" "${TMP:?}/nebula"
}

scenario_veth() {
	SCEN=veth S_NS=$NS_A C_NS=$NS_B S_UL=$OUTER_A C_UL=$OUTER_B BOOT_NS="" BOOT_UL="" IN_LAB=0
	echo
	log "scenario veth: building $NS_A <-> $NS_B"
	veth_up
	start_iperf_server "$NS_A"
	local sys
	for sys in $ONLY; do
		if [[ -n ${UNAVAIL[$sys]} ]]; then
			rec veth "$sys" status "$(jstr "${UNAVAIL[$sys]}")"
			continue
		fi
		if [[ $sys == veth ]]; then
			log "[veth] raw veth (outer addresses)"
			rec veth veth status '"ok"'
			measure_ping veth veth "$NS_B" "$OUTER_A"
			measure_tcp veth veth "$NS_B" "$OUTER_A" 1 tcp1_mbps
			measure_tcp veth veth "$NS_B" "$OUTER_A" 4 tcp4_mbps
			measure_udp veth veth "$NS_B" "$OUTER_A"
		elif [[ $sys == socat ]]; then
			measure_socat
		else
			measure_tunnel "$sys" 1
		fi
	done
	stop_iperf_servers
	del_ns "$NS_A"
	del_ns "$NS_B"
}

lab_up() { # KINDS
	LAB_USED=1
	"$LAB" up --prefix "$LAB_PREFIX" --hosts "$1" >/dev/null 2>"$TMP/lab.log" || {
		cat "$TMP/lab.log" >&2
		die "lab.sh up failed"
	}
	# shellcheck disable=SC1090
	source "/run/antq-lab/$LAB_PREFIX.env"
	# shellcheck disable=SC2153 # set by the state file
	S_NS=$HOST_A_NS C_NS=$HOST_B_NS BOOT_UL=$BOOT_IP4 # BOOT_NS comes from the state file too
	S_UL=$HOST_A_LAN4 # only reachable from outside for kind none
	C_UL=""           # B is always behind a NAT here
	start_iperf_server "$S_NS"
}

lab_down() {
	stop_iperf_servers
	"$LAB" down --prefix "$LAB_PREFIX" >/dev/null 2>&1 || true
}

scenario_nat() {
	SCEN=nat IN_LAB=1
	echo
	local sys
	for sys in $ONLY; do
		[[ $sys == veth || $sys == socat || $sys == antq-fw ]] && continue
		if [[ -n ${UNAVAIL[$sys]} ]]; then
			rec nat "$sys" status "$(jstr "${UNAVAIL[$sys]}")"
			continue
		fi
		if [[ $sys == wireguard-go ]]; then
			# WireGuard has no NAT traversal: A must be public (kind none), B behind
			# a home NAT with a keepalive; no bootstrap involved.
			log "scenario nat: lab $LAB_PREFIX none,home"
			lab_up none,home
			rec nat "$sys" lab '"none,home (A public, B behind NAT; WireGuard cannot traverse two NATs)"'
			BOOT_NS="" BOOT_UL=""
		else
			log "scenario nat: lab $LAB_PREFIX home,home"
			lab_up home,home
			if [[ $sys == nebula ]]; then
				rec nat "$sys" lab '"home,home (lighthouse in boot, punchy)"'
			else
				rec nat "$sys" lab '"home,home (bootstrap in boot)"'
			fi
		fi
		measure_tunnel "$sys" 0
		lab_down
	done
}

# ---------------------------------------------------------------- report
fmt_val() { # raw JSON value -> cell text
	local v=$1
	[[ -z $v ]] && { echo "-"; return; }
	v=${v#\"}
	v=${v%\"}
	echo "$v"
}

is_num() { [[ $1 =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; }

ratio() { # A B -> A/B or -
	if is_num "$1" && is_num "$2" && [[ $(awk -v b="$2" 'BEGIN{print (b!=0)}') == 1 ]]; then
		awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'
	else
		echo "-"
	fi
}

print_table() { # SCEN "SYS..." "KEY:LABEL..."
	local scen=$1 systems=$2 metrics=$3 sys m key label w=17 c
	local -a cols=()
	for sys in $systems; do cols+=("$sys"); done
	printf '%-24s' "metric"
	for sys in "${cols[@]}"; do printf ' %*s' $w "$sys"; done
	printf ' %*s %*s\n' 11 "antq/wg-go" 11 "antq/nebula"
	# status row: why a column is empty
	printf '%-24s' "status"
	for sys in "${cols[@]}"; do
		c=$(fmt_val "$(get "$scen" "$sys" status)")
		printf ' %*s' $w "${c:0:$w}"
	done
	echo
	for m in $metrics; do
		key=${m%%:*} label=${m#*:}
		printf '%-24s' "${label//_/ }"
		local a wgv nb
		for sys in "${cols[@]}"; do
			if [[ $sys == veth && $key == first_ping_* ]]; then c="-"; else c=$(fmt_val "$(get "$scen" "$sys" "$key")"); fi
			printf ' %*s' $w "${c:0:$w}"
		done
		a=$(fmt_val "$(get "$scen" antq "$key")")
		wgv=$(fmt_val "$(get "$scen" wireguard-go "$key")")
		nb=$(fmt_val "$(get "$scen" nebula "$key")")
		printf ' %*s %*s\n' 11 "$(ratio "$a" "$wgv")" 11 "$(ratio "$a" "$nb")"
	done
}

# antq-tun without (antq) and with (antq-fw) the firewall: values and ratio.
print_fw_table() {
	local m key label off on w=12
	printf '%-28s %*s %*s %*s\n' metric $w "fw off" $w "fw on" $w "on/off"
	for m in "first_ping_median_ms:first_ping_ms_(median)" tcp1_mbps:TCP_1_stream_Mbit/s \
		tcp4_mbps:TCP_4_streams_Mbit/s "udp_loss_pct:UDP_${UDP_RATE}_loss_%" \
		rtt_median_ms:ping_RTT_median_ms rtt_added_ms:RTT_added_over_veth_ms; do
		key=${m%%:*} label=${m#*:}
		off=$(fmt_val "$(get veth antq "$key")")
		on=$(fmt_val "$(get veth antq-fw "$key")")
		printf '%-28s %*s %*s %*s\n' "${label//_/ }" $w "$off" $w "$on" $w "$(ratio "$on" "$off")"
	done
	for m in "fw_rule_last_packets:let in by rule $ANTQ_FW_RULES (tcp)" "fw_tracked_packets:passed by conn. table" \
		"fw_dropped_packets:dropped"; do
		key=${m%%:*} label=${m#*:}
		printf '%-28s %*s %*s\n' "$label" $w "-" $w "$(fmt_val "$(get veth antq-fw "$key")")"
	done
}

# Added RTT of each tunnel: its median minus raw veth's, same run.
derive_added_rtt() {
	local base sys v
	base=$(get veth veth rtt_median_ms)
	is_num "$base" || return 0
	for sys in $ALL_SYSTEMS; do
		[[ $sys == veth ]] && continue
		v=$(get veth "$sys" rtt_median_ms)
		is_num "$v" && rec veth "$sys" rtt_added_ms "$(awk -v a="$v" -v b="$base" 'BEGIN{printf "%.3f", a-b}')"
	done
	return 0
}

report() {
	local systems="" s
	for s in $ALL_SYSTEMS; do want "$s" && systems+=" $s"; done
	if want_scen veth; then
		echo
		echo "== scenario veth: $NS_A <-> $NS_B, one veth pair, no NAT (iperf3 ${DUR}s, B -> A)"
		print_table veth "$systems" "first_ping_median_ms:first_ping_ms_(median) first_ping_min_ms:first_ping_ms_(min) tcp1_mbps:TCP_1_stream_Mbit/s \
tcp4_mbps:TCP_4_streams_Mbit/s udp_loss_pct:UDP_${UDP_RATE}_loss_% udp_recv_mbps:UDP_received_Mbit/s \
rtt_median_ms:ping_RTT_median_ms rtt_added_ms:RTT_added_over_veth_ms rtt_min_ms:ping_RTT_min_ms rtt_max_ms:ping_RTT_max_ms rtt_mdev_ms:ping_RTT_mdev_ms"
	fi
	if want_scen nat; then
		systems=""
		for s in wireguard-go nebula antq; do want "$s" && systems+=" $s"; done
		if [[ -n $systems ]]; then
			echo
			echo "== scenario nat: lab $LAB_PREFIX (wireguard-go: none,home; nebula, antq: home,home)"
			print_table nat "$systems" "first_ping_median_ms:first_ping_ms_(median) first_ping_min_ms:first_ping_ms_(min) \
first_direct_median_ms:direct_path_ms_(median) tcp1_mbps:TCP_1_stream_Mbit/s rtt_median_ms:ping_RTT_median_ms path:path"
		fi
	fi
	if want_scen veth && want antq && want antq-fw; then
		echo
		echo "== firewall: antq-tun without and with $ANTQ_FW_RULES inbound rules on A (TCP matches the last), same run"
		print_fw_table
	fi
	echo
	echo "first ping: from starting both daemons to the first echo reply B -> A, median of $RUNS runs."
	echo "ratios: antq value / other value (for RTT, loss and first ping, lower is better)."
	if want socat; then echo "socat: TUN <-> UDP with no encryption, one thread: the least a userspace tunnel adds here."; fi
}

write_json() {
	jq -R -n '
		[inputs | split("\t")]
		| reduce .[] as [$s, $y, $k, $v] ({};
			if $s == "meta" then .meta[$k] = ($v | fromjson)
			else .scenarios[$s][$y][$k] = ($v | fromjson) end)' <"$RES" >"$OUT.tmp"
	mv "$OUT.tmp" "$OUT"
	echo "results: $OUT"
}

# ---------------------------------------------------------------- main
START=$(now)
install_deps
check_systems
print_versions
want_scen veth && scenario_veth
want_scen nat && scenario_nat
derive_added_rtt
rec meta - runtime_s "$(awk -v a="$START" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}')"
report
write_json
