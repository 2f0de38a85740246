#!/usr/bin/env bash
# antq NAT lab: private test networks of Linux network namespaces with real
# NAT routers (iptables).  See scripts/README.md for topology and addresses.
#
# Network rules: every namespace built here is linked only to other namespaces
# built here.  Nothing is ever created in, or changed in, the root namespace
# (veth pairs are created directly inside the lab namespaces).
set -euo pipefail

STATE_DIR=/run/antq-lab
DEFAULT_PREFIX=aqlab
KINDS="none full-cone home home-fw symmetric symmetric-range udp-blocked cgnat upnp"
LETTERS=(a b c d e f g h i j k l m n o p q r s t u v w x y z)
NET4=198.18.0      # the "internet" (RFC 2544 benchmark range), a /24
NET6=2001:db8:ff   # the "internet" IPv6 /64 (documentation range)
BOOT_HOST=10       # boot: .10 (and .11, a second "third party" address)
SYMRANGE=40000-40999
CARRIER4=100.64    # cgnat: carrier network 100.64.N.0/24 (RFC 6598 shared space)
CARRIER6=fd64      # cgnat: carrier network fd64:N::/64 (IPv6 routed, not NATed)
STUN_PORT=3470     # upnp: stund in boot on BOOT_IP4/BOOT_IP4_ALT, ports 3470 and 3471
UPNP_HTTP_PORT=5000 # upnp: miniupnpd's UPnP IGD (HTTP) port on the router's LAN address
ATTACH_NAME_RE='[a-z][a-z0-9]{2,11}' # attach: names of plain namespaces on the bridge

PREFIX=$DEFAULT_PREFIX

