# shellcheck shell=bash disable=SC2153,SC2154
# bench.sh system: Nebula (sourced by scripts/bench.sh; uses its helpers and context)

NEB_IF_A=${PFX}nebA
NEB_IF_B=${PFX}nebB
NEB_IF_L=${PFX}nebL
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
neb_check() { true; }
neb_pkgs() { echo "nebula nebula"; echo "nebula-cert nebula"; }
neb_avail() { command -v nebula >/dev/null 2>&1 && command -v nebula-cert >/dev/null 2>&1 || echo "not available"; }
neb_versions() { printf 'nebula\t%s\n' "$(nebula -version 2>&1 | head -n1)"; }
