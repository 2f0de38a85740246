#!/usr/bin/env bash
# Self-test of the NAT lab: build one host of every NAT kind, observe each
# router's mapping and filtering behaviour, TCP and IPv6 reachability, and
# the conntrack source-port clash; for home-fw the router's input firewall,
# for upnp the port mappings granted by NAT-PMP, UPnP IGD and PCP (and that
# set-kind and down take miniupnpd and its rules away).  Exits non-zero if a
# kind does not behave as its name says.  Always tears the lab down.  Root
# only.
#
# usage: lab-selftest.sh [--prefix P] [--kinds K1,K2,...]
#        (default prefix: aqst<pid>; default kinds: all but cgnat)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB=$HERE/lab.sh
NC=$HERE/nat-check.py
# the servers are lossless here: fewer retries keep the blocked cases short
PY=${PYTHON:-python3}
PREFIX=aqst$$
KINDS=(none full-cone home symmetric symmetric-range udp-blocked home-fw upnp)
while (($#)); do
	case $1 in
	--prefix) PREFIX=${2:?}; shift 2 ;;
	--kinds) IFS=, read -r -a KINDS <<<"${2:?}"; shift 2 ;;
	*)
		sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
		exit 2
		;;
	esac
done

[[ $EUID -eq 0 ]] || {
	echo "lab-selftest: must run as root" >&2
	exit 1
}

TMP=$(mktemp -d)
cleanup() {
	local t0
	t0=$(date +%s.%N)
	"$LAB" down --prefix "$PREFIX" || true
	echo "teardown: $(elapsed "$t0")s"
	rm -rf "$TMP"
}
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }
trap cleanup EXIT

lab() { "$LAB" "$1" --prefix "$PREFIX" "${@:2}"; }
inns() { lab exec "$@"; }
# key=value output of nat-check -> value of KEY
kv() { sed -nE "s/^(.* )?$1=([^ ]*).*/\2/p" | head -n1; }

"$LAB" deps

t0=$(date +%s.%N)
lab up --hosts "$(
	IFS=,
	echo "${KINDS[*]}"
)"
echo "build: $(elapsed "$t0")s"
# shellcheck disable=SC1090
source "/run/antq-lab/$PREFIX.env"

B4=$BOOT_IP4 B4X=$BOOT_IP4_ALT B6=$BOOT_IP6 B6X=$BOOT_IP6_ALT
# servers: two ports on each of two addresses, both families
inns boot "$PY" "$NC" serve \
	--bind "$B4:3478" --bind "$B4:3479" --bind "$B4X:3478" --bind "$B4X:3479" \
	--bind "[$B6]:3478" --bind "[$B6]:3479" --bind "[$B6X]:3478" --bind "[$B6X]:3479" \
	>"$TMP/serve.log" 2>&1 &
mkdir "$TMP/www"
inns boot "$PY" -m http.server --bind :: --directory "$TMP/www" 8080 >/dev/null 2>&1 &

# wait until both servers answer (from inside boot)
ok=0
for _ in $(seq 50); do
	if inns boot "$PY" "$NC" probe --timeout 0.2 --tries 1 "$B4:3478" "$B4:3479" >/dev/null 2>&1 &&
		inns boot bash -c "exec 3<>/dev/tcp/$B4/8080" 2>/dev/null; then
		ok=1
		break
	fi
	sleep 0.1
done
((ok)) || {
	echo "lab-selftest: servers in boot did not start" >&2
	exit 1
}

# check DESCRIPTION WANT GOT: print ok / FAIL, remember a failure
check() {
	if [[ $2 == "$3" ]]; then
		echo "  ok    $1: $3"
	else
		echo "  FAIL  $1: got '$3', want '$2'"
		fail=1
	fi
}
fail=0

http() { # NS URL -> http code or 000
	inns "$1" curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 3 "$2" || true
}

