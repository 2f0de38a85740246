# shellcheck shell=bash disable=SC2153,SC2154
# bench.sh system: OpenVPN 2.6 (Debian openvpn), TLS point-to-point over UDP,
# AES-256-GCM, userspace data channel (--disable-dco), tun MTU 1500, no
# compression, --fast-io; certificates made by the script (pki_make).

OVPN_IF_A=${PFX}ovA
OVPN_IF_B=${PFX}ovB
ovpn_pkgs() { echo "openvpn openvpn"; echo "openssl openssl"; }
ovpn_avail() {
	command -v openvpn >/dev/null 2>&1 || { echo "not installed"; return; }
	command -v openssl >/dev/null 2>&1 || echo "openssl missing"
}
ovpn_versions() { printf 'openvpn\t%s\n' "$(openvpn --version 2>&1 | head -n1)"; }

ovpn_setup() { pki_make "$TMP/ovpn" "$S_UL"; }
ovpn_infra_start() { true; }
ovpn_common=(--proto udp --dev-type tun --tun-mtu 1500 --data-ciphers AES-256-GCM --cipher AES-256-GCM
	--disable-dco --fast-io --dh none --verb 3 --ping 10)
ovpn_start() {
	local run=$1 d=$TMP/ovpn
	ip netns exec "$S_NS" openvpn "${ovpn_common[@]}" --dev "$OVPN_IF_A" --local "$S_UL" --lport 1194 \
		--ifconfig "$INNER_A" "$INNER_B" --tls-server --ca "$d/ca.crt" --cert "$d/server.crt" --key "$d/server.key" \
		--remote-cert-tls client >"$TMP/ovpn-a-$run.log" 2>&1 &
	DAEMONS+=($!)
	ip netns exec "$C_NS" openvpn "${ovpn_common[@]}" --dev "$OVPN_IF_B" --nobind --remote "$S_UL" 1194 \
		--ifconfig "$INNER_B" "$INNER_A" --tls-client --ca "$d/ca.crt" --cert "$d/client.crt" --key "$d/client.key" \
		--remote-cert-tls server >"$TMP/ovpn-b-$run.log" 2>&1 &
	DAEMONS+=($!)
}
ovpn_started() { true; }
ovpn_check() { # the data channel cipher really negotiated
	local c
	c=$(grep -o "Data Channel: cipher '[^']*'" "$TMP"/ovpn-b-*.log 2>/dev/null | tail -n1 | cut -d"'" -f2)
	rec "$SCEN" openvpn data_cipher "$(jstr "${c:-unknown}")"
}
