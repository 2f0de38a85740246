# shellcheck shell=bash disable=SC2153,SC2154
# bench.sh system: quincy (QUIC VPN on quinn), TLS mode with its default key
# exchange (hybrid X25519 + ML-KEM-768), default MTU 1400 and Cubic.
# quincy-client and quincy-server are installed by cargo install --locked
# into the cache (without --locked its TLS mode breaks).  Client/server: the
# server in A owns 10.99.0.1/24 and hands B an address from it; the client
# authenticates with a certificate whose SHA-256 fingerprint is in the users
# file; the server's certificate (IP SAN = A's underlay address) is signed
# by a CA the client trusts (pki_make).

QCY_IF_A=${PFX}qcA
QCY_IF_B=${PFX}qcB
qcy_pkgs() { echo "openssl openssl"; }
qcy_install() { cargo_install quincy-client quincy-server; }
qcy_avail() {
	local b
	for b in quincy-client quincy-server; do
		[[ -x $CARGO_ROOT/bin/$b ]] || { echo "${CARGO_FAIL[quincy-client]:-not installed}"; return; }
	done
	command -v openssl >/dev/null 2>&1 || echo "openssl missing"
}
qcy_versions() {
	printf 'quincy\tquincy-server %s, quincy-client %s (cargo install --locked)\n' \
		"$(cargo_version quincy-server)" "$(cargo_version quincy-client)"
}

qcy_setup() {
	local d=$TMP/qcy fp
	pki_make "$d" "$S_UL"
	fp=$(openssl x509 -in "$d/client.crt" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : | tr 'A-F' 'a-f')
	cat >"$d/users.toml" <<CONF
[users.b]
authorized_keys = []
authorized_certs = ["sha256:$fp"]
CONF
	cat >"$d/server.toml" <<CONF
name = "antq-bench"
interface_name = "$QCY_IF_A"
bind_address = "$S_UL"
bind_port = 55555
tunnel_network = "$INNER_A/24"
users_file = "$d/users.toml"

[protocol]
mode = "tls"
certificate_file = "$d/server.crt"
certificate_key_file = "$d/server.key"

[log]
level = "info"
CONF
	cat >"$d/client.toml" <<CONF
connection_string = "$S_UL:55555"

[protocol]
mode = "tls"
trusted_certificate_paths = ["$d/ca.crt"]
client_certificate_file = "$d/client.crt"
client_certificate_key_file = "$d/client.key"

[network]
interface_name = "$QCY_IF_B"

[log]
level = "info"
CONF
}
qcy_infra_start() { true; }
qcy_start() {
	local run=$1
	ip netns exec "$S_NS" "$CARGO_ROOT/bin/quincy-server" --config-path "$TMP/qcy/server.toml" >"$TMP/qcy-a-$run.log" 2>&1 &
	DAEMONS+=($!)
	ip netns exec "$C_NS" "$CARGO_ROOT/bin/quincy-client" --config-path "$TMP/qcy/client.toml" >"$TMP/qcy-b-$run.log" 2>&1 &
	DAEMONS+=($!)
}
qcy_started() { true; }
qcy_check() { # the address the server gave B
	local a
	a=$(nsx "$C_NS" ip -4 -o addr show dev "$QCY_IF_B" 2>/dev/null | awk '{print $4}' | head -n1)
	rec "$SCEN" quincy client_address "$(jstr "${a:-unknown}")"
}
