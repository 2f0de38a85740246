# shellcheck shell=bash disable=SC2153,SC2154
# bench.sh system: fastd 22 (Debian fastd), tun mode, method salsa2012+umac
# (fastd's recommended fast method), MTU 1426.

FASTD_IF_A=${PFX}fdA
FASTD_IF_B=${PFX}fdB
FASTD_MTU=1426
fastd_pkgs() { echo "fastd fastd"; }
fastd_avail() { command -v fastd >/dev/null 2>&1 || echo "not installed"; }
fastd_versions() { printf 'fastd\t%s\n' "$(fastd --version 2>&1 | head -n1)"; }

fastd_conf() { # IF ME INNER SECRET PEER_KEY PEER_UL
	cat <<CONF
log level warn;
interface "$1";
mode tun;
bind $2:10000;
method "salsa2012+umac";
secret "$4";
mtu $FASTD_MTU;
on up sync "ip addr add $3/24 dev \$INTERFACE && ip link set up dev \$INTERFACE";
peer "peer" {
	key "$5";
$([[ -n $6 ]] && echo "	remote $6:10000;")
}
CONF
}

fastd_setup() {
	local d=$TMP/fastd sa sb pa pb
	mkdir -p "$d"
	sa=$(fastd --generate-key --machine-readable 2>/dev/null)
	sb=$(fastd --generate-key --machine-readable 2>/dev/null)
	printf 'secret "%s";\n' "$sa" >"$d/ka.conf"
	printf 'secret "%s";\n' "$sb" >"$d/kb.conf"
	pa=$(fastd --show-key --machine-readable -c "$d/ka.conf" 2>/dev/null)
	pb=$(fastd --show-key --machine-readable -c "$d/kb.conf" 2>/dev/null)
	fastd_conf "$FASTD_IF_A" "$S_UL" "$INNER_A" "$sa" "$pb" "$C_UL" >"$d/a.conf"
	fastd_conf "$FASTD_IF_B" "${C_UL:-0.0.0.0}" "$INNER_B" "$sb" "$pa" "$S_UL" >"$d/b.conf"
}
fastd_infra_start() { true; }
# fastd's first reply often comes after 17-19 s here (a handshake lost while
# the other side starts waits for the next one): allow 30 s
fastd_ttfp_timeout() { echo $((TTFP_TIMEOUT > 30 ? TTFP_TIMEOUT : 30)); }
fastd_start() {
	local run=$1
	ip netns exec "$S_NS" fastd -c "$TMP/fastd/a.conf" >"$TMP/fastd-a-$run.log" 2>&1 &
	DAEMONS+=($!)
	ip netns exec "$C_NS" fastd -c "$TMP/fastd/b.conf" >"$TMP/fastd-b-$run.log" 2>&1 &
	DAEMONS+=($!)
}
fastd_started() { true; }
fastd_check() { true; }
