#!/usr/bin/env bash
# The hardening issue's defects, reproduced against one build (the table in docs/RESULTS.md#hardening):
#   bash scripts/hardening-repro.sh REL_DIR DEBUG_DIR OUT_DIR
# with REL_DIR/DEBUG_DIR holding `aka` and `aka-trainer` (release and debug builds of the commit to
# test, e.g. an older one in a git worktree). Each command runs under `ulimit -v 4 GiB` and
# `timeout 30`; prints the exit code, the time and the first lines of output. Run from the root.
set -u
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
rel="$1"; dbg="$2"; out="$3"
rm -rf "$out"; mkdir -p "$out"
crafted="$(cd "$(dirname "$0")/.." && pwd)/fuzz/crafted"
run() { # label, command...
    local label="$1"; shift
    local t0=$(date +%s.%N)
    ( ulimit -v 4194304; timeout 30 "$@" ) >"$out/o.txt" 2>"$out/e.txt"
    local rc=$?
    local t1=$(date +%s.%N)
    printf '### %s\n$ %s\nexit %s, %.1f s\n' "$label" "$*" "$rc" "$(echo "$t1 - $t0" | bc)"
    head -3 "$out/e.txt" | cut -c1-300 | sed 's/^/stderr: /'
    grep -E "compute|work |diverged|non-finite|NaN|val loss|true label|^class" "$out/o.txt" | head -3 | cut -c1-200 | sed 's/^/stdout: /'
    [ "$rc" = 124 ] && echo "(killed by timeout 30 s)"
    echo
}
echo "## 2/3 crafted files (ulimit -v 4 GiB, timeout 30 s)"
for b in "$rel" "$dbg"; do
  for f in pool input conv; do
    run "$f.aka inspect ($b)" "$b/aka" inspect "$crafted/$f.aka"
    run "$f.aka run ($b)" "$b/aka" run "$crafted/$f.aka" --mnist-index 0
  done
  run "inspect /dev/zero ($b)" "$b/aka" inspect /dev/zero
done
echo "## 5 label 113"
python3 - "$out/idx" <<'PY'
import sys, os, struct
d=sys.argv[1]; os.makedirs(d, exist_ok=True)
open(f"{d}/t10k-images-idx3-ubyte","wb").write(struct.pack(">IIII",0x803,2,2,2)+bytes([200]*8))
open(f"{d}/t10k-labels-idx1-ubyte","wb").write(struct.pack(">II",0x801,2)+bytes([3,113]))
PY
run "label 113" "$rel/aka" run "$crafted/four.aka" --mnist-index 1 --data "$out/idx"
echo "## 5 arguments checked first"
run "mnist --calibration 0" "$rel/aka-trainer" mnist --epochs 1 --calibration 0 --out "$out/cal0"
run "mnist --calibration-percentile 150" "$rel/aka-trainer" mnist --epochs 1 --calibration-percentile 150 --out "$out/pct"
run "gpt --block 1000000000" "$rel/aka-trainer" gpt --block 1000000000 --steps 1 --out "$out/blk"
"$rel/aka-trainer" gpt --steps 2 --out "$out/g" >/dev/null 2>&1
run "gpt --eval-only --batch-size 0" "$rel/aka-trainer" gpt --eval-only --batch-size 0 --out "$out/g"
echo "## 4 NaN resume"
"$rel/aka-trainer" mnist --epochs 1 --out "$out/m" --no-export >/dev/null 2>&1
sha0=$(sha256sum "$out/m/checkpoint.bin" | cut -c1-16)
run "mnist --resume --lr nan" "$rel/aka-trainer" mnist --epochs 2 --resume --lr nan --out "$out/m" --no-export
sha1=$(sha256sum "$out/m/checkpoint.bin" | cut -c1-16)
echo "checkpoint sha256 before $sha0, after $sha1"
run "mnist --resume (again)" "$rel/aka-trainer" mnist --epochs 3 --resume --out "$out/m" --no-export
echo "## 1 wide head"
( "$rel/aka-trainer" gpt --layers 1 --heads 1 --dim 512 --block 16 --steps 40 --batch-size 8 --out "$out/w" 2>&1 ) > "$out/w.log"
echo "exit $?"; grep -iE "agreement|val loss|int8|refus|error" "$out/w.log" | tail -6
