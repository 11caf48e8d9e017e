#!/usr/bin/env bash
# Runs each libFuzzer harness for a bounded time (`make fuzz` builds them first):
#   bash tools/run_fuzzers.sh SECONDS NAME...      (NAME: idx, safetensors, flags, png, cifar)
# FUZZ_JOBS harnesses run at a time (default: the number of cores), each on one core.
# Each runs on the committed seeds (tests/fuzz/corpus/NAME, read only) plus its own
# working corpus (build/fuzz/corpus/NAME), with the dictionary tests/fuzz/NAME.dict when
# there is one. A crash, leak, timeout, out-of-memory or sanitizer report fails the run;
# the input is saved as build/fuzz/artifacts/NAME-*: add it to tests/fuzz/regressions/NAME/
# once fixed. The per-harness figures go to build/fuzz/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=$1
shift
jobs=${FUZZ_JOBS:-$(nproc)}
mkdir -p build/fuzz/artifacts
summary=build/fuzz/summary.txt
: >"$summary"

# fuzz_one NAME: one harness for $seconds; its summary line to build/fuzz/NAME.summary.
fuzz_one() {
  local name=$1 dict=() status=0
  mkdir -p "build/fuzz/corpus/$name"
  [ -f "tests/fuzz/$name.dict" ] && dict=(-dict="tests/fuzz/$name.dict")
  echo "== fuzz_$name for ${seconds}s"
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: 2 GB is a runaway allocation.
  if ! "build/fuzz/fuzz_$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="build/fuzz/artifacts/$name-" "${dict[@]}" \
      "build/fuzz/corpus/$name" "tests/fuzz/corpus/$name" >"build/fuzz/$name.log" 2>&1; then
    echo "fuzz_$name: FAILED; the report (build/fuzz/$name.log) ends with:" >&2
    tail -n 40 "build/fuzz/$name.log" >&2
    status=1
  fi
  local execs cov corpus
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "build/fuzz/$name.log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "build/fuzz/$name.log" | tail -1 | cut -d' ' -f2)
  corpus=$(ls "build/fuzz/corpus/$name" | wc -l)
  echo "fuzz_$name: ${execs:-?} executions in ${seconds}s, ${cov:-?} coverage points, $corpus inputs in the working corpus" \
    >"build/fuzz/$name.summary"
  return $status
}

status=0
running=0
for name in "$@"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n || status=1
    running=$((running - 1))
  fi
  fuzz_one "$name" &
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
  wait -n || status=1
  running=$((running - 1))
done
for name in "$@"; do cat "build/fuzz/$name.summary"; done | tee "$summary"
exit $status
