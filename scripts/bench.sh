#!/usr/bin/env bash
# antq benchmarks: throughput, loss, latency, time-to-first-packet and CPU
# per GB of raw veth, userspace WireGuard (wireguard-go from bookworm,
# wireguard-go-new from bookworm-backports, boringtun), Nebula, tinc, fastd,
# OpenVPN, quincy and antq-tun, measured between network namespaces that
# this script builds (and always tears down).  On the veth, socat moving
# packets between a TUN device and a UDP socket (no encryption, no framing)
# gives the latency floor of any userspace tunnel on the machine.
#
# usage: bench.sh [--quick] [--only SYS[,SYS...]] [--scenarios veth,nat,relay]
#                 [--prefix P] [--antq-bin PATH] [--out FILE]
#   systems: veth socat wireguard-go wireguard-go-new boringtun nebula tinc
#            fastd openvpn quincy antq antq-fw (default: all)
#   scenarios: default veth,nat; relay on request
#   --prefix P (or BENCH_PREFIX=P): namespaces PA, PB and lab Plab, interface
#            names P... (default bn: bnA, bnB, bnlab), so that two runs with
#            different prefixes do not collide
#   ANTQ_MTU=N: antq-tun's `mtu` (default: its own, 1280), to measure the
#            effect of a larger overlay MTU
#
# Each system lives in scripts/bench/SYS.sh (setup, start, checks; see
# "systems" below); this file is the driver: arguments, installs, scenarios,
# measurements, report.  Missing tools are installed: Debian packages by
# apt-get; quincy-client/quincy-server and boringtun-cli by cargo install
# --locked --root $BENCH_CACHE/cargo (default /var/cache/antq-bench/cargo;
# minutes on the first run); wireguard-go-new by apt-get download from
# bookworm-backports through private apt lists in $BENCH_CACHE/apt (the
# system's sources are not touched).  A system that cannot run gets the
# reason in its column; the run goes on.
#
# System "antq-fw" (veth scenario only): antq-tun again, with a [firewall]
# of 20 inbound rules on A (the iperf3 server) that B's traffic matches only
# at the end of the table: UDP to 5201 at rule 18, ICMP at 19, TCP to 5201 at
# rule 20 (rules 1-17 name other ports or other sources).  With "antq" in
# the same run, a table compares the two (fw on / fw off).
#
# Scenario "veth": namespaces bnA and bnB joined by one veth pair
# (198.18.1.1/24 - 198.18.1.2/24), tunnel inner addresses 10.99.0.1/24 (A,
# server side) and 10.99.0.2/24 (B, client side).  Every system: time to
# first ping, TCP 1 and 4 streams, UDP at 200 Mbit/s, ping RTT (median of
# 200 pings 10 ms apart), CPU seconds per GB during the TCP runs; ratios
# antq / each system and each system / raw veth.
# Scenario "nat": the NAT lab (scripts/lab.sh, prefix bnlab); see README.md.
# Scenario "relay": the NAT lab with two symmetric NATs, nothing can punch:
# antq through the bootstrap's relay at its default limits (antq) and with
# them raised (antq-relay-max), Nebula through its lighthouse (am_relay):
# TCP 1 stream, retransmits, CPU per GB of both ends and of the relay, and
# the path checked (antq-tun status; router B's conntrack).
#
# CPU s per GB: user+system time from /proc/PID/stat (all threads) of the
# tunnel's processes on both ends over the iperf3 run, per GB received.
# Kernel softirq work (veth, GRO, UDP receive) is charged to no process and
# is not counted.
#
# Network rules: traffic only on loopback or between namespaces built here;
# nothing is created in or changed in the root namespace.  Root only.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
LAB=$HERE/lab.sh

# ---------------------------------------------------------------- settings
PFX=${BENCH_PREFIX:-bn} # names: namespaces PFXA, PFXB, lab PFXlab, interfaces PFX...
OUTER_A=198.18.1.1
OUTER_B=198.18.1.2
INNER_A=10.99.0.1
INNER_B=10.99.0.2
INNER_BOOT=10.99.0.254 # nebula lighthouse in the NAT lab
IPERF_PORT=5201
UDP_RATE=200M
UDP_LEN=1200
PING_COUNT=200
TTFP_TIMEOUT=${BENCH_TTFP_TIMEOUT:-20} # s: give up waiting for the first ping reply
ALL_SYSTEMS="veth socat wireguard-go wireguard-go-new boringtun nebula tinc fastd openvpn quincy antq antq-fw"

