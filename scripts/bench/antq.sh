# shellcheck shell=bash disable=SC2153,SC2154
# bench.sh system: antq-tun (antq) and antq-tun with 20 firewall rules (antq-fw) (sourced by scripts/bench.sh; uses its helpers and context)

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
		# antq-relay-max (relay scenario): the relay's rate limits out of the way
		if ((ANTQ_RELAY_RAISED)); then
			cat >>"$d/boot.toml" <<EOF
relay_bytes_per_sec = $ANTQ_RELAY_MAX_BPS
relay_burst_bytes = $ANTQ_RELAY_MAX_BURST
relay_key_bytes_per_sec = $ANTQ_RELAY_MAX_BPS
relay_key_burst_bytes = $ANTQ_RELAY_MAX_BURST
EOF
		fi
	fi
	{
		echo "[interface]"
		echo "name = \"$ANTQ_IF_A\""
		echo "private_key = \"$ka\""
		echo "address = [\"$INNER_A/24\"]"
		echo "listen_port = 9000"
		[[ -n ${ANTQ_MTU:-} ]] && echo "mtu = $ANTQ_MTU"
		[[ -n $boot_line ]] && echo "$boot_line"
		echo "[[peer]]"
		echo "public_key = \"$pb\""
		echo "allowed_ips = [\"$INNER_B/32\"]"
		[[ -n $C_UL ]] && echo "endpoint = \"$C_UL:9000\""
	} >"$d/a.toml"
	{
		echo "[interface]"
		echo "name = \"$ANTQ_IF_B\""
		echo "private_key = \"$kb\""
		echo "address = [\"$INNER_B/24\"]"
		echo "listen_port = 9000"
		[[ -n ${ANTQ_MTU:-} ]] && echo "mtu = $ANTQ_MTU"
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
	[[ $SCEN == relay ]] && return 0 # no direct path to wait for
	local i ms=""
	for ((i = 0; i < 100; i++)); do
		ms=$(nsx "$C_NS" "$ANTQ_BIN" status --json -i "$ANTQ_IF_B" 2>/dev/null |
			jq -r '(if type == "array" then .[0] else . end).peers[0].first_direct_ms // empty' 2>/dev/null || true)
		[[ -n $ms ]] && break
		sleep 0.1
	done
	ANTQ_DIRECT_MS+=("${ms:-null}")
	log "  antq: direct path after ${ms:-(none within 10 s)} ms"
}
antq_check() { true; }
# relay scenario: the path B's daemon reports for A (must be "relay")
antq_done() {
	[[ $SCEN == relay ]] || return 0
	local j p t
	j=$(nsx "$C_NS" "$ANTQ_BIN" status --json -i "$ANTQ_IF_B" 2>/dev/null |
		jq -c '(if type == "array" then .[0] else . end).peers[0]' 2>/dev/null || true)
	p=$(jq -r '.path // empty' <<<"$j" 2>/dev/null || true)
	t=$(jq -r '.transport // empty' <<<"$j" 2>/dev/null || true)
	rec "$SCEN" "$CUR_SYS" antq_status_path "$(jstr "${p:-unknown}${t:+/$t}")"
	log "  $CUR_SYS: antq-tun status on B: path ${p:-unknown} ${t:+($t)}"
}

# antq-relay-max (relay scenario only): antq with the bootstrap's relay
# limits raised (per relayed pair and per key: 10 GB/s, bursts 100 MB)
ANTQ_RELAY_RAISED=0
ANTQ_RELAY_MAX_BPS=10000000000
ANTQ_RELAY_MAX_BURST=100000000
antqrx_avail() { antq_avail; }
antqrx_versions() { true; }
antqrx_setup() {
	ANTQ_RELAY_RAISED=1
	antq_setup
	ANTQ_RELAY_RAISED=0
}
antqrx_infra_start() { antq_infra_start; }
antqrx_start() { antq_daemons antqrx "$1"; }
antqrx_started() { antq_started; }
antqrx_check() { true; }
antqrx_done() { antq_done; }

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
	n=$(nsx "$S_NS" "$ANTQ_BIN" status --json -i "$ANTQ_IF_A" 2>/dev/null |
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
	j=$(nsx "$S_NS" "$ANTQ_BIN" status --json -i "$ANTQ_IF_A" 2>/dev/null |
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


antq_avail() { # sets ANTQ_BIN
	local bin=$ANTQ_BIN
	[[ -z $bin && -x $REPO/target/release/antq-tun ]] && bin=$REPO/target/release/antq-tun
	if [[ -z $bin ]]; then
		echo "not built"
	elif [[ ! -x $bin ]]; then
		echo "no binary"
	elif ! "$bin" up --help >/dev/null 2>&1; then
		echo "not available yet"
	fi
}
antq_resolve_bin() {
	[[ -z $ANTQ_BIN && -x $REPO/target/release/antq-tun ]] && ANTQ_BIN=$REPO/target/release/antq-tun
	true
}
antq_versions() { printf 'antq-tun\t%s (%s)\n' "$("$ANTQ_BIN" --version 2>&1 | head -n1 || true)" "$ANTQ_BIN"; }
antqfw_avail() { antq_avail; }
antqfw_versions() { true; }
