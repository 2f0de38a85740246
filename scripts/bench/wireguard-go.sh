# shellcheck shell=bash disable=SC2153,SC2154
# bench.sh system: wireguard-go (userspace WireGuard, configured with wg) (sourced by scripts/bench.sh; uses its helpers and context)

WG_IF_A=${PFX}wgA
WG_IF_B=${PFX}wgB
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
# Userspace WireGuard implementations configured by wg over their UAPI
# socket (wireguard-go, wireguard-go-new, boringtun): the daemon on each side,
# then wg setconf and the address once the socket is there.
wg_start_with() { # FN IF_A IF_B RUN CMD...: CMD IF starts the daemon for IF in the foreground
	local f=$1 ifa=$2 ifb=$3 run=$4
	shift 4
	ip netns exec "$S_NS" "$@" "$ifa" >"$TMP/$f-a-$run.log" 2>&1 &
	DAEMONS+=($!)
	ip netns exec "$C_NS" "$@" "$ifb" >"$TMP/$f-b-$run.log" 2>&1 &
	DAEMONS+=($!)
	wg_side "$S_NS" "$ifa" "$TMP/wg/a.conf" "$INNER_A" &
	WG_CFG=($!)
	wg_side "$C_NS" "$ifb" "$TMP/wg/b.conf" "$INNER_B" &
	WG_CFG+=($!)
}
wg_start() {
	# -f: foreground, so that our pid is the daemon; userspace only (no kernel module involved)
	wg_start_with wg "$WG_IF_A" "$WG_IF_B" "$1" env WG_PROCESS_FOREGROUND=1 wireguard-go -f
}
wg_started() { # after the first ping (or its timeout): did the configuration succeed?
	local p rc=0
	for p in "${WG_CFG[@]}"; do wait "$p" || rc=1; done
	WG_CFG=()
	return $rc
}
wg_check_tun() { # SYS IF: is it really a userspace implementation (a tun device)?
	if nsx "$S_NS" ip -d link show "$2" | grep -qw tun; then
		rec "$SCEN" "$1" device "$(jstr "tun (userspace $1)")"
	else
		rec "$SCEN" "$1" device '"NOT a tun device"'
		log "warning: $2 is not a tun device"
	fi
}
wg_check() { wg_check_tun wireguard-go "$WG_IF_A"; }
wg_infra_start() { true; }
wg_pkgs() { echo "wireguard-go wireguard-go"; echo "wg wireguard-tools"; }
wg_avail() { command -v wireguard-go >/dev/null 2>&1 && command -v wg >/dev/null 2>&1 || echo "not available"; }
wg_versions() {
	printf 'wireguard-go\t%s\n' "$(wireguard-go --version 2>&1 | head -n1)"
	printf 'wireguard-tools\t%s\n' "$(wg --version 2>&1 | head -n1)"
}
