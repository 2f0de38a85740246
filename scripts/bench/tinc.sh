# shellcheck shell=bash disable=SC2153,SC2154
# bench.sh system: tinc 1.0 (Debian tinc), router mode, AES-256-CBC + HMAC-SHA256
# (tinc 1.0's strongest choice: it has no AEAD cipher; the default is Blowfish/SHA1).

TINC_IF_A=${PFX}tincA
TINC_IF_B=${PFX}tincB
tinc_pkgs() { echo "tincd tinc"; }
tinc_avail() { command -v tincd >/dev/null 2>&1 || echo "not installed"; }
tinc_versions() { printf 'tinc\t%s\n' "$(tincd --version 2>&1 | head -n1)"; }

tinc_node() { # NAME IF INNER [CONNECT_TO]
	local d=$TMP/tinc/$1
	mkdir -p "$d/hosts"
	{
		echo "Name = $1"
		echo "Interface = $2"
		echo "Mode = router"
		echo "AddressFamily = ipv4"
		echo "Port = 655"
		[[ -n ${4:-} ]] && echo "ConnectTo = $4"
	} >"$d/tinc.conf"
	# shellcheck disable=SC2016 # $INTERFACE: set by tincd for the script
	printf '#!/bin/sh\nip addr add %s/24 dev "$INTERFACE"\nip link set "$INTERFACE" up\n' "$3" >"$d/tinc-up"
	chmod +x "$d/tinc-up"
}

tinc_setup() {
	tinc_node a "$TINC_IF_A" "$INNER_A"
	tinc_node b "$TINC_IF_B" "$INNER_B" a
	local n ul inner
	for n in a b; do
		ul=$S_UL inner=$INNER_A
		[[ $n == b ]] && ul=$C_UL inner=$INNER_B
		{
			[[ -n $ul ]] && echo "Address = $ul"
			echo "Port = 655"
			echo "Subnet = $inner/32"
			echo "Cipher = aes-256-cbc"
			echo "Digest = sha256"
		} >"$TMP/tinc/$n/hosts/$n"
		tincd -c "$TMP/tinc/$n" -K 2048 </dev/null >/dev/null 2>&1
	done
	cp "$TMP/tinc/a/hosts/a" "$TMP/tinc/b/hosts/a"
	cp "$TMP/tinc/b/hosts/b" "$TMP/tinc/a/hosts/b"
}
tinc_infra_start() { true; }
tinc_start() {
	local run=$1
	ip netns exec "$S_NS" tincd -c "$TMP/tinc/a" -D -d1 --pidfile="$TMP/tinc/a.pid" >"$TMP/tinc-a-$run.log" 2>&1 &
	DAEMONS+=($!)
	ip netns exec "$C_NS" tincd -c "$TMP/tinc/b" -D -d1 --pidfile="$TMP/tinc/b.pid" >"$TMP/tinc-b-$run.log" 2>&1 &
	DAEMONS+=($!)
}
tinc_started() { true; }
tinc_check() { true; }
