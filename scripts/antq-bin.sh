#!/usr/bin/env bash
# Sourced by the scripts: antq_bin prints the path of the release antq-tun,
# building it first if there is none.
antq_bin() {
	local root b
	root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	for b in "${CARGO_TARGET_DIR:-$root/target}/release/antq-tun" "$root/target/release/antq-tun"; do
		if [ -x "$b" ]; then
			echo "$b"
			return
		fi
	done
	echo "building antq-tun (release)" >&2
	(cd "$root" && cargo build --release --quiet --bin antq-tun)
	echo "${CARGO_TARGET_DIR:-$root/target}/release/antq-tun"
}
