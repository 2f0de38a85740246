# shellcheck shell=bash disable=SC2153,SC2154
# bench.sh system: boringtun (Cloudflare's userspace WireGuard in Rust),
# boringtun-cli installed by cargo install --locked into the cache,
# configured by wg over its UAPI socket like wireguard-go.

BTUN_IF_A=${PFX}btA
BTUN_IF_B=${PFX}btB
btun_pkgs() { echo "wg wireguard-tools"; }
btun_install() { cargo_install boringtun-cli; }
btun_avail() {
	[[ -x $CARGO_ROOT/bin/boringtun-cli ]] || { echo "${CARGO_FAIL[boringtun-cli]:-not installed}"; return; }
	command -v wg >/dev/null 2>&1 || echo "wg missing"
}
btun_versions() { printf 'boringtun\tboringtun-cli %s (cargo install --locked)\n' "$(cargo_version boringtun-cli)"; }
btun_setup() { wg_setup; }
btun_infra_start() { true; }
# --foreground: our pid is the daemon; WG_SUDO=1 and --disable-drop-privileges:
# it runs as root throughout (as the others here do)
btun_start() {
	wg_start_with btun "$BTUN_IF_A" "$BTUN_IF_B" "$1" env WG_SUDO=1 \
		"$CARGO_ROOT/bin/boringtun-cli" --foreground --disable-drop-privileges
}
btun_started() { wg_started; }
btun_check() { wg_check_tun boringtun "$BTUN_IF_A"; }
