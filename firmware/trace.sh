#!/usr/bin/env bash
# Where a firmware binary spends its instructions: runs BIN in QEMU (mps2-an386) one instruction
# per translation block (`-singlestep -d exec`), so the log has one line per executed instruction,
# and prints the executed instructions per function and per source line (addr2line; inlined code
# counts for the line it was inlined from).
#
#   bash firmware/trace.sh gpt            # the whole run of src/bin/gpt.rs
#   TOP=40 bash firmware/trace.sh mnist   # more rows
#
# The log (about 120 bytes per instruction) goes through a pipe, never to disk; the gpt binary
# (36 M instructions) takes about a minute. Needs qemu-system-arm and
# arm-none-eabi-addr2line (Debian: binutils-arm-none-eabi), and the tools of install-tools.sh.
set -euo pipefail
cd "$(dirname "$0")"
bin=${1:?usage: trace.sh BIN}
top=${TOP:-25}
export CARGO_TERM_COLOR=never
cargo build -q --release --bin "$bin" </dev/null
elf=target/thumbv7em-none-eabihf/release/$bin
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkfifo "$tmp/log"
# QEMU writes the log into a pipe, so nothing of it lands on disk. Lines:
# "Trace 0: 0xHOST [flags/PC/.../...] symbol".
awk '{ split($4, f, "/"); pcs[f[2]]++; fn[$NF]++; n++ }
     END {
         for (s in fn) printf "%12d %6.2f%%  %s\n", fn[s], 100 * fn[s] / n, s > "'"$tmp/fn"'"
         for (p in pcs) print p, pcs[p] > "'"$tmp/pcs"'"
     }' "$tmp/log" &
reader=$!
timeout "${QEMU_TIMEOUT:-900}" qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -singlestep \
    -display none -monitor none -serial none -semihosting-config enable=on,target=native \
    -d exec,nochain -D "$tmp/log" -kernel "$elf" </dev/null >/dev/null || true
wait "$reader"
echo "== instructions per function (top $top)"
sort -rn "$tmp/fn" | head -n "$top" | { command -v arm-none-eabi-c++filt >/dev/null && arm-none-eabi-c++filt || cat; } | sed 's/^/  /'
awk '{ t += $1 } END { printf "  %d instructions in all\n", t }' "$tmp/fn"
echo "== instructions per source line (top $top)"
cut -d' ' -f1 "$tmp/pcs" | sed 's/^/0x/' | arm-none-eabi-addr2line -e "$elf" >"$tmp/lines"
paste -d' ' "$tmp/pcs" "$tmp/lines" |
    awk '{ n = split($3, p, "/"); c[p[n]] += $2; t += $2 }
         END { for (k in c) printf "%12d %6.2f%%  %s\n", c[k], 100 * c[k] / t, k }' |
    sort -rn | head -n "$top" | sed 's/^/  /'
