#!/usr/bin/env bash
# Cross-checks the Windows and macOS code on Linux (Debian 12, x86_64), with
# Debian packages only:
#
#   clippy-windows       clippy -D warnings, --workspace --all-targets, for
#   clippy-macos-arm     x86_64-pc-windows-gnu, aarch64-apple-darwin and
#   clippy-macos-x86     x86_64-apple-darwin (clippy runs every rustc check
#                        first: a separate `cargo check` would add nothing)
#   wine-test            the workspace's unit tests (--lib) and every test
#                        target of antq-platform, built for Windows and run
#                        under Wine (no doc tests)
#
# clippy runs with --keep-going: an error in one target hides none of the
# others'.
#
# Usage: bash scripts/xcheck.sh [STEP...]    (default: all four)
# Exit status 0 only if there was no error, no warning and no failing test.
#
# How, and the traps:
# - Toolchain: Debian's rustc-web/cargo-web 1.96 with rust-web-src (the std
#   sources) build std for any target: RUSTC_BOOTSTRAP=1, -Zbuild-std. PATH
#   and RUSTC point at /usr/bin so rustup's proxies (and the toolchain the
#   rest of CI uses) are not involved.
# - Windows: mingw links; Wine 8 runs the tests. Wine 8 has no
#   bcryptprimitives.dll, from which Rust's std (>= 1.78) imports
#   ProcessPrng: a stand-in built with mingw goes into the Wine prefix.
# - macOS: no Apple SDK here, so nothing links; ring's C and assembly
#   compile with clang-16 in freestanding mode (RING_CORE_NOSTDLIBINC) and
#   a stub TargetConditionals.h.
# - Everything (builds, Wine prefix, stubs, logs) lives in target/xcheck:
#   a second run only rebuilds what changed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
X=$ROOT/target/xcheck
LOGS=$X/logs
WIN=x86_64-pc-windows-gnu
STEPS=("$@")
[ ${#STEPS[@]} -gt 0 ] || STEPS=(clippy-windows clippy-macos-arm clippy-macos-x86 wine-test)

# Tests Wine 8 cannot run (Wine's gaps, not antq's bugs; they run on
# Windows), each with the evidence:
WINE_SKIP=(
    # quinn-udp asks getsockopt(IPV6_V6ONLY) of every socket, IPv4 ones too:
    # Windows answers, Wine fails with WSAEOPNOTSUPP (os error 10045).
    socket::tests::relay_routes_are_stable_and_removable
    socket::tests::relay_routes_move_to_another_server_keeping_their_address
    socket::side::tests::raw_frames_by_socket_then_one_adopted_as_a_quic_path
    # "Call from ... to unimplemented function
    # iphlpapi.dll.InitializeIpForwardEntry, aborting" (the whole binary).
    imp::tests::route_rows_are_on_link
    # FindFirstFile on \\.\pipe\* fails with ERROR_BAD_DEV_TYPE (os error
    # 66): Wine cannot list named pipes.
    ipc::imp::tests::running_lists_a_served_pipe
    # Wine ignores FILE_FLAG_FIRST_PIPE_INSTANCE: a second CreateNamedPipe
    # with it succeeds where Windows refuses it (ERROR_ACCESS_DENIED).
    ipc::imp::tests::second_bind_is_refused_while_served
)

# ------------------------------------------------------------- install
packages=(rustc-web cargo-web rust-web-src rust-web-clippy gcc-mingw-w64-x86-64 clang-16 llvm-16 wine64)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "xcheck: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
        { echo "xcheck: apt-get install failed"; exit 2; }
fi

# ------------------------------------------------------------- toolchain
export PATH=/usr/bin:$PATH RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
unset RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER RUSTUP_TOOLCHAIN RUSTFLAGS
export CARGO_TARGET_DIR=$X CARGO_INCREMENTAL=0 CARGO_TERM_COLOR=never
# No debug info in the Windows test binaries: faster to build and link.
export CARGO_PROFILE_DEV_DEBUG=0
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
mkdir -p "$LOGS" "$X/stubs/include"
cat >"$X/stubs/include/TargetConditionals.h" <<'EOF'
/* Stand-in for the macOS SDK's header, enough for ring's C code. */
#pragma once
#define TARGET_OS_MAC 1
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
#define TARGET_OS_IOS 0
#define TARGET_OS_TV 0
#define TARGET_OS_WATCH 0
#define TARGET_OS_VISION 0
#define TARGET_OS_BRIDGE 0
#define TARGET_OS_SIMULATOR 0
#define TARGET_OS_EMBEDDED 0
#define TARGET_OS_MACCATALYST 0
EOF
for t in aarch64_apple_darwin x86_64_apple_darwin; do
    export "CC_$t=clang-16" "AR_$t=llvm-ar-16" \
        "CFLAGS_$t=-ffreestanding -nostdlibinc -DRING_CORE_NOSTDLIBINC -isystem $X/stubs/include"
done
rustc_v=$(rustc -V) clippy_v=$(cargo clippy -V)
[ "${clippy_v#clippy 0.1.}" = "$(rustc -V | cut -d. -f2)" ] ||
    { echo "xcheck: $rustc_v and $clippy_v do not match (rustup's proxy in the way?)"; exit 2; }
[ -d /usr/lib/rustlib/src/rust/library ] || { echo "xcheck: no std sources (rust-web-src)"; exit 2; }
echo "xcheck: $rustc_v, $(cargo -V), target dir $X"

# ------------------------------------------------------------- steps
summary=() failed=0 t_all=$SECONDS
# note NAME OK SECS COUNTS: one line of the summary
note() {
    summary+=("$(printf '%-17s %-4s %5ss  %s' "$1" "$2" "$3" "$4")")
    [ "$2" = ok ] || failed=1
}

# clippy STEP TARGET: errors and warnings of our own files, deduplicated
clippy() {
    local step=$1 target=$2 log=$LOGS/$1.log start=$SECONDS rc diags
    echo "xcheck: $step"
    nice -n 10 cargo clippy -Zbuild-std --target "$target" --workspace --all-targets --locked \
        --keep-going --message-format=short -- -D warnings >"$log" 2>&1
    rc=$?
    diags=$(grep -E '^[^/ ][^ ]*:[0-9]+:[0-9]+: (error|warning)' "$log" | sort -u)
    [ -z "$diags" ] || sed 's/^/    /' <<<"$diags"
    [ $rc = 0 ] || [ -n "$diags" ] || tail -20 "$log"
    local n; n=$(grep -c . <<<"$diags")
    note "$step" "$([ $rc = 0 ] && [ "$n" = 0 ] && echo ok || echo FAIL)" $((SECONDS - start)) \
        "$n error(s)/warning(s) in our code"
}

wine_setup() {
    export WINEPREFIX=$X/wine WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=;bcryptprimitives=n"
    export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=/usr/lib/wine/wine64
    [ -f "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" ] && return
    cat >"$X/stubs/bcryptprimitives.c" <<'EOF'
/* Wine 8 has no bcryptprimitives.dll; Rust's std imports ProcessPrng. */
#include <windows.h>
#define SystemFunction036 NTAPI SystemFunction036
#include <ntsecapi.h>
#undef SystemFunction036
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len) {
        ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!RtlGenRandom(data, n)) return FALSE;
        data += n; len -= n;
    }
    return TRUE;
}
EOF
    x86_64-w64-mingw32-gcc -O2 -shared -o "$X/stubs/bcryptprimitives.dll" \
        "$X/stubs/bcryptprimitives.c" -ladvapi32 &&
        timeout 300 /usr/lib/wine/wine64 wineboot --init >"$LOGS/wineboot.log" 2>&1 &&
        /usr/lib/wine/wineserver -w &&
        cp "$X/stubs/bcryptprimitives.dll" "$WINEPREFIX/drive_c/windows/system32/"
}