QUICK=0
ONLY=$ALL_SYSTEMS
SCENARIOS="veth nat"
ANTQ_BIN=""
CACHE=${BENCH_CACHE:-/var/cache/antq-bench} # cargo installs, the newer wireguard-go
CARGO_ROOT=$CACHE/cargo
CLK_TCK=$(getconf CLK_TCK)
OUT=bench-results.json

usage() {
	cat <<EOF
usage: bench.sh [--quick] [--only SYS[,SYS...]] [--scenarios veth,nat,relay]
                [--prefix P] [--antq-bin PATH] [--out FILE]
  systems: ${ALL_SYSTEMS// /, }
  antq-fw: antq-tun with 20 firewall rules on the receiving side (veth only)
  scenarios: veth, nat (default both), relay (two symmetric NATs: antq,
               antq with raised relay limits, nebula)
  --prefix     names: namespaces PA, PB, lab Plab (default bn; env BENCH_PREFIX)
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
	--prefix) PFX=${2:?--prefix needs a value}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
[[ $PFX =~ ^[a-z][a-z0-9]{0,5}$ ]] || die "bad prefix '$PFX' ([a-z][a-z0-9]*, at most 6 characters)"
NS_A=${PFX}A
NS_B=${PFX}B
LAB_PREFIX=${PFX}lab
# antq-tun's control socket is named after the interface (shared by all
# namespaces): the default prefix keeps the names antqA/antqB
ANTQ_IF_A=antqA ANTQ_IF_B=antqB
[[ $PFX == bn ]] || ANTQ_IF_A=${PFX}antqA ANTQ_IF_B=${PFX}antqB
for s in $ONLY; do [[ " $ALL_SYSTEMS " == *" $s "* ]] || die "unknown system '$s' (systems: $ALL_SYSTEMS)"; done
for s in $SCENARIOS; do [[ $s == veth || $s == nat || $s == relay ]] || die "unknown scenario '$s' (veth, nat, relay)"; done
[[ $EUID -eq 0 ]] || die "must run as root"
[[ -d $HOME/.cargo/bin && ":$PATH:" != *":$HOME/.cargo/bin:"* ]] && PATH=$PATH:$HOME/.cargo/bin

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
BG_PID=""

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
	[[ -n $BG_PID ]] && stop_pids "$BG_PID" # an iperf3 client, ping or cargo install
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
# Each system's file (scripts/bench/SYS.sh, function prefix fn_of SYS) may
# define FN_pkgs (lines "COMMAND DEBIAN_PACKAGE" it needs), FN_install (other
# installs: cargo, apt-get download), and defines FN_avail (prints why it
# cannot run, or nothing) and FN_versions (lines "NAME<TAB>VERSION").
fn_of() { # SYS -> function prefix
	case $1 in
	veth | socat | nebula | antq | tinc | fastd) echo "${1/nebula/neb}" ;;
	wireguard-go) echo wg ;;
	wireguard-go-new) echo wgn ;;
	boringtun) echo btun ;;
	quincy) echo qcy ;;
	openvpn) echo ovpn ;;
	antq-fw) echo antqfw ;;
	antq-relay-max) echo antqrx ;;
	esac
}
# the systems this run may start (antq-relay-max comes with antq in the relay scenario)
run_systems() {
	local s
	for s in $ONLY; do echo "$s"; done
	want_scen relay && want antq && echo antq-relay-max
	true
}

# cargo install --locked CRATE... into $CARGO_ROOT, when a binary is missing
declare -A CARGO_FAIL=()
cargo_install() {
	local c need=0
	for c in "$@"; do [[ -x $CARGO_ROOT/bin/$c ]] || need=1; done
	((need)) || return 0
	if ! command -v cargo >/dev/null 2>&1; then
		for c in "$@"; do CARGO_FAIL[$c]="cargo missing"; done
		return 0
	fi
	mkdir -p "$CARGO_ROOT"
	log "cargo install --locked $* (into $CARGO_ROOT; takes minutes; log $CACHE/cargo-$1.log)"
	if ! bgrun "$CACHE/cargo-$1.log" cargo install --locked --root "$CARGO_ROOT" "$@"; then
		for c in "$@"; do CARGO_FAIL[$c]="cargo install failed"; done
		log "cargo install $* failed: see $CACHE/cargo-$1.log"
	fi
}

