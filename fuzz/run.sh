#!/usr/bin/env bash
# Fuzzing campaign for aka (issue 11): runs every cargo-fuzz target for SECONDS each and prints
# executions, exec/s and crashes per target.
#
#   bash fuzz/run.sh SECONDS [TARGET...]       (default targets: sequential gpt inspect)
#   bash fuzz/run.sh --runs N [TARGET...]      (each target until N executions, no time limit)
#
# Needs the nightly toolchain (`rustup run nightly`) and cargo-fuzz
# (`cargo install cargo-fuzz --locked`). The seed corpora are made at run time from the committed
# models (firmware/models/*.aka) plus truncated and edited copies (see seed.sh); fuzz/corpus/
# keeps what libFuzzer finds between runs and is not committed. Crashing inputs are copied to
# fuzz/regressions/TARGET-*. Exit status: 0 if no target crashed, 1 otherwise, 2 if the
# toolchain is missing.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
runs_goal=0
if [ "${1:-}" = "--runs" ]; then
    runs_goal="${2:?--runs needs a count}"
    case "$runs_goal" in ''|*[!0-9]*) echo "fuzz: --runs needs a whole number, got '$runs_goal'" >&2; exit 2;; esac
    secs=0
    shift 2
else
    secs="${1:-60}"
    case "$secs" in ''|*[!0-9]*) echo "fuzz: SECONDS must be a whole number, got '$secs'" >&2; exit 2;; esac
    shift || true
fi
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(sequential gpt inspect)

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: no nightly toolchain (rustup run nightly) — fuzzing skipped" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz not installed (cargo install cargo-fuzz --locked) — fuzzing skipped" >&2
    exit 2
fi

cd "$here" || exit 2
bash "$here/seed.sh" || exit 2
mkdir -p logs regressions
status=0
summary=()
for t in "${targets[@]}"; do
    echo "== $t: building" >&2
    if ! cargo +nightly fuzz build -O "$t" >"logs/$t.build.log" 2>&1; then
        echo "fuzz: build of $t failed (see fuzz/logs/$t.build.log)" >&2
        tail -20 "logs/$t.build.log" >&2
        status=1
        summary+=("$t: BUILD FAILED")
        continue
    fi
    if [ "$runs_goal" -gt 0 ]; then
        limit=(-runs="$runs_goal")
        echo "== $t: fuzzing for $runs_goal executions" >&2
    else
        limit=(-max_total_time="$secs")
        echo "== $t: fuzzing for ${secs}s" >&2
    fi
    mkdir -p "corpus/$t" "artifacts/$t"
    start=$(date +%s)
    # -rss_limit_mb / -timeout: an input that allocates > 2 GiB or runs > 10 s is a finding.
    cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
        "${limit[@]}" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" >"logs/$t.log" 2>&1
    rc=$?
    wall=$(( $(date +%s) - start ))
    # libFuzzer's "Done N runs in S second(s)" line, else the last "#N ..." status line.
    runs=$(grep -Eo 'Done [0-9]+ runs' "logs/$t.log" | tail -1 | grep -Eo '[0-9]+')
    [ -z "$runs" ] && runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "logs/$t.log" | tail -1 | grep -Eo '[0-9]+$')
    [ -z "$runs" ] && runs=$(grep -Eo '^#[0-9]+' "logs/$t.log" | tail -1 | tr -d '#')
    [ -z "$runs" ] && runs=0
    rate=$(grep -Eo 'exec/s: *[0-9]+' "logs/$t.log" | tail -1 | grep -Eo '[0-9]+$')
    [ -z "$rate" ] && rate=$(( runs / (wall > 0 ? wall : 1) ))
    crashes=0
    for f in artifacts/"$t"/*; do
        [ -e "$f" ] || continue
        crashes=$((crashes + 1))
        cp "$f" "regressions/$t-$(basename "$f")"
    done
    [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ] && crashes="? (exit $rc, see fuzz/logs/$t.log)"
    [ "$crashes" != 0 ] && status=1
    summary+=("$(printf '%-10s runs=%-10s exec/s=%-8s wall=%ss crashes=%s corpus=%s' \
        "$t" "$runs" "$rate" "$wall" "$crashes" "$(ls "corpus/$t" | wc -l)")")
done
if [ "$runs_goal" -gt 0 ]; then
    echo "== fuzz summary ($runs_goal executions per target)"
else
    echo "== fuzz summary (${secs}s per target)"
fi
printf '%s\n' "${summary[@]}"
exit "$status"