wine_test() {
    local log=$LOGS/wine-test.log start=$SECONDS rc=0 skips=() s
    echo "xcheck: wine-test"
    wine_setup || { note wine-test FAIL $((SECONDS - start)) "Wine setup failed"; return; }
    for s in "${WINE_SKIP[@]}"; do skips+=(--skip "$s"); done
    : >"$log"
    # the unit tests of both crates, then the platform's integration tests
    for set in "--workspace --lib" "-p antq-platform --test *"; do
        # shellcheck disable=SC2086 # (split on purpose; the * goes to cargo)
        (set -f; timeout 1800 nice -n 10 cargo test -Zbuild-std --target $WIN $set --locked \
            --no-fail-fast --message-format=short -- "${skips[@]}") >>"$log" 2>&1 || rc=1
    done
    /usr/lib/wine/wineserver -k 2>/dev/null
    local counts
    counts=$(awk '/^test result:/ {p += $4; f += $6; i += $8; s += $12; n++}
        END {printf "%d passed, %d failed, %d ignored, %d skipped (Wine) in %d binaries",
            p, f, i, s, n}' "$log")
    local problems
    problems=$(grep -E '^test .* FAILED$|^[^/ ][^ ]*:[0-9]+:[0-9]+: error|^wine: ' "$log" | sort -u)
    [ -z "$problems" ] || sed 's/^/    /' <<<"$problems"
    [ $rc = 0 ] || [ -n "$problems" ] || tail -20 "$log"
    note wine-test "$([ $rc = 0 ] && echo ok || echo FAIL)" $((SECONDS - start)) "$counts"
}

for step in "${STEPS[@]}"; do
    case $step in
    clippy-windows) clippy "$step" $WIN ;;
    clippy-macos-arm) clippy "$step" aarch64-apple-darwin ;;
    clippy-macos-x86) clippy "$step" x86_64-apple-darwin ;;
    wine-test) wine_test ;;
    *) echo "xcheck: unknown step $step"; exit 2 ;;
    esac
done

echo
echo "xcheck summary ($((SECONDS - t_all))s; logs in $LOGS):"
printf '  %s\n' "${summary[@]}"
[ $failed = 0 ] && echo "xcheck: OK" || echo "xcheck: FAILED"
exit $failed
