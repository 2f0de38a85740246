# shellcheck shell=bash disable=SC2153,SC2154
# bench.sh system: raw veth (topology of the veth scenario) and socat (sourced by scripts/bench.sh; uses its helpers and context)

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
			"TUN:$inner/24,tun-name=${PFX}soc$side,tun-type=tun,iff-no-pi,up" </dev/null >"$TMP/socat-$side.log" 2>&1 &
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

veth_avail() { true; }
veth_versions() { true; }
socat_pkgs() { echo "socat socat"; }
socat_avail() { command -v socat >/dev/null 2>&1 || echo "not available"; }
socat_versions() { true; }
