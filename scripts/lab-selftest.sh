#!/usr/bin/env bash
# Self-test of the NAT lab: build one host of every NAT kind, observe each
# router's mapping and filtering behaviour, TCP and IPv6 reachability, and
# the conntrack source-port clash.  Exits non-zero if a kind does not behave
# as its name says.  Always tears the lab down.  Root only.
#
# usage: lab-selftest.sh [--prefix P]     (default prefix: aqst<pid>)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB=$HERE/lab.sh
NC=$HERE/nat-check.py
# the servers are lossless here: fewer retries keep the blocked cases short
PY=${PYTHON:-python3}
PREFIX=aqst$$
if [[ ${1:-} == --prefix ]]; then PREFIX=${2:?}; fi

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

KINDS=(none full-cone home symmetric symmetric-range udp-blocked)
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
)

fail=0
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
	if [[ $mapping == EIM && $kind == symmetric* ]]; then
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
	[[ $kind == home || $kind == full-cone ]] || continue
	# A: no earlier traffic from the host at all
	lab flush-conntrack "r$l"
	inns boot "$PY" "$NC" send-to --via "$B4:3490" "${!wan}:45000" >/dev/null
	out=$(inns "$l" "$PY" "$NC" probe --tries 2 --from-port 45000 "$B4:3490" "$B4:3478" || true)
	echo "  $kind A (cold):       host :45000 -> peer sees $(kv mapped1 <<<"$out"), server sees $(kv mapped2 <<<"$out")  => $(kv mapping <<<"$out")"
	# B: host already mapped :46000 via the server, then the peer sends first
	lab flush-conntrack "r$l"
	inns "$l" "$PY" "$NC" probe --tries 2 --from-port 46000 "$B4:3478" "$B4:3479" >/dev/null || true
	inns boot "$PY" "$NC" send-to --via "$B4:3490" "${!wan}:46000" >/dev/null
	out=$(inns "$l" "$PY" "$NC" probe --tries 2 --from-port 46000 "$B4:3478" "$B4:3490" || true)
	echo "  $kind B (after STUN): host :46000 -> server sees $(kv mapped1 <<<"$out"), peer sees $(kv mapped2 <<<"$out")  => $(kv mapping <<<"$out")"
done

echo
if ((fail)); then
	echo "lab-selftest: FAILED"
	exit 1
fi
echo "lab-selftest: all kinds behave as named"