usage() {
	cat <<EOF
usage: lab.sh COMMAND [--prefix P] ARGS...
  deps                                  install missing tools (apt-get)
  up [--prefix P] --hosts K1[,K2...] [--delay MS]
                                        build a lab (runs 'down' first)
                                        kinds: ${KINDS// /, }
                                        (cgnat: home NAT hrX behind carrier NAT rX;
                                         home-fw: home + router drops new inbound to itself;
                                         upnp: symmetric + miniupnpd: UPnP IGD, NAT-PMP, PCP)
  down [--prefix P]                     kill processes, delete namespaces + state
  exec [--prefix P] NAME CMD...         run CMD in namespace NAME
                                        (a, b, ..., ra, rb, ..., hrb (cgnat), boot, inet)
  flush-conntrack [--prefix P] ROUTER   flush conntrack (IPv4+IPv6) in ROUTER (ra or a);
                                        for cgnat in both the carrier and the home NAT
  set-kind [--prefix P] ROUTER KIND     swap the NAT rules live, flush conntrack
                                        (not to or from cgnat: fixed at 'up')
  renumber [--prefix P] HOST [N]        move HOST to LAN address .N (default: next)
  renumber-wan [--prefix P] ROUTER [N]  give a NAT router public address .N (default: +100)
  attach [--prefix P] NAME ADDR/LEN... [--route NET]...
                                        a plain namespace P-NAME on the inet bridge with
                                        these addresses; each NET is routed to it from
                                        inet, boot and the routers (NAME: [a-z][a-z0-9]{2,11})
  status [--prefix P]                   show namespaces and the state file
Default prefix: $DEFAULT_PREFIX.  State file: $STATE_DIR/PREFIX.env
EOF
}

die() {
	echo "lab.sh: $*" >&2
	exit 1
}
log() { echo "lab.sh: $*" >&2; }

need_root() { [[ $EUID -eq 0 ]] || die "must run as root"; }

check_prefix() {
	[[ $PREFIX =~ ^[A-Za-z0-9_-]{1,24}$ ]] || die "bad prefix '$PREFIX' (use [A-Za-z0-9_-], at most 24 chars)"
}

state_file() { echo "$STATE_DIR/$PREFIX.env"; }

# ---------------------------------------------------------------- deps
# cmd_deps [base|all]: base = what every lab needs; all (the 'deps' command,
# and 'up'/'set-kind' with kind upnp) adds miniupnpd, stund and the clients
cmd_deps() {
	local -A pkg_of=([ip]=iproute2 [tc]=iproute2 [iptables]=iptables [ip6tables]=iptables
		[conntrack]=conntrack [iperf3]=iperf3 [curl]=curl [python3]=python3
		[ps]=procps [sysctl]=procps [nft]=nftables [dig]=bind9-dnsutils)
	if [[ ${1:-all} == all ]]; then
		pkg_of+=([iptables-legacy]=iptables [ip6tables-legacy]=iptables
			[miniupnpd]=miniupnpd-iptables [stund]=stun-server [natpmpc]=natpmpc [upnpc]=miniupnpc)
	fi
	local -A want=()
	local c
	for c in "${!pkg_of[@]}"; do
		command -v "$c" >/dev/null 2>&1 || want[${pkg_of[$c]}]=1
	done
	((${#want[@]} == 0)) && return 0
	need_root
	command -v apt-get >/dev/null 2>&1 || die "missing packages (${!want[*]}) and no apt-get"
	log "installing ${!want[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# The lab runs miniupnpd and stund inside its own namespaces only; a copy
	# started as a system service in the root namespace would answer on the
	# machine's real networks. miniupnpd-iptables itself ships no service
	# (the unit and the debconf questions are in package miniupnpd, which is
	# not installed here, but preseeded in case apt brings it along:
	# start_daemon=false, no question asked). stun-server ships
	# /etc/init.d/stun, which starts nothing unless /etc/default/stun says
	# START_DAEMON=true. On top of that, a policy-rc.d (only if the machine
	# has none; removed right after) keeps invoke-rc.d from starting
	# anything during the install, and under systemd both units are
	# disabled and stopped afterwards.
	if command -v debconf-set-selections >/dev/null 2>&1; then
		debconf-set-selections <<-EOF
			miniupnpd miniupnpd/start_daemon boolean false
			miniupnpd miniupnpd/listen string
			miniupnpd miniupnpd/iface string
			miniupnpd miniupnpd/ip6script boolean false
		EOF
	fi
	local rcd=/usr/sbin/policy-rc.d ours=""
	if [[ ! -e $rcd ]]; then
		printf '#!/bin/sh\n# scripts/lab.sh deps: no service starts during the install\nexit 101\n' >"$rcd"
		chmod 755 "$rcd"
		ours=1
	fi
	local rc=0
	if ! apt-get install -y -qq --no-install-recommends "${!want[@]}" >/dev/null 2>&1; then
		apt-get update -qq >/dev/null || true
		apt-get install -y -qq --no-install-recommends "${!want[@]}" >/dev/null || rc=$?
	fi
	[[ -z $ours ]] || rm -f "$rcd"
	((rc == 0)) || die "apt-get install ${!want[*]} failed"
	# Under systemd: make sure the units stay disabled and stopped.
	if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
		systemctl disable --now miniupnpd.service stun.service >/dev/null 2>&1 || true
	fi
}

# ---------------------------------------------------------------- helpers
nsx() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}

ns_exists() { [[ -e /run/netns/$1 ]]; }

# Lab namespaces of $PREFIX currently present.
lab_namespaces() {
	local name
	ip netns list 2>/dev/null | while read -r name _; do
		if [[ $name =~ ^${PREFIX}-(inet|boot|r?[a-z]|hr[a-z]|$ATTACH_NAME_RE)$ ]]; then echo "$name"; fi
	done
}

# Namespace for a short NAME (a, ra, hra, boot, inet) or a full lab namespace name.
resolve_ns() {
	local n=$1
	if [[ $n =~ ^(inet|boot|r?[a-z]|hr[a-z]|$ATTACH_NAME_RE)$ ]] && ns_exists "$PREFIX-$n"; then
		echo "$PREFIX-$n"
	elif [[ $n == "$PREFIX"-* ]] && ns_exists "$n"; then
		echo "$n"
	else
		die "no namespace '$n' in lab '$PREFIX'"
	fi
}

# Host letter for a router or host NAME (ra, a, P-ra, P-a).
router_letter() {
	local n=${1#"$PREFIX"-}
	[[ $n =~ ^r?([a-z])$ ]] || die "'$1' is not a router/host name"
	echo "${BASH_REMATCH[1]}"
}

upper() { echo "${1^^}"; }

idx_of() { # letter -> 0-based index
	local l=$1 i
	for i in "${!LETTERS[@]}"; do [[ ${LETTERS[$i]} == "$l" ]] && {
		echo "$i"
		return
	}; done
	die "bad host letter '$l'"
}

load_state() {
	local f
	f=$(state_file)
	[[ -r $f ]] || die "no state file $f (is lab '$PREFIX' up?)"
	# shellcheck disable=SC1090
	source "$f"
}

state_set() { # KEY VALUE: replace a line of the state file
	local f tmp
	f=$(state_file)
	tmp=$(mktemp "$f.XXXXXX")
	grep -v "^$1=" "$f" >"$tmp" || true
	echo "$1=$2" >>"$tmp"
	mv "$tmp" "$f"
}

base_sysctls() { # NS FORWARD(0|1)
	local ns=$1 fwd=$2
	nsx "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
		net.ipv6.conf.all.dad_transmits=0 net.ipv6.conf.default.dad_transmits=0 \
		net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
		net.ipv4.ip_forward="$fwd" net.ipv6.conf.all.forwarding="$fwd" >/dev/null
	nsx "$ns" ip link set lo up
}

# ---------------------------------------------------------------- NAT kinds
valid_kind() { [[ " $KINDS " == *" $1 "* ]]; }

ipt() { # NS ARGS...: iptables in NS
	local ns=$1
	shift
	nsx "$ns" iptables -w "$@"
}
ip6t() {
	local ns=$1
	shift
	nsx "$ns" ip6tables -w "$@"
}
# Kind upnp: miniupnpd talks to the kernel through libiptc, i.e. the legacy
# xtables, so that router uses iptables-legacy throughout (no nft rules at all).
iptl() {
	local ns=$1
	shift
	nsx "$ns" iptables-legacy -w "$@"
}

# Our rules live in our own chains so that set-kind can swap them atomically-ish.
ensure_chains() {
	local ns=$1
	ipt "$ns" -t nat -N LAB_PRE 2>/dev/null || true
	ipt "$ns" -t nat -N LAB_POST 2>/dev/null || true
	ipt "$ns" -N LAB_FWD 2>/dev/null || true
	ip6t "$ns" -N LAB_FWD 2>/dev/null || true
	ipt "$ns" -N LAB_IN 2>/dev/null || true
	ip6t "$ns" -N LAB_IN 2>/dev/null || true
	ipt "$ns" -t nat -C PREROUTING -j LAB_PRE 2>/dev/null || ipt "$ns" -t nat -A PREROUTING -j LAB_PRE
	ipt "$ns" -t nat -C POSTROUTING -j LAB_POST 2>/dev/null || ipt "$ns" -t nat -A POSTROUTING -j LAB_POST
	ipt "$ns" -C FORWARD -j LAB_FWD 2>/dev/null || ipt "$ns" -A FORWARD -j LAB_FWD
	ip6t "$ns" -C FORWARD -j LAB_FWD 2>/dev/null || ip6t "$ns" -A FORWARD -j LAB_FWD
	ipt "$ns" -C INPUT -j LAB_IN 2>/dev/null || ipt "$ns" -A INPUT -j LAB_IN
	ip6t "$ns" -C INPUT -j LAB_IN 2>/dev/null || ip6t "$ns" -A INPUT -j LAB_IN
}

flush_conntrack_ns() {
	local ns=$1
	nsx "$ns" conntrack -F -f ipv4 >/dev/null 2>&1 || true
	nsx "$ns" conntrack -F -f ipv6 >/dev/null 2>&1 || true
}

# ---- kind upnp: stund in boot, miniupnpd in the router (files in upnp_dir)
upnp_dir() { echo "$STATE_DIR/$PREFIX.upnp"; }

# proc_alive PID: running (a zombie, waiting for init to reap it, is not)
proc_alive() {
	local st
	st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	[[ $st != Z* ]]
}

# wait_listen NS PROTO(u|t) [ADDR]:PORT: until something listens there (10 s)
wait_listen() {
	local _
	for _ in $(seq 200); do
		nsx "$1" ss -Hn"$2"l 2>/dev/null | grep -qF "$3 " && return 0
		sleep 0.05
	done
	return 1
}

# stund (package stun-server, RFC 3489: it needs two addresses) in boot on
# BOOT_IP4 and BOOT_IP4_ALT, ports STUN_PORT and STUN_PORT+1. miniupnpd
# refuses a WAN address in a reserved range (198.18.0.0/15 is one) unless
# STUN shows that the router is not itself behind a NAT. One per lab.
start_stund() {
	local d pidf
	d=$(upnp_dir)
	pidf=$d/stund.pid
	mkdir -p "$d"
	if [[ -s $pidf ]] && proc_alive "$(cat "$pidf")"; then return 0; fi
	setsid ip netns exec "$BOOT_NS" stund -h "$BOOT_IP4" -a "$BOOT_IP4_ALT" \
		-p "$STUN_PORT" -o "$((STUN_PORT + 1))" >"$d/stund.log" 2>&1 </dev/null &
	echo $! >"$pidf"
	wait_listen "$BOOT_NS" u "$BOOT_IP4:$STUN_PORT" || die "stund did not start in $BOOT_NS (log: $d/stund.log)"
}

# start_upnp NS HOST_LAN4: miniupnpd in router NS with its own config, pid,
# lease and log files (upnp_dir/rX.*): UPnP IGD on LAN:UPNP_HTTP_PORT,
# NAT-PMP and PCP on LAN:5351, mappings of UDP and TCP ports 1024-65535 for
# the router's LAN only.
start_upnp() {
	local ns=$1 host=$2 d r lan4
	d=$(upnp_dir)
	r=${ns#"$PREFIX"-}
	lan4=${host%.*}.1
	start_stund
	cat >"$d/$r.conf" <<-EOF
		# generated by scripts/lab.sh for $ns
		ext_ifname=wan
		listening_ip=lan
		http_port=$UPNP_HTTP_PORT
		enable_upnp=yes
		# NAT-PMP and PCP (both on UDP 5351)
		enable_natpmp=yes
		ipv6_disable=yes
		secure_mode=yes
		system_uptime=yes
		ext_perform_stun=yes
		ext_stun_host=$BOOT_IP4
		ext_stun_port=$STUN_PORT
		# not the machine's /var/run/minissdpd.sock (shared by all namespaces)
		minissdpdsocket=$d/$r.minissdpd.sock
		lease_file=$d/$r.leases
		uuid=$(cat /proc/sys/kernel/random/uuid)
		min_lifetime=10
		allow 1024-65535 ${host%.*}.0/24 1024-65535
		deny 0-65535 0.0.0.0/0 0-65535
	EOF
	: >"$d/$r.leases"
	# -d: foreground (and debug log to stderr); setsid: out of lab.sh's session
	setsid ip netns exec "$ns" miniupnpd -d -f "$d/$r.conf" -P "$d/$r.pid" \
		>"$d/$r.log" 2>&1 </dev/null &
	echo $! >"$d/$r.pid.lab"
	# (it asks the STUN server first: up to 3 s when an answer is lost)
	if ! wait_listen "$ns" u "$lan4:5351" || ! wait_listen "$ns" t ":$UPNP_HTTP_PORT"; then
		die "miniupnpd did not start in $ns (log: $d/$r.log)"
	fi
}

# stop_upnp NS: stop that router's miniupnpd (if any) and remove every
# legacy iptables rule and chain of the router.
stop_upnp() {
	local ns=$1 d r pid t
	d=$(upnp_dir)
	r=${ns#"$PREFIX"-}
	[[ -e $d/$r.conf ]] || return 0
	if [[ -s $d/$r.pid.lab ]]; then
		pid=$(cat "$d/$r.pid.lab")
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 50); do
			proc_alive "$pid" || break
			sleep 0.05
		done
		kill -9 "$pid" 2>/dev/null || true
	fi
	for t in nat mangle filter; do
		iptl "$ns" -t "$t" -F
		iptl "$ns" -t "$t" -X
	done
	rm -f "$d/$r".*
}

# apply_kind NS KIND HOST_LAN4: (re)write the router's NAT rules.
# For cgnat, NS is the carrier NAT (its own rules are those of home); the
# home router in front of the host gets kind home (see cmd_up).
apply_kind() {
	local ns=$1 kind=$2 host=$3
	stop_upnp "$ns"
	if [[ $kind == upnp ]]; then
		# legacy iptables only: no nft table at all in this router
		nsx "$ns" nft flush ruleset
		# the chains of miniupnpd's iptables_init.sh, hooked on the WAN
		iptl "$ns" -t nat -N MINIUPNPD
		iptl "$ns" -t nat -A PREROUTING -i wan -j MINIUPNPD
		iptl "$ns" -t nat -N MINIUPNPD-POSTROUTING
		iptl "$ns" -t nat -A POSTROUTING -o wan -j MINIUPNPD-POSTROUTING
		iptl "$ns" -t mangle -N MINIUPNPD
		iptl "$ns" -t mangle -A PREROUTING -i wan -j MINIUPNPD
		iptl "$ns" -t filter -N MINIUPNPD
		iptl "$ns" -t filter -A FORWARD -i wan ! -o wan -j MINIUPNPD
		# symmetric, as kind symmetric, but only for the LAN: the router's
		# own STUN packets must keep their ports, or miniupnpd concludes that
		# it is behind a symmetric NAT and grants nothing
		iptl "$ns" -t nat -A POSTROUTING -s "${host%.*}.0/24" -o wan -j MASQUERADE --random-fully
		start_upnp "$ns" "$host"
		return 0
	fi
	ensure_chains "$ns"
	ipt "$ns" -t nat -F LAB_PRE
	ipt "$ns" -t nat -F LAB_POST
	ipt "$ns" -F LAB_FWD
	ip6t "$ns" -F LAB_FWD
	ipt "$ns" -F LAB_IN
	ip6t "$ns" -F LAB_IN
	case $kind in
	none) ;;
	full-cone)
		ipt "$ns" -t nat -A LAB_POST -o wan -j MASQUERADE
		ipt "$ns" -t nat -A LAB_PRE -i wan -p udp -j DNAT --to-destination "$host"
		;;
	home | cgnat)
		ipt "$ns" -t nat -A LAB_POST -o wan -j MASQUERADE
		;;
	home-fw)
		# home, and the router drops what is addressed to itself unless it
		# belongs to a connection it knows (as most home routers do). What
		# is forwarded to the LAN (replies to the host's flows) passes.
		ipt "$ns" -t nat -A LAB_POST -o wan -j MASQUERADE
		ipt "$ns" -A LAB_IN -i wan -m conntrack --ctstate NEW -j DROP
		ip6t "$ns" -A LAB_IN -i wan -m conntrack --ctstate NEW -j DROP
		;;
	symmetric)
		ipt "$ns" -t nat -A LAB_POST -o wan -j MASQUERADE --random-fully
		;;
	symmetric-range)
		# --to-ports needs a protocol; other protocols (ICMP) get plain MASQUERADE.
		ipt "$ns" -t nat -A LAB_POST -o wan -p udp -j MASQUERADE --to-ports "$SYMRANGE" --random-fully
		ipt "$ns" -t nat -A LAB_POST -o wan -p tcp -j MASQUERADE --to-ports "$SYMRANGE" --random-fully
		ipt "$ns" -t nat -A LAB_POST -o wan -j MASQUERADE
		;;
	udp-blocked)
		ipt "$ns" -t nat -A LAB_POST -o wan -j MASQUERADE
		ipt "$ns" -A LAB_FWD -p udp -j DROP
		ip6t "$ns" -A LAB_FWD -p udp -j DROP
		;;
	*) die "unknown kind '$kind'" ;;
	esac
}

