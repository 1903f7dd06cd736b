#!/usr/bin/env bash
# Seed corpora for the fuzz targets, made from the committed models (firmware/models/*.aka):
# each whole file, truncations (header only, half, all but the last byte) and a few edited
# copies (single byte flips in the header and the body), plus the crafted files in fuzz/crafted/.
# Written to fuzz/seeds/TARGET/
# (not committed; regenerated on every run).
set -eu
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
models="$here/../firmware/models"
rm -rf "$here/seeds"
mkdir -p "$here/seeds/all"
for m in "$models"/*.aka; do
    b="$(basename "$m" .aka)"
    n=$(stat -c %s "$m")
    cp "$m" "$here/seeds/all/$b"
    for cut in 16 64 $((n / 2)) $((n - 1)); do
        [ "$cut" -gt 0 ] && [ "$cut" -lt "$n" ] && head -c "$cut" "$m" >"$here/seeds/all/$b.cut$cut"
    done
    # Byte flips at a few offsets (header fields and the start of the body).
    for off in 4 8 12 20 32 48; do
        [ "$off" -lt "$n" ] || continue
        cp "$m" "$here/seeds/all/$b.flip$off"
        printf '\xff' | dd of="$here/seeds/all/$b.flip$off" bs=1 seek="$off" conv=notrunc status=none
    done
done
# Small crafted files (absurd but well-formed shapes, from tools/tests/limits.rs:
# `AKA_CRAFTED_DIR=$PWD/fuzz/crafted cargo test -p aka-tools --test limits`).
cp "$here/crafted/"*.aka "$here/seeds/all/"
for t in sequential gpt inspect; do
    mkdir -p "$here/seeds/$t"
    cp "$here/seeds/all/"* "$here/seeds/$t/"
done
rm -rf "$here/seeds/all"