# expected: mapping filtering tcp4 udp6 tcp6
declare -A EXPECT=(
	[none]="EIM/no-NAT endpoint-independent yes yes yes"
	[full-cone]="EIM endpoint-independent yes yes yes"
	[home]="EIM address-and-port-dependent yes yes yes"
	[symmetric]="symmetric address-and-port-dependent yes yes yes"
	[symmetric-range]="symmetric address-and-port-dependent yes yes yes"
	[udp-blocked]="blocked blocked yes no yes"
	[home-fw]="EIM address-and-port-dependent yes yes yes"
	[upnp]="symmetric address-and-port-dependent yes yes yes"
)

rows=()
row() { rows+=("$(printf '%-3s %-16s %-12s %-28s %-5s %-5s %-5s %s' "$@")"); }
row host kind mapping filtering tcp4 udp6 tcp6 verdict
row ---- ---- ------- --------- ---- ---- ---- -------
i=0
for l in $LAB_HOSTS; do
	L=${l^^}
	kv_kind=KIND_$L
	kind=${!kv_kind}
	base=$((50000 + 10 * i))
	i=$((i + 1))

	out=$(inns "$l" "$PY" "$NC" probe --tries 2 --from-port "$base" "$B4:3478" "$B4X:3479" || true)
	echo "$out" >"$TMP/probe-$l"
	mapping=$(kv mapping <<<"$out")
	# a random allocator may, rarely, hand out the same port twice: retry once
	if [[ $mapping == EIM && ($kind == symmetric* || $kind == upnp) ]]; then
		out=$(inns "$l" "$PY" "$NC" probe --tries 2 --from-port "$((base + 5))" "$B4:3478" "$B4X:3479" || true)
		mapping=$(kv mapping <<<"$out")
	fi
	[[ $mapping == EIM && $(kv nat <<<"$out") == no ]] && mapping=EIM/no-NAT
	if [[ $kind == symmetric-range ]]; then
		for m in $(kv mapped1 <<<"$out") $(kv mapped2 <<<"$out"); do
			p=${m##*:}
			if ((p < 40000 || p > 40999)); then mapping="$mapping(out-of-range:$p)"; fi
		done
	fi

	filtering=$(inns "$l" "$PY" "$NC" filter --tries 2 --from-port "$((base + 1))" "$B4:3478" | kv filtering || true)

	tcp4=no tcp6=no udp6=no
	[[ $(http "$l" "http://$B4:8080/") == 200 ]] && tcp4=yes
	[[ $(http "$l" "http://[$B6]:8080/") == 200 ]] && tcp6=yes
	out6=$(inns "$l" "$PY" "$NC" probe --tries 2 --from-port "$((base + 2))" "[$B6]:3478" "[$B6X]:3479" || true)
	# IPv6 is routed without NAT: the server must see the host's own address
	[[ $(kv mapping <<<"$out6") == EIM && $(kv nat <<<"$out6") == no ]] && udp6=yes

	got="$mapping $filtering $tcp4 $udp6 $tcp6"
	if [[ $got == "${EXPECT[$kind]}" ]]; then
		verdict=ok
	else
		verdict="FAIL (want ${EXPECT[$kind]})"
		fail=1
	fi
	row "$l" "$kind" "$mapping" "$filtering" "$tcp4" "$udp6" "$tcp6" "$verdict"
done

echo
printf '%s\n' "${rows[@]}"

# ---- port allocation of symmetric-range
echo
for l in $LAB_HOSTS; do
	kv_kind=KIND_${l^^}
	[[ ${!kv_kind} == symmetric-range ]] || continue
	out=$(inns "$l" "$PY" "$NC" ports --from-port 51000 --count 8 "$B4:3478" || true)
	echo "symmetric-range ($l): 8 sockets -> ports $(kv mapped_ports <<<"$out"): allocation $(kv allocation <<<"$out")"
done

# ---- conntrack clash (nat-kinds.md): a peer's packet reaches the router on the
# host's mapped port before the host has sent anything to that peer.
inns boot "$PY" "$NC" serve --allow-send-to --bind "$B4:3490" >/dev/null 2>&1 &
for _ in $(seq 50); do
	inns boot "$PY" "$NC" probe --timeout 0.2 --tries 1 "$B4:3490" "$B4:3490" >/dev/null 2>&1 && break
	sleep 0.1
done
echo
echo "conntrack clash (peer $B4:3490 sends to router WAN:port first):"
for l in $LAB_HOSTS; do
	L=${l^^}
	kv_kind=KIND_$L wan=ROUTER_${L}_WAN4
	kind=${!kv_kind}
	[[ $kind == home || $kind == full-cone || $kind == home-fw ]] || continue
	# A: no earlier traffic from the host at all
	lab flush-conntrack "r$l"
	inns boot "$PY" "$NC" send-to --via "$B4:3490" "${!wan}:45000" >/dev/null
	out=$(inns "$l" "$PY" "$NC" probe --tries 2 --from-port 45000 "$B4:3490" "$B4:3478" || true)
	echo "  $kind A (cold):       host :45000 -> peer sees $(kv mapped1 <<<"$out"), server sees $(kv mapped2 <<<"$out")  => $(kv mapping <<<"$out")"
	# home-fw: the peer's packet died in the router's INPUT chain before its
	# conntrack entry was confirmed, so there is no clash: port kept, EIM
	if [[ $kind == home-fw ]]; then
		check "home-fw A: port kept, EIM" "${!wan}:45000 EIM" "$(kv mapped1 <<<"$out") $(kv mapping <<<"$out")"
	fi
	# B: host already mapped :46000 via the server, then the peer sends first
	lab flush-conntrack "r$l"
	inns "$l" "$PY" "$NC" probe --tries 2 --from-port 46000 "$B4:3478" "$B4:3479" >/dev/null || true
	inns boot "$PY" "$NC" send-to --via "$B4:3490" "${!wan}:46000" >/dev/null
	out=$(inns "$l" "$PY" "$NC" probe --tries 2 --from-port 46000 "$B4:3478" "$B4:3490" || true)
	echo "  $kind B (after STUN): host :46000 -> server sees $(kv mapped1 <<<"$out"), peer sees $(kv mapped2 <<<"$out")  => $(kv mapping <<<"$out")"
	if [[ $kind == home-fw ]]; then
		check "home-fw B: peer sees the same port, EIM" "${!wan}:46000 EIM" "$(kv mapped2 <<<"$out") $(kv mapping <<<"$out")"
	fi
done

# ---- home-fw: the router drops new packets addressed to itself (v4, v6);
# a home router (if in the lab) as the control: it answers
udp_poke() { # NS IP PORT -> refused (ICMP port unreachable) | silent | answer
	inns "$1" "$PY" -c '
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
s.connect((sys.argv[1], int(sys.argv[2])))
r = "silent"
for _ in range(2):
    try:
        s.send(b"x")
        s.recv(64)
        r = "answer"
        break
    except ConnectionRefusedError:
        r = "refused"
        break
    except socket.timeout:
        pass
print(r)' "$2" "$3"
}
pings() { # NS ADDR -> yes|no
	if inns "$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1; then echo yes; else echo no; fi
}
fw_check() { # LETTER KIND: unsolicited packets from boot to the router's WAN
	local L=${1^^} w4 w6 want drops
	w4=ROUTER_${L}_WAN4 w6=ROUTER_${L}_WAN6
	if [[ $2 == home-fw ]]; then want="no no silent"; else want="yes yes refused"; fi
	check "$2 ($1): boot -> router WAN: ping4 ping6 udp4" "$want" \
		"$(pings boot "${!w4}") $(pings boot "${!w6}") $(udp_poke boot "${!w4}" 47000)"
	if [[ $2 == home-fw ]]; then
		drops=$(inns "r$1" iptables -w -nvxL LAB_IN | awk '$3 == "DROP" { n += $1 } END { print n + 0 }')
		check "home-fw ($1): LAB_IN dropped packets" yes "$( ((drops >= 3)) && echo yes || echo no)"
	fi
}
echo
echo "router input firewall:"
fw_letter=""
for l in $LAB_HOSTS; do
	kv_kind=KIND_${l^^}
	case ${!kv_kind} in
	home) fw_check "$l" home ;;
	home-fw)
		fw_check "$l" home-fw
		fw_letter=$l
		;;
	esac