# Namespaces attached to the inet bridge other than router $1 (letter).
inet_peers() {
	local skip=$1 l
	echo "$PREFIX-inet"
	echo "$PREFIX-boot"
	for l in $LAB_HOSTS; do [[ $l == "$skip" ]] || echo "$PREFIX-r$l"; done
}

# Public (kind none) LANs are routed from the inet; NATed ones are not.
set_public_route() { # letter on|off
	local l=$1 mode=$2 L ns net gw
	L=$(upper "$l")
	net=LAN_${L}_NET4
	gw=ROUTER_${L}_WAN4
	for ns in $(inet_peers "$l"); do
		if [[ $mode == on ]]; then
			nsx "$ns" ip route replace "${!net}" via "${!gw}"
		else
			nsx "$ns" ip route del "${!net}" 2>/dev/null || true
		fi
	done
}

# ---------------------------------------------------------------- up
cmd_up() {
	local hosts="" delay=""
	while (($#)); do
		case $1 in
		--hosts) hosts=${2:?--hosts needs a value}; shift 2 ;;
		--delay) delay=${2:?--delay needs a value}; shift 2 ;;
		--prefix) PREFIX=${2:?}; shift 2 ;;
		*) die "up: unknown argument '$1'" ;;
		esac
	done
	check_prefix
	[[ -n $hosts ]] || die "up: --hosts KIND_A[,KIND_B...] is required"
	[[ -z $delay || $delay =~ ^[0-9]+$ ]] || die "up: --delay wants milliseconds (integer)"
	local -a kinds
	IFS=, read -r -a kinds <<<"$hosts"
	((${#kinds[@]} >= 1 && ${#kinds[@]} <= 26)) || die "up: 1..26 hosts"
	local k
	for k in "${kinds[@]}"; do valid_kind "$k" || die "up: unknown kind '$k' (kinds: $KINDS)"; done
	need_root
	if [[ ,$hosts, == *,upnp,* ]]; then cmd_deps all; else cmd_deps base; fi
	cmd_down

	UP_DONE=0
	trap 'if [[ $UP_DONE != 1 ]]; then log "up failed, tearing down"; cmd_down; fi' EXIT

	local P=$PREFIX inet=$PREFIX-inet boot=$PREFIX-boot
	mkdir -p "$STATE_DIR"

	# --- the internet: a bridge
	ip netns add "$inet"
	base_sysctls "$inet" 0
	# br_netfilter (if loaded) would run bridged frames through iptables: turn it
	# off inside this namespace (per-netns since Linux 5.3).
	local s
	for s in iptables ip6tables arptables; do
		if [[ -e /proc/sys/net/bridge/bridge-nf-call-$s ]]; then
			nsx "$inet" sysctl -qw "net.bridge.bridge-nf-call-$s=0" >/dev/null 2>&1 ||
				log "warning: could not set net.bridge.bridge-nf-call-$s=0 in $inet"
		fi
	done
	nsx "$inet" ip link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
	nsx "$inet" ip addr add "$NET4.1/24" dev br0
	nsx "$inet" ip addr add "$NET6::1/64" dev br0 nodad
	nsx "$inet" ip link set br0 up
	# The internet's core is routers: a packet whose TTL / hop limit runs out
	# there does not cross it. The bridge alone would carry the low-TTL
	# probes that open a host's own NAT mapping without reaching the peer's
	# NAT (punch priming) straight to the other routers.
	nsx "$inet" nft -f - <<-EOF
		table bridge core {
			chain forward {
				type filter hook forward priority 0; policy accept;
				ip ttl < 2 drop
				ip6 hoplimit < 2 drop
			}
		}
	EOF

	# --- netem check (early, clear message)
	if [[ -n $delay ]]; then
		nsx "$inet" ip link add nmtest type veth peer name nmtest2
		if ! nsx "$inet" tc qdisc add dev nmtest root netem delay 1ms 2>/dev/null; then
			die "--delay: the netem qdisc is unavailable (kernel lacks sch_netem / CONFIG_NET_SCH_NETEM; 'tc qdisc add ... netem' failed)"
		fi
		nsx "$inet" ip link del nmtest
	fi

	# --- bootstrap host
	ip netns add "$boot"
	base_sysctls "$boot" 0
	nsx "$inet" ip link add v-boot type veth peer name eth0 netns "$boot"
	nsx "$inet" ip link set v-boot master br0 up
	nsx "$boot" ip addr add "$NET4.$BOOT_HOST/24" dev eth0
	nsx "$boot" ip addr add "$NET4.$((BOOT_HOST + 1))/24" dev eth0
	nsx "$boot" ip addr add "$NET6::$BOOT_HOST/64" dev eth0 nodad
	nsx "$boot" ip addr add "$NET6::$((BOOT_HOST + 1))/64" dev eth0 nodad
	nsx "$boot" ip link set eth0 up

	# --- state file header
	local f
	f=$(state_file)
	local letters="" i l L r h n
	for i in "${!kinds[@]}"; do letters+="${letters:+ }${LETTERS[$i]}"; done
	{
		echo "# antq NAT lab '$P' (generated by scripts/lab.sh; source me)"
		echo "LAB_PREFIX=$P"
		echo "LAB_HOSTS=\"$letters\""
		echo "LAB_DELAY_MS=${delay:-0}"
		echo "INET_NS=$inet"
		echo "INET_BRIDGE=br0"
		echo "INET_NET4=$NET4.0/24"
		echo "INET_NET6=$NET6::/64"
		echo "INET_IP4=$NET4.1"
		echo "INET_IP6=$NET6::1"
		echo "BOOT_NS=$boot"
		echo "BOOT_IP4=$NET4.$BOOT_HOST"
		echo "BOOT_IP6=$NET6::$BOOT_HOST"
		echo "BOOT_IP4_ALT=$NET4.$((BOOT_HOST + 1))"
		echo "BOOT_IP6_ALT=$NET6::$((BOOT_HOST + 1))"
	} >"$f"

	# --- routers and hosts
	local hr lan4 lan6
	for i in "${!kinds[@]}"; do
		l=${LETTERS[$i]} L=$(upper "${LETTERS[$i]}") k=${kinds[$i]}
		r=$P-r$l h=$P-$l n=$((i + 1)) hr=$P-hr$l
		ip netns add "$r"
		ip netns add "$h"
		base_sysctls "$r" 1
		base_sysctls "$h" 0
		nsx "$inet" ip link add "v-r$l" type veth peer name wan netns "$r"
		nsx "$inet" ip link set "v-r$l" master br0 up
		nsx "$r" ip addr add "$NET4.$((20 + i))/24" dev wan
		nsx "$r" ip addr add "$NET6::$((20 + i))/64" dev wan nodad
		nsx "$r" ip link set wan up
		if [[ $k == cgnat ]]; then
			# r (carrier NAT) lan = carrier network; hr (home NAT) between
			# it and the host: r.lan <-> hr.wan, hr.lan <-> h.eth0
			ip netns add "$hr"
			base_sysctls "$hr" 1
			nsx "$r" ip link add lan type veth peer name wan netns "$hr"
			nsx "$r" ip addr add "$CARRIER4.$n.1/24" dev lan
			nsx "$r" ip addr add "$CARRIER6:$n::1/64" dev lan nodad
			nsx "$r" ip link set lan up
			nsx "$hr" ip link add lan type veth peer name eth0 netns "$h"
			nsx "$hr" ip addr add "$CARRIER4.$n.2/24" dev wan
			nsx "$hr" ip addr add "$CARRIER6:$n::2/64" dev wan nodad
			nsx "$hr" ip addr add "10.$n.0.1/24" dev lan
			nsx "$hr" ip addr add "fd00:$n::1/64" dev lan nodad
			nsx "$hr" ip link set wan up
			nsx "$hr" ip link set lan up
			nsx "$hr" ip route add default via "$CARRIER4.$n.1"
			nsx "$hr" ip -6 route add default via "$CARRIER6:$n::1"
			# IPv6 stays routed (no NAT), as for every kind: one more hop
			nsx "$r" ip -6 route add "fd00:$n::/64" via "$CARRIER6:$n::2"
			lan4=$CARRIER4.$n.1 lan6=$CARRIER6:$n::1
		else
			nsx "$r" ip link add lan type veth peer name eth0 netns "$h"
			nsx "$r" ip addr add "10.$n.0.1/24" dev lan
			nsx "$r" ip addr add "fd00:$n::1/64" dev lan nodad
			nsx "$r" ip link set lan up
			lan4=10.$n.0.1 lan6=fd00:$n::1
		fi
		nsx "$h" ip addr add "10.$n.0.2/24" dev eth0
		nsx "$h" ip addr add "fd00:$n::2/64" dev eth0 nodad
		nsx "$h" ip link set eth0 up
		nsx "$h" ip route add default via "10.$n.0.1"
		nsx "$h" ip -6 route add default via "fd00:$n::1"
		if [[ -n $delay ]]; then
			nsx "$r" tc qdisc add dev wan root netem delay "${delay}ms" ||
				die "--delay: tc netem failed on $r"
		fi
		{
			echo "KIND_$L=$k"
			echo "HOST_${L}_NS=$h"
			echo "HOST_${L}_IF=eth0"
			echo "HOST_${L}_LAN4=10.$n.0.2"
			echo "HOST_${L}_LAN6=fd00:$n::2"
			echo "LAN_${L}_NET4=10.$n.0.0/24"
			echo "LAN_${L}_NET6=fd00:$n::/64"
			echo "ROUTER_${L}_NS=$r"
			echo "ROUTER_${L}_WAN4=$NET4.$((20 + i))"
			echo "ROUTER_${L}_WAN6=$NET6::$((20 + i))"
			echo "ROUTER_${L}_LAN4=$lan4"
			echo "ROUTER_${L}_LAN6=$lan6"
			if [[ $k == cgnat ]]; then
				echo "CARRIER_${L}_NET4=$CARRIER4.$n.0/24"
				echo "CARRIER_${L}_NET6=$CARRIER6:$n::/64"
				echo "HOME_ROUTER_${L}_NS=$hr"
				echo "HOME_ROUTER_${L}_WAN4=$CARRIER4.$n.2"
				echo "HOME_ROUTER_${L}_WAN6=$CARRIER6:$n::2"
				echo "HOME_ROUTER_${L}_LAN4=10.$n.0.1"
				echo "HOME_ROUTER_${L}_LAN6=fd00:$n::1"
			fi
		} >>"$f"
	done

	# --- routes across the internet and NAT rules
	load_state
	local ns net6 gw6
	for l in $LAB_HOSTS; do
		L=$(upper "$l")
		net6=LAN_${L}_NET6 gw6=ROUTER_${L}_WAN6
		for ns in $(inet_peers "$l"); do
			nsx "$ns" ip -6 route replace "${!net6}" via "${!gw6}"
		done
		k=KIND_$L h=HOST_${L}_LAN4
		apply_kind "$P-r$l" "${!k}" "${!h}"
		[[ ${!k} != cgnat ]] || apply_kind "$P-hr$l" home "${!h}"
		[[ ${!k} == none ]] && set_public_route "$l" on
	done
	UP_DONE=1
	trap - EXIT
	log "lab '$P' up: hosts $letters ($(tr , ' ' <<<"$hosts")); state in $f"
}

# ---------------------------------------------------------------- down
cmd_down() {
	check_prefix
	need_root
	local -a nss
	mapfile -t nss < <(lab_namespaces)
	if ((${#nss[@]})); then
		local ns pids
		for ns in "${nss[@]}"; do
			ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
		done
		for _ in $(seq 30); do
			pids=""
			for ns in "${nss[@]}"; do pids+=$(ip netns pids "$ns" 2>/dev/null || true); done
			[[ -z $pids ]] && break
			sleep 0.1
		done
		for ns in "${nss[@]}"; do
			ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
		done
		for ns in "${nss[@]}"; do
			ip netns del "$ns" 2>/dev/null || true
		done
	fi
	rm -f "$(state_file)"
	rm -rf "$(upnp_dir)"
}

# ---------------------------------------------------------------- others
cmd_exec() {
	check_prefix
	(($# >= 2)) || die "exec: NAME CMD..."
	local ns
	ns=$(resolve_ns "$1")
	shift
	exec ip netns exec "$ns" "$@"
}

cmd_flush_conntrack() {
	check_prefix
	(($# == 1)) || die "flush-conntrack: ROUTER"
	local l
	l=$(router_letter "$1")
	ns_exists "$PREFIX-r$l" || die "no router $PREFIX-r$l"
	flush_conntrack_ns "$PREFIX-r$l"
	# cgnat: the home NAT in front of the host too
	if ns_exists "$PREFIX-hr$l"; then flush_conntrack_ns "$PREFIX-hr$l"; fi
}

cmd_set_kind() {
	check_prefix
	(($# == 2)) || die "set-kind: ROUTER KIND"
	local l L kind=$2 k h
	valid_kind "$kind" || die "set-kind: unknown kind '$kind' (kinds: $KINDS)"
	l=$(router_letter "$1")
	L=$(upper "$l")
	load_state
	k=KIND_$L h=HOST_${L}_LAN4
	[[ -n ${!k:-} ]] || die "set-kind: no host '$l' in lab '$PREFIX'"
	# cgnat has its own namespace (the home NAT) and addressing, built by 'up'
	if [[ $kind == cgnat || ${!k} == cgnat ]]; then
		die "set-kind: cannot change host '$l' from ${!k} to $kind: kind cgnat (double NAT) is a topology fixed at 'up'; rebuild the lab with 'up --hosts ...' instead"
	fi
	if [[ $kind == upnp ]]; then cmd_deps all; fi
	apply_kind "$PREFIX-r$l" "$kind" "${!h}"
	if [[ $kind == none ]]; then set_public_route "$l" on; else set_public_route "$l" off; fi
	flush_conntrack_ns "$PREFIX-r$l"
	state_set "KIND_$L" "$kind"
}

cmd_renumber() {
	check_prefix
	(($# == 1 || $# == 2)) || die "renumber: HOST [N]"
	local l L
	l=$(router_letter "$1")
	L=$(upper "$l")
	load_state
	local v4=HOST_${L}_LAN4 v6=HOST_${L}_LAN6 gw4=ROUTER_${L}_LAN4 gw6=ROUTER_${L}_LAN6 k=KIND_$L
	[[ -n ${!v4:-} ]] || die "renumber: no host '$l' in lab '$PREFIX'"
	# cgnat: the host's gateway is the home NAT, not the carrier NAT
	if [[ ${!k} == cgnat ]]; then gw4=HOME_ROUTER_${L}_LAN4 gw6=HOME_ROUTER_${L}_LAN6; fi
	local old4=${!v4} old6=${!v6} cur new
	cur=${old4##*.}
	new=${2:-$((cur + 1))}
	[[ $new =~ ^[0-9]+$ ]] || die "renumber: N must be 2..254"
	if [[ -z ${2:-} ]] && ((new > 254)); then new=2; fi
	if ((new < 2 || new > 254)); then die "renumber: N must be 2..254"; fi
	((new != cur)) || die "renumber: host already has .$new"
	local new4=${old4%.*}.$new new6=${old6%::*}::$new h=$PREFIX-$l
	# IPv6 may be off on the host's LAN side (mesh.sh --outer ipv4): renumber
	# it only where the host has it
	local has6=
	if nsx "$h" ip -6 addr show dev eth0 2>/dev/null | grep -q "inet6 $old6/"; then has6=1; fi
	nsx "$h" ip addr del "$old4/24" dev eth0
	[[ -z $has6 ]] || nsx "$h" ip -6 addr del "$old6/64" dev eth0
	nsx "$h" ip addr add "$new4/24" dev eth0
	[[ -z $has6 ]] || nsx "$h" ip -6 addr add "$new6/64" dev eth0 nodad
	nsx "$h" ip route replace default via "${!gw4}"
	[[ -z $has6 ]] || nsx "$h" ip -6 route replace default via "${!gw6}"
	# a full-cone router forwards to the host's address: follow it (no conntrack flush)
	if [[ ${!k} == full-cone ]]; then apply_kind "$PREFIX-r$l" full-cone "$new4"; fi
	state_set "HOST_${L}_LAN4" "$new4"
	state_set "HOST_${L}_LAN6" "$new6"
	echo "$new4 $new6"
}

cmd_renumber_wan() {
	check_prefix
	(($# == 1 || $# == 2)) || die "renumber-wan: ROUTER [N]"
	local l L
	l=$(router_letter "$1")
	L=$(upper "$l")
	load_state
	local w4=ROUTER_${L}_WAN4 k=KIND_$L r=$PREFIX-r$l
	[[ -n ${!w4:-} ]] || die "renumber-wan: no router 'r$l' in lab '$PREFIX'"
	# kind none routes its LAN through this address from everywhere else
	[[ ${!k} != none ]] || die "renumber-wan: router r$l has kind none (routed, not NATed)"
	local old4=${!w4} cur new
	cur=${old4##*.}
	new=${2:-$((cur + 100))}
	[[ $new =~ ^[0-9]+$ ]] && ((new >= 2 && new <= 254 && new != cur)) ||
		die "renumber-wan: N must be 2..254 and differ from .$cur"
	local new4=${old4%.*}.$new
	# MASQUERADE forgets the mappings of a deleted address (its conntrack
	# entries go with it): like an ISP handing out a new public address.
	# (deleting a primary address takes its secondaries along: old one first)
	nsx "$r" ip addr del "$old4/24" dev wan
	nsx "$r" ip addr add "$new4/24" dev wan
	# miniupnpd learns its external address once, at start (STUN): restart it
	# (its mappings went with the old address anyway)
	local h=HOST_${L}_LAN4
	if [[ ${!k} == upnp ]]; then apply_kind "$r" upnp "${!h}"; fi
	state_set "ROUTER_${L}_WAN4" "$new4"
	echo "$new4"
}

# attach NAME ADDR/LEN... [--route NET]...: a plain namespace P-NAME on the
# inet bridge (veth v-NAME in the bridge, eth0 inside), with ADDRs on eth0
# (IPv6 without DAD) and each NET routed to it (via its first address of
# NET's family) from inet, boot and every router. For test hosts that are
# neither NATed hosts nor the bootstrap: an attacker with many source
# addresses, a victim, a fresh client. `down` deletes it with the lab.
cmd_attach() {
	check_prefix
	need_root
	local name=${1:-}
	shift || true
	[[ $name =~ ^$ATTACH_NAME_RE$ ]] || die "attach: NAME must match $ATTACH_NAME_RE, got '$name'"
	[[ ! $name =~ ^(inet|boot|r?[a-z]|hr[a-z])$ ]] || die "attach: '$name' is a lab name"
	local -a addrs=() routes=()
	while (($#)); do
		case $1 in
		--route) routes+=("${2:?--route needs a network}"); shift 2 ;;
		*/*) addrs+=("$1"); shift ;;
		*) die "attach: '$1' is not ADDR/LEN or --route NET" ;;
		esac
	done
	((${#addrs[@]})) || die "attach: at least one ADDR/LEN"
	load_state
	local ns=$PREFIX-$name
	ns_exists "$ns" && die "attach: $ns exists"
	ip netns add "$ns"
	base_sysctls "$ns" 0
	nsx "$INET_NS" ip link add "v-$name" type veth peer name eth0 netns "$ns"
	nsx "$INET_NS" ip link set "v-$name" master br0 up
	local a gw4="" gw6="" batch=""
	for a in "${addrs[@]}"; do
		if [[ $a == *:* ]]; then
			batch+="addr add $a dev eth0 nodad"$'\n'
			[[ -n $gw6 ]] || gw6=${a%/*}
		else
			batch+="addr add $a dev eth0"$'\n'
			[[ -n $gw4 ]] || gw4=${a%/*}
		fi
	done
	nsx "$ns" ip -batch - <<<"${batch}link set eth0 up"
	local net gw peer
	for net in "${routes[@]}"; do
		if [[ $net == *:* ]]; then gw=$gw6; else gw=$gw4; fi
		[[ -n $gw ]] || die "attach: no address of ${net}'s family to route it to"
		for peer in $(inet_peers ""); do
			nsx "$peer" ip route replace "$net" via "$gw"
		done
	done
	state_set LAB_ATTACHED "\"${LAB_ATTACHED:+$LAB_ATTACHED }$name\""
	state_set "ATTACH_${name^^}_NS" "$ns"
	echo "$ns"
}

cmd_status() {
	check_prefix
	lab_namespaces
	local f
	f=$(state_file)
	if [[ -r $f ]]; then cat "$f"; fi
}

# ---------------------------------------------------------------- main
main() {
	(($#)) || {
		usage
		exit 2
	}
	local cmd=$1
	shift
	# --prefix may appear anywhere before the positional arguments
	local -a rest=()
	while (($#)); do
		case $1 in
		--prefix)
			PREFIX=${2:?--prefix needs a value}
			shift 2
			;;
		--prefix=*)
			PREFIX=${1#--prefix=}
			shift
			;;
		*)
			# for exec, everything from NAME on belongs to the command
			if [[ $cmd == exec ]]; then
				rest+=("$@")
				break
			fi
			rest+=("$1")
			shift
			;;
		esac
	done
	case $cmd in
	deps) cmd_deps all ;;
	up) cmd_up "${rest[@]}" ;;
	down) cmd_down ;;
	exec) cmd_exec "${rest[@]}" ;;
	flush-conntrack) cmd_flush_conntrack "${rest[@]}" ;;
	set-kind) cmd_set_kind "${rest[@]}" ;;
	renumber) cmd_renumber "${rest[@]}" ;;
	renumber-wan) cmd_renumber_wan "${rest[@]}" ;;
	attach) cmd_attach "${rest[@]}" ;;
	status) cmd_status ;;
	-h | --help | help) usage ;;
	*)
		usage >&2
		exit 2
		;;
	esac
}

main "$@"