cargo_version() { # CRATE -> version installed in $CARGO_ROOT
	jq -r --arg c "$1" '.installs | keys[] | split(" ") | select(.[0] == $c) | .[1]' \
		"$CARGO_ROOT/.crates2.json" 2>/dev/null | head -n1
}

declare -A HAVE=()
install_deps() {
	local -A pkg_of=([ip]=iproute2 [ss]=iproute2 [iperf3]=iperf3 [ping]=iputils-ping [jq]=jq
		[timeout]=coreutils [awk]=gawk [nstat]=iproute2)
	if want_scen nat || want_scen relay; then pkg_of[conntrack]=conntrack; fi
	local -A missing=()
	local c p sys f
	for sys in $(run_systems); do
		f=$(fn_of "$sys")
		if declare -F "${f}_pkgs" >/dev/null; then
			while read -r c p; do pkg_of[$c]=$p; done < <("${f}_pkgs")
		fi
	done
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
	for sys in $(run_systems); do
		f=$(fn_of "$sys")
		if declare -F "${f}_install" >/dev/null; then "${f}_install" || true; fi
	done
}

# SYS -> "" when usable, else the reason shown in its column
declare -A UNAVAIL=()
check_systems() {
	local sys
	antq_resolve_bin
	for sys in $(run_systems); do
		UNAVAIL[$sys]=$("$(fn_of "$sys")_avail" || true)
	done
}

print_versions() {
	local sys k v
	echo "== versions"
	printf '  %-16s %s\n' kernel "$(uname -r)"
	printf '  %-16s %s\n' iperf3 "$(iperf3 --version 2>&1 | head -n1)"
	rec meta - kernel "$(jstr "$(uname -r)")"
	rec meta - iperf3 "$(jstr "$(iperf3 --version 2>&1 | head -n1)")"
	for sys in $(run_systems); do
		if [[ -n ${UNAVAIL[$sys]} ]]; then
			printf '  %-16s %s\n' "$sys" "${UNAVAIL[$sys]}"
			rec meta - "$sys" "$(jstr "${UNAVAIL[$sys]}")"
			continue
		fi
		while IFS=$'\t' read -r k v; do
			[[ -n $k ]] || continue
			printf '  %-16s %s\n' "$k" "$v"
			rec meta - "$k" "$(jstr "$v")"
		done < <("$(fn_of "$sys")_versions")
	done
	printf '  %-16s %s\n' cpus "$(nproc)"
	rec meta - cpus "$(nproc)"
	rec meta - quick "$QUICK"
	rec meta - iperf_seconds "$DUR"
	rec meta - ttfp_runs "$RUNS"
	rec meta - prefix "$(jstr "$PFX")"
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
	local out=$1 rc=0
	shift
	"$@" >"$out" 2>/dev/null &
	BG_PID=$!
	wait $! || rc=$?
	BG_PID=""
	return $rc
}

# iperf3 client; the JSON lands in $TMP/iperf.json (empty on failure)
iperf_json() { # NS DST ARGS...
	local ns=$1 dst=$2
	shift 2
	bgrun "$TMP/iperf.json" ip netns exec "$ns" timeout $((DUR + 20)) \
		iperf3 -c "$dst" -p "$IPERF_PORT" -t "$DUR" -J "$@" || true
}