done
# set-kind from and to home-fw
if [[ -n $fw_letter ]]; then
	lab set-kind "r$fw_letter" home
	fw_check "$fw_letter" home
	lab set-kind "r$fw_letter" home-fw
	fw_check "$fw_letter" home-fw
fi

# ---- upnp: mappings by NAT-PMP, UPnP IGD and PCP
# reach LETTER PORT TARGET: does a datagram from boot to TARGET (the
# router's WAN:port) reach a server on the host's PORT (and its answer come
# back)? yes|no
reach() {
	local l=$1 port=$2 target=$3 hv pid r=no
	hv=HOST_${l^^}_LAN4
	ip netns exec "$PREFIX-$l" "$PY" "$NC" serve --bind "${!hv}:$port" >/dev/null 2>&1 &
	pid=$!
	for _ in $(seq 50); do
		inns "$l" ss -Huln | grep -qF "${!hv}:$port " && break
		sleep 0.05
	done
	if inns boot "$PY" "$NC" probe --tries 2 --timeout 0.5 "$target" "$target" >/dev/null 2>&1; then r=yes; fi
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	echo "$r"
}
alive() { # PID: running (not a zombie waiting to be reaped)
	local st
	st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	[[ $st != Z* ]]
}
upnp_pid() { # LETTER -> pid of that router's miniupnpd, or nothing
	cat "/run/antq-lab/$PREFIX.upnp/r$1.pid.lab" 2>/dev/null || true
}
legacy_rules() { # LETTER -> number of legacy iptables rules in the router
	local t n=0 c
	for t in nat filter mangle; do
		c=$(inns "r$1" iptables-legacy -w -t "$t" -S | grep -c '^-A' || true)
		n=$((n + c))
	done
	echo "$n"
}
upnp_letter=""
for l in $LAB_HOSTS; do
	L=${l^^}
	kv_kind=KIND_$L
	[[ ${!kv_kind} == upnp ]] || continue
	upnp_letter=$l
	gwv=ROUTER_${L}_LAN4 wanv=ROUTER_${L}_WAN4 hv=HOST_${L}_LAN4
	gw=${!gwv} wan=${!wanv} h=${!hv}
	echo
	echo "upnp ($l): router $gw / $wan, host $h, miniupnpd $(miniupnpd --version 2>&1 | head -n1)"
	# no mapping: symmetric (the table above), nothing reaches the host
	check "no mapping: boot -> $wan:40123 reaches the host" no "$(reach "$l" 40123 "$wan:40123")"

	# NAT-PMP (natpmpc)
	out=$(inns "$l" timeout 5 natpmpc -g "$gw" -a 40123 40123 udp 60 2>&1 || true)
	ext=$(sed -nE 's/^Mapped public port ([0-9]+) protocol UDP to local port 40123 .*/\1/p' <<<"$out")
	check "NAT-PMP: UDP 40123 mapped, external port reported" yes "$([[ -n $ext ]] && echo yes || echo no)"
	ext=${ext:-40123}
	# miniupnpd pins the mapped port for the host's own flows from it too
	# (MASQUERADE --to-ports in MINIUPNPD-POSTROUTING): EIM on that port
	out=$(inns "$l" "$PY" "$NC" probe --tries 2 --from-port 40123 "$B4:3478" "$B4X:3479" || true)
	check "NAT-PMP: host :40123 -> 2 servers" "$wan:$ext EIM" "$(kv mapped1 <<<"$out") $(kv mapping <<<"$out")"
	check "NAT-PMP: boot -> $wan:$ext reaches host :40123" yes "$(reach "$l" 40123 "$wan:$ext")"
	inns "$l" timeout 5 natpmpc -g "$gw" -a "$ext" 40123 udp 0 >/dev/null 2>&1 || true
	check "NAT-PMP: after delete, boot -> $wan:$ext reaches the host" no "$(reach "$l" 40123 "$wan:$ext")"

	# UPnP IGD (upnpc): SSDP discovery finds the description URL; then -u
	# URL, since upnpc's own discovery refuses an IGD whose external address
	# is reserved (198.18.0.0/15) as "not connected"
	desc=$( (inns "$l" timeout 10 upnpc -m eth0 -l 2>&1 || true) | sed -nE 's/^ *desc: (http[^ ]*).*/\1/p' | head -n1)
	check "UPnP: SSDP discovery finds the IGD" "http://$gw:5000/rootDesc.xml" "$desc"
	desc=${desc:-http://$gw:5000/rootDesc.xml}
	inns "$l" timeout 10 upnpc -u "$desc" -e antq-lab -a "$h" 40200 40200 UDP >/dev/null 2>&1 || true
	listed=no
	if inns "$l" timeout 10 upnpc -u "$desc" -l 2>&1 | grep -qE "UDP +40200->$h:40200 "; then listed=yes; fi
	check "UPnP: AddPortMapping UDP 40200, listed" yes "$listed"
	check "UPnP: boot -> $wan:40200 reaches host :40200" yes "$(reach "$l" 40200 "$wan:40200")"
	inns "$l" timeout 10 upnpc -u "$desc" -d 40200 UDP >/dev/null 2>&1 || true
	listed=no
	if inns "$l" timeout 10 upnpc -u "$desc" -l 2>&1 | grep -qE "UDP +40200->"; then listed=yes; fi
	check "UPnP: after DeletePortMapping, listed" no "$listed"
	check "UPnP: after delete, boot -> $wan:40200 reaches the host" no "$(reach "$l" 40200 "$wan:40200")"

	# PCP (RFC 6887 MAP, nat-check.py pcp-map: Debian has no PCP client)
	out=$(inns "$l" "$PY" "$NC" pcp-map --gateway "$gw" --internal-port 40300 --lifetime 60 || true)
	pext=$(kv external <<<"$out")
	check "PCP: MAP UDP 40300" "SUCCESS $wan" "$(kv result <<<"$out") ${pext%:*}"
	pext=${pext:-$wan:40300}
	check "PCP: boot -> $pext reaches host :40300" yes "$(reach "$l" 40300 "$pext")"
	out=$(inns "$l" "$PY" "$NC" pcp-map --gateway "$gw" --internal-port 40300 --lifetime 0 || true)
	check "PCP: delete (lifetime 0)" SUCCESS "$(kv result <<<"$out")"
	check "PCP: after delete, boot -> $pext reaches the host" no "$(reach "$l" 40300 "$pext")"

	# set-kind away: miniupnpd and its (legacy) rules gone; and back
	pid=$(upnp_pid "$l")
	lab set-kind "r$l" symmetric
	gone=yes
	if [[ -n $pid ]] && alive "$pid"; then gone=no; fi
	check "set-kind symmetric: miniupnpd gone, legacy rules, NAT-PMP" "yes 0 no" \
		"$gone $(legacy_rules "$l") $(inns "$l" timeout 5 natpmpc -g "$gw" -a 40400 40400 udp 60 >/dev/null 2>&1 && echo yes || echo no)"
	lab set-kind "r$l" upnp
	check "set-kind upnp again: NAT-PMP" yes \
		"$(inns "$l" timeout 5 natpmpc -g "$gw" -a 40400 40400 udp 60 >/dev/null 2>&1 && echo yes || echo no)"
done

# ---- down: nothing of miniupnpd/stund survives (processes, files; the
# rules went with the router's namespace)
if [[ -n $upnp_letter ]]; then
	pids="$(upnp_pid "$upnp_letter") $(cat "/run/antq-lab/$PREFIX.upnp/stund.pid" 2>/dev/null || true)"
	lab down
	left_pids=""
	for pid in $pids; do
		if alive "$pid"; then left_pids+=" $pid"; fi
	done
	left=$( (ip netns list | grep -c "^$PREFIX-") || true)
	echo
	check "down: miniupnpd/stund processes left, namespaces left, state files left" "none 0 no" \
		"${left_pids:-none} $left $([[ -e /run/antq-lab/$PREFIX.upnp ]] && echo yes || echo no)"
fi

echo
if ((fail)); then
	echo "lab-selftest: FAILED"
	exit 1
fi
echo "lab-selftest: all kinds behave as named"
