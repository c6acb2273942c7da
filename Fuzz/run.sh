#!/usr/bin/env bash
# Builds the libFuzzer targets of Fuzz/Package.swift (fuzzer and address sanitizers, Core
# instrumented too) in their own scratch path, .build-fuzz, and runs each for N seconds on a
# scratch copy of its seeds in Fuzz/Corpus/<target>; new inputs never land in the committed corpus.
# --seconds 0 runs the seeds only. Targets run --jobs at a time (default: one per CPU). Exits
# non-zero when a target finds a crash, a failed check, a leak, a timeout or an out-of-memory,
# printing the reproducer's path.
#
#   Fuzz/run.sh [--seconds N] [--jobs N] [TARGET...]     (default 60 s each, all targets)
set -euo pipefail
fuzz="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$fuzz")"
scratch="$root/.build-fuzz"
seconds=60
jobs="$(nproc 2>/dev/null || echo 1)"
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="${2:?--seconds takes a number}"; shift 2 ;;
        --seconds=*) seconds="${1#--seconds=}"; shift ;;
        --jobs) jobs="${2:?--jobs takes a number}"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        -*) echo "fuzz: unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
case "$seconds$jobs" in ''|*[!0-9]*) echo "fuzz: --seconds and --jobs take whole numbers" >&2; exit 2 ;; esac
[ "$jobs" -ge 1 ] || jobs=1
[ ${#targets[@]} -gt 0 ] || targets=(FuzzJSONBody FuzzSSE FuzzMultipart FuzzConfig FuzzRealtime)
for target in "${targets[@]}"; do
    [ -d "$fuzz/Corpus/$target" ] || { echo "fuzz: no target $target (see Fuzz/Corpus)" >&2; exit 2; }
done

# SwiftPM's --sanitize passes -sanitize=fuzzer and -sanitize=address to swiftc as two flags, and
# swiftc keeps only the last: the -Xswiftc flag (which comes after them) instruments Swift code
# for both. --sanitize still covers the C targets (libyaml among them) and the link.
build=(swift build --package-path "$fuzz" --scratch-path "$scratch" -c debug
       --sanitize fuzzer --sanitize address -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library)
mkdir -p "$scratch"
echo "fuzz: building the fuzz targets (log: $scratch/fuzz-build.log)…"
start=$SECONDS
if ! "${build[@]}" > "$scratch/fuzz-build.log" 2>&1; then
    grep -v "Cannot export local symbol" "$scratch/fuzz-build.log" | tail -50 >&2
    echo "fuzz: build failed (log: $scratch/fuzz-build.log)" >&2
    exit 1
fi
echo "fuzz: built in $((SECONDS - start)) s"
bin="$("${build[@]}" --show-bin-path)"

# libFuzzer reports a trap itself; Swift's backtracer would race ASan for it.
export SWIFT_BACKTRACE=enable=no
work="$(mktemp -d "${TMPDIR:-/tmp}/chatazure-fuzz.XXXXXX")"
if [ "$seconds" -eq 0 ]; then limit=(-runs=0); else limit=(-max_total_time="$seconds"); fi

# One target: libFuzzer on a scratch copy of the seeds; its exit status lands in $work/TARGET/status.
fuzz_target() {
    local target="$1" status=0
    "$bin/$target" "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$work/$target/artifacts/" "$work/$target/corpus" > "$work/$target/log" 2>&1 || status=$?
    echo "$status" > "$work/$target/status"
}

echo "fuzz: ${seconds} s per target, $jobs at a time"
running=0
for target in "${targets[@]}"; do
    mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
    cp "$fuzz/Corpus/$target/"* "$work/$target/corpus/"
    fuzz_target "$target" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
done
wait

failed=0
for target in "${targets[@]}"; do
    log="$work/$target/log"
    status="$(cat "$work/$target/status")"
    artifacts=("$work/$target/artifacts/"*)
    if [ "$status" -ne 0 ] || [ -e "${artifacts[0]}" ]; then
        failed=1
        echo "fuzz: $target FAILED (exit $status)" >&2
        grep -v "^INFO: \|^#[0-9]" "$log" | tail -60 >&2
        for artifact in "${artifacts[@]}"; do
            [ -e "$artifact" ] || continue
            echo "fuzz: reproducer $artifact ($(wc -c < "$artifact") bytes); replay: $bin/$target $artifact" >&2
            [ "$(wc -c < "$artifact")" -le 4096 ] && echo "fuzz:   base64 $(base64 -w0 "$artifact")" >&2
        done
        continue
    fi
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")"
    last="$(grep -E '^#[0-9]+' "$log" | tail -1 || true)"
    cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<< "$last")"
    corpus="$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<< "$last")"
    seeds_cov="$(grep -m1 'INITED' "$log" | sed -n 's/.* cov: \([0-9]*\).*/\1/p' || true)"
    echo "fuzz: $target ok: ${runs:-?} runs, ${rate:-?} exec/s, cov ${seeds_cov:-?} -> ${cov:-?}, corpus ${corpus:-?}"
done
if [ "$failed" -ne 0 ]; then
    echo "fuzz: failures above; logs and corpora in $work" >&2
    exit 1
fi
rm -rf "$work"