# CPU time (user + system, in clock ticks) of processes and all their
# descendants: /proc/PID/stat counts all threads of a process (and the
# children it has reaped).  Kernel work done in softirq context (the veth,
# the TUN device's GRO, the UDP stack on receive) is charged to no process
# and is not in these numbers.
proc_tree() { # PID... -> the pids and their descendants
	local p c
	for p in "$@"; do
		[[ -d /proc/$p ]] || continue
		echo "$p"
		# shellcheck disable=SC2013 # one pid per word
		for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do proc_tree "$c"; done
	done
}
cpu_ticks() { # PID... -> utime+stime+cutime+cstime summed over the trees
	local p st t=0
	local -a f
	for p in $(proc_tree "$@"); do
		st=$(<"/proc/$p/stat") 2>/dev/null || continue
		read -r -a f <<<"${st##*) }"
		t=$((t + f[11] + f[12] + f[13] + f[14]))
	done
	echo "$t"
}
udp_drops() { # NS -> UDP datagrams dropped for a full receive buffer in the namespace
	# shellcheck disable=SC2016 # awk's $
	nsx "$1" awk '/^Udp:/ { if (!h) { for (i=1;i<=NF;i++) c[$i]=i; h=1 } else print $c["RcvbufErrors"] }' /proc/net/snmp
}
tcp_snmp() { # NS -> "OutSegs RetransSegs" of the namespace
	# shellcheck disable=SC2016 # awk's $
	nsx "$1" awk '/^Tcp:/ { if (!h) { for (i=1;i<=NF;i++) c[$i]=i; h=1 } else print $c["OutSegs"], $c["RetransSegs"] }' /proc/net/snmp
}

