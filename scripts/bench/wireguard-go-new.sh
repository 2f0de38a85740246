# shellcheck shell=bash disable=SC2153,SC2154
# bench.sh system: wireguard-go-new, the newest wireguard-go Debian builds
# (bookworm-backports 0.0.20231211, the version of trixie; it has the TUN
# GSO/GRO offload that bookworm's 0.0.20220316 lacks).  Fetched once with
# apt-get download through a private sources list and lists directory (the
# system's apt sources are not touched) and unpacked into the cache:
# $CACHE/wireguard-go-new/usr/bin/wireguard-go.  Configured like wireguard-go.

WGN_IF_A=${PFX}wgnA
WGN_IF_B=${PFX}wgnB
WGN_DIR=$CACHE/wireguard-go-new
WGN_BIN=$WGN_DIR/usr/bin/wireguard-go
WGN_SUITE=bookworm-backports
wgn_pkgs() { echo "wg wireguard-tools"; }
wgn_install() {
	[[ -x $WGN_BIN ]] && return 0
	local d=$CACHE/apt deb
	mkdir -p "$d/lists/partial" "$d/archives/partial" "$d/dl"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $WGN_SUITE main" >"$d/sources.list"
	local -a o=(-o "Dir::Etc::sourcelist=$d/sources.list" -o "Dir::Etc::sourceparts=-"
		-o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d" -o "APT::Get::List-Cleanup=0")
	log "fetching wireguard-go from $WGN_SUITE (private apt lists in $d)"
	apt-get "${o[@]}" update -qq >/dev/null 2>&1 || { log "wireguard-go-new: apt-get update of $WGN_SUITE failed"; return 0; }
	rm -f "$d"/dl/*.deb
	(cd "$d/dl" && apt-get "${o[@]}" download -qq "wireguard-go/$WGN_SUITE" >/dev/null 2>&1) || { log "wireguard-go-new: download failed"; return 0; }
	deb=$(find "$d/dl" -maxdepth 1 -name 'wireguard-go_*.deb' | head -n1)
	[[ -n $deb ]] || return 0
	rm -rf "$WGN_DIR"
	dpkg-deb -x "$deb" "$WGN_DIR" && dpkg-deb -f "$deb" Version >"$WGN_DIR/debian-version"
}
wgn_avail() {
	[[ -x $WGN_BIN ]] || { echo "not obtainable"; return; }
	command -v wg >/dev/null 2>&1 || echo "wg missing"
}
wgn_versions() {
	printf 'wireguard-go-new\t%s (Debian package %s, %s)\n' "$("$WGN_BIN" --version 2>&1 | head -n1)" \
		"$(cat "$WGN_DIR/debian-version" 2>/dev/null)" "$WGN_SUITE"
}
wgn_setup() { wg_setup; }
wgn_infra_start() { true; }
wgn_start() { wg_start_with wgn "$WGN_IF_A" "$WGN_IF_B" "$1" env WG_PROCESS_FOREGROUND=1 "$WGN_BIN" -f; }
wgn_started() { wg_started; }
wgn_check() { wg_check_tun wireguard-go-new "$WGN_IF_A"; }