measure_tcp() { # SCEN SYS NS DST STREAMS KEY
	local j v k=${6%_mbps} c0=0 c1 i0=0 i1 gb s0 s1 o0 r0 o1 r1
	local -a daemons=("${DAEMONS[@]}") infra=("${INFRA[@]}")
	((${#daemons[@]})) && c0=$(cpu_ticks "${daemons[@]}")
	((${#infra[@]})) && i0=$(cpu_ticks "${infra[@]}")
	s0=$(tcp_snmp "$3")
	local u0 u1
	u0=$(udp_drops "$S_NS")
	iperf_json "$3" "$4" -P "$5"
	u1=$(udp_drops "$S_NS")
	is_num "${u0:-}" && is_num "${u1:-}" && rec "$1" "$2" "${k}_udp_rcvbuf_drops_a" "$((u1 - u0))"
	((${#daemons[@]})) && c1=$(cpu_ticks "${daemons[@]}")
	((${#infra[@]})) && i1=$(cpu_ticks "${infra[@]}")
	s1=$(tcp_snmp "$3")
	j=$(<"$TMP/iperf.json")
	v=$(jq -r '.end.sum_received.bits_per_second // empty | . / 1e6 | . * 10 | round / 10' <<<"$j" 2>/dev/null || true)
	if [[ -n $v ]]; then
		rec "$1" "$2" "$6" "$v"
		log "  $2 $6 = $v Mbit/s"
		v=$(jq -r '[.end.sum_sent.retransmits // empty] | first // empty' <<<"$j" 2>/dev/null || true)
		[[ -n $v ]] && rec "$1" "$2" "${k}_retransmits" "$v"
		# segments sent and retransmitted by the client's namespace (iperf3's
		# control connection included: a few segments)
		read -r o0 r0 <<<"$s0"
		read -r o1 r1 <<<"$s1"
		if is_num "${o1:-}" && is_num "${o0:-}" && ((o1 > o0)); then
			rec "$1" "$2" "${k}_segs_out" "$((o1 - o0))"
			rec "$1" "$2" "${k}_retrans_segs" "$((r1 - r0))"
			rec "$1" "$2" "${k}_retrans_pct" "$(awk -v r=$((r1 - r0)) -v o=$((o1 - o0)) 'BEGIN{printf "%.3f", 100*r/o}')"
		fi
		gb=$(jq -r '.end.sum_received.bytes // empty | . / 1e9' <<<"$j" 2>/dev/null || true)
		rec "$1" "$2" "${k}_gb" "$(awk -v g="$gb" 'BEGIN{printf "%.3f", g}')"
		if ((${#daemons[@]})) && is_num "$gb" && [[ $(awk -v g="$gb" 'BEGIN{print (g>0)}') == 1 ]]; then
			v=$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v g="$gb" 'BEGIN{printf "%.2f", t/hz/g}')
			rec "$1" "$2" "${k}_cpu_s" "$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" 'BEGIN{printf "%.2f", t/hz}')"
			rec "$1" "$2" "${k}_cpu_s_per_gb" "$v"
			log "  $2 $k: $v CPU s per GB (tunnel processes, both ends)"
			if ((${#infra[@]})); then
				v=$(awk -v t=$((i1 - i0)) -v hz="$CLK_TCK" -v g="$gb" 'BEGIN{printf "%.2f", t/hz/g}')
				rec "$1" "$2" "${k}_infra_cpu_s_per_gb" "$v"
				log "  $2 $k: $v CPU s per GB in the bootstrap/lighthouse (relay)"
			fi
		fi
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
first_ping_ms() { # NS DST T0 [TIMEOUT_S]
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
		done' _ "$2" "$((${3%.*} + ${4:-$TTFP_TIMEOUT}))" || return 1
	t=$(<"$TMP/fp.out")
	FP_MS=$(awk -v a="$3" -v b="$t" 'BEGIN{printf "%.1f\n", (b-a)*1000}')
}

# A CA and two certificates signed by it (EC P-256): server.{crt,key} with
# IP SAN ADDR (serverAuth), client.{crt,key} (clientAuth), ca.crt
pki_make() { # DIR ADDR
	local d=$1 n
	mkdir -p "$d"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
		-keyout "$d/ca.key" -out "$d/ca.crt" -subj /CN=antq-bench-ca >/dev/null 2>&1
	for n in server client; do
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-keyout "$d/$n.key" -out "$d/$n.csr" -subj "/CN=$n" >/dev/null 2>&1
		{
			echo "basicConstraints=CA:FALSE"
			echo "keyUsage=critical,digitalSignature,keyAgreement"
			if [[ $n == server ]]; then
				echo "extendedKeyUsage=serverAuth"
				echo "subjectAltName=IP:$2"
			else
				echo "extendedKeyUsage=clientAuth"
			fi
		} >"$d/$n.ext"
		openssl x509 -req -in "$d/$n.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 30 \
			-extfile "$d/$n.ext" -out "$d/$n.crt" >/dev/null 2>&1
	done
}

median() { # numbers on stdin
	sort -g | awk '{a[NR]=$1} END {if (NR==0) exit; if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'
}

# ---------------------------------------------------------------- topology
# Context of the current measurement (set by the scenario drivers):
#   SCEN, S_NS/C_NS (server side A / client side B), S_UL/C_UL (their underlay
#   addresses, C_UL empty when B is behind a NAT), BOOT_NS/BOOT_UL (lab only)
SCEN="" S_NS="" C_NS="" S_UL="" C_UL="" BOOT_NS="" BOOT_UL="" IN_LAB=0 CUR_SYS=""

# ---------------------------------------------------------------- systems
# One file per system in scripts/bench/: its setup, start and checks
# (FN_setup, FN_infra_start, FN_start RUN, FN_started, FN_check, FN_done).
# shellcheck source=bench/veth.sh
source "$HERE/bench/veth.sh"
# shellcheck source=bench/wireguard-go.sh
source "$HERE/bench/wireguard-go.sh"
# shellcheck source=bench/nebula.sh
source "$HERE/bench/nebula.sh"
# shellcheck source=bench/antq.sh
source "$HERE/bench/antq.sh"
# shellcheck source=bench/wireguard-go-new.sh
source "$HERE/bench/wireguard-go-new.sh"
# shellcheck source=bench/boringtun.sh
source "$HERE/bench/boringtun.sh"
# shellcheck source=bench/tinc.sh
source "$HERE/bench/tinc.sh"
# shellcheck source=bench/fastd.sh
source "$HERE/bench/fastd.sh"
# shellcheck source=bench/openvpn.sh
source "$HERE/bench/openvpn.sh"
# shellcheck source=bench/quincy.sh
source "$HERE/bench/quincy.sh"

# ---------------------------------------------------------------- driver
INFRA=()

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
	rec "$SCEN" "$1" path "\"$p\""
	log "  $1 path: $p"
}

# Bring the tunnel up RUNS times (time to first ping each run), leave the
# last one up and measure over it.  FULL=1: also 4 streams and UDP.
measure_tunnel() { # SYS FULL
	local sys=$1 full=$2 f run t t0 ok=0
	f=$(fn_of "$sys")
	CUR_SYS=$sys
	# a system may wait longer for its first reply (FN_ttfp_timeout)
	local tmo=$TTFP_TIMEOUT
	if declare -F "${f}_ttfp_timeout" >/dev/null; then tmo=$("${f}_ttfp_timeout"); fi
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
		if first_ping_ms "$C_NS" "$INNER_A" "$t0" "$tmo"; then
			t=$FP_MS
			times+=("$t")
			ok=1
			log "  $sys run $run: first ping after $t ms"
		else
			log "  $sys run $run: no ping reply within ${tmo}s"
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
	rm -rf "${TMP:?}/$f" "${TMP:?}/nebula" "${TMP:?}/wg"
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
		# the anchor systems (wireguard-go-new, boringtun, tinc, fastd, openvpn,
		# quincy) are measured on the veth only
		[[ $sys == wireguard-go || $sys == nebula || $sys == antq ]] || continue
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

# Relayed: both hosts behind symmetric NATs (no hole can be punched), the
# traffic goes through boot: antq's bootstrap relay (at its default limits,
# then raised: antq-relay-max) and Nebula's lighthouse with am_relay.
scenario_relay() {
	SCEN=relay IN_LAB=1
	echo
	local sys
	for sys in $(run_systems); do
		[[ $sys == antq || $sys == antq-relay-max || $sys == nebula ]] || continue
		if [[ -n ${UNAVAIL[$sys]} ]]; then
			rec relay "$sys" status "$(jstr "${UNAVAIL[$sys]}")"
			continue
		fi
		log "scenario relay: lab $LAB_PREFIX symmetric,symmetric"
		lab_up symmetric,symmetric
		if [[ $sys == nebula ]]; then
			rec relay "$sys" lab '"symmetric,symmetric (lighthouse in boot, am_relay)"'
		else
			rec relay "$sys" lab '"symmetric,symmetric (bootstrap in boot, relay = true)"'
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

colw() { # SYS -> column width
	local w=${#1}
	((w < 10)) && w=10
	echo "$w"
}

print_table() { # SCEN "SYS..." "KEY:LABEL..."
	local scen=$1 systems=$2 metrics=$3 sys m key label c
	local -a cols=()
	for sys in $systems; do cols+=("$sys"); done
	printf '%-30s' "metric"
	for sys in "${cols[@]}"; do printf ' %*s' "$(colw "$sys")" "$sys"; done
	echo
	# status row: why a column is empty (in full below the table)
	printf '%-30s' "status"
	for sys in "${cols[@]}"; do
		c=$(fmt_val "$(get "$scen" "$sys" status)")
		printf ' %*s' "$(colw "$sys")" "${c:0:$(colw "$sys")}"
	done
	echo
	for m in $metrics; do
		key=${m%%:*} label=${m#*:}
		printf '%-30s' "${label//_/ }"
		for sys in "${cols[@]}"; do
			if [[ $sys == veth && $key == first_ping_* ]]; then c="-"; else c=$(fmt_val "$(get "$scen" "$sys" "$key")"); fi
			printf ' %*s' "$(colw "$sys")" "${c:0:$(colw "$sys")}"
		done
		echo
	done
	for sys in "${cols[@]}"; do
		c=$(fmt_val "$(get "$scen" "$sys" status)")
		[[ $c == ok || $c == - ]] || echo "  $sys: $c"
	done
}

# veth: antq against each system, and each system against raw veth
print_ratios() { # "SYS..."
	local sys m key v a w=11
	local -a am=(tcp1_mbps tcp4_mbps tcp1_cpu_s_per_gb rtt_added_ms first_ping_median_ms) vm=(tcp1_mbps tcp4_mbps rtt_median_ms)
	printf '%-18s %*s %*s %*s %*s %*s | %*s %*s %*s\n' "" $w "antq/sys" $w "antq/sys" $w "antq/sys" $w "antq/sys" $w "antq/sys" \
		$w "sys/veth" $w "sys/veth" $w "sys/veth"
	printf '%-18s %*s %*s %*s %*s %*s | %*s %*s %*s\n' system $w "TCP 1" $w "TCP 4" $w "CPU/GB" $w "RTT added" $w "1st ping" \
		$w "TCP 1" $w "TCP 4" $w "RTT"
	for sys in $1; do
		[[ $sys == veth ]] && continue
		printf '%-18s' "$sys"
		for key in "${am[@]}"; do
			a=$(fmt_val "$(get veth antq "$key")")
			v=$(fmt_val "$(get veth "$sys" "$key")")
			if [[ $sys == antq ]]; then printf ' %*s' $w "-"; else printf ' %*s' $w "$(ratio "$a" "$v")"; fi
		done
		printf ' |'
		for key in "${vm[@]}"; do
			a=$(fmt_val "$(get veth veth "$key")")
			v=$(fmt_val "$(get veth "$sys" "$key")")
			printf ' %*s' $w "$(ratio "$v" "$a")"
		done
		echo
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
tcp4_mbps:TCP_4_streams_Mbit/s tcp1_cpu_s_per_gb:CPU_s_per_GB_(both_ends)_TCP_1 tcp4_cpu_s_per_gb:CPU_s_per_GB_(both_ends)_TCP_4 \
tcp1_retrans_pct:TCP_1_retransmitted_% tcp1_udp_rcvbuf_drops_a:TCP_1_UDP_rcvbuf_drops_(A) udp_loss_pct:UDP_${UDP_RATE}_loss_% udp_recv_mbps:UDP_received_Mbit/s \
rtt_median_ms:ping_RTT_median_ms rtt_added_ms:RTT_added_over_veth_ms rtt_min_ms:ping_RTT_min_ms rtt_max_ms:ping_RTT_max_ms rtt_mdev_ms:ping_RTT_mdev_ms"
		if want antq; then
			echo
			echo "== ratios (veth): antq / system (TCP: higher is antq better; CPU/GB, RTT, first ping: lower is); system / raw veth"
			print_ratios "$systems"
		fi
	fi
	if want_scen nat; then
		systems=""
		for s in wireguard-go nebula antq; do want "$s" && systems+=" $s"; done
		if [[ -n $systems ]]; then
			echo
			echo "== scenario nat: lab $LAB_PREFIX (wireguard-go: none,home; nebula, antq: home,home)"
			print_table nat "$systems" "first_ping_median_ms:first_ping_ms_(median) first_ping_min_ms:first_ping_ms_(min) \
first_direct_median_ms:direct_path_ms_(median) tcp1_mbps:TCP_1_stream_Mbit/s tcp1_cpu_s_per_gb:CPU_s_per_GB_(both_ends) \
rtt_median_ms:ping_RTT_median_ms path:path"
		fi
	fi
	if want_scen relay; then
		systems=""
		for s in antq antq-relay-max nebula; do [[ " $(run_systems | tr '\n' ' ') " == *" $s "* ]] && systems+=" $s"; done
		if [[ -n $systems ]]; then
			echo
			echo "== scenario relay: lab $LAB_PREFIX symmetric,symmetric, through boot (iperf3 ${DUR}s, 1 stream, B -> A)"
			echo "   antq: bootstrap relay at its default limits; antq-relay-max: limits raised to $ANTQ_RELAY_MAX_BPS B/s; nebula: lighthouse am_relay"
			print_table relay "$systems" "first_ping_median_ms:first_ping_ms_(median) tcp1_mbps:TCP_1_stream_Mbit/s \
tcp1_retransmits:TCP_retransmits_(iperf3) tcp1_segs_out:TCP_segments_sent_(B) tcp1_retrans_pct:TCP_retransmitted_% \
tcp1_cpu_s_per_gb:CPU_s_per_GB_(both_ends) tcp1_infra_cpu_s_per_gb:CPU_s_per_GB_relay_(boot) rtt_median_ms:ping_RTT_median_ms \
path:path_(router_B_conntrack) antq_status_path:path_(antq-tun_status_B)"
		fi
	fi
	if want_scen veth && want antq && want antq-fw; then
		echo
		echo "== firewall: antq-tun without and with $ANTQ_FW_RULES inbound rules on A (TCP matches the last), same run"
		print_fw_table
	fi
	echo
	echo "first ping: from starting both daemons to the first echo reply B -> A, median of $RUNS runs."
	echo "CPU s per GB: user+system CPU seconds of the tunnel's processes on both ends (all threads, /proc/PID/stat)"
	echo "  during the iperf3 TCP run, per GB received; kernel softirq work (veth, GRO, UDP receive) is in no process"
	echo "  and not counted; iperf3's own CPU is not counted."
	echo "TCP retransmitted %: RetransSegs / OutSegs of B's namespace (/proc/net/snmp) over the iperf3 run."
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
want_scen relay && scenario_relay
derive_added_rtt
rec meta - runtime_s "$(awk -v a="$START" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}')"
report
write_json
