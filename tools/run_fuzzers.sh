#!/usr/bin/env bash
# Runs each libFuzzer harness for a bounded time (`make fuzz` builds them first):
#   bash tools/run_fuzzers.sh SECONDS NAME...      (NAME: idx, safetensors, flags, png, cifar)
# Each runs on the committed seeds (tests/fuzz/corpus/NAME, read only) plus its own
# working corpus (build/fuzz/corpus/NAME), with the dictionary tests/fuzz/NAME.dict when
# there is one. A crash, leak, timeout, out-of-memory or sanitizer report fails the run;
# the input is saved as build/fuzz/artifacts/NAME-*: add it to tests/fuzz/regressions/NAME/
# once fixed. The per-harness figures go to build/fuzz/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=$1
shift
mkdir -p build/fuzz/artifacts
summary=build/fuzz/summary.txt
: >"$summary"
status=0
for name in "$@"; do
  mkdir -p "build/fuzz/corpus/$name"
  dict=()
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
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "build/fuzz/$name.log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "build/fuzz/$name.log" | tail -1 | cut -d' ' -f2)
  corpus=$(ls "build/fuzz/corpus/$name" | wc -l)
  line="fuzz_$name: ${execs:-?} executions in ${seconds}s, ${cov:-?} coverage points, $corpus inputs in the working corpus"
  echo "$line" | tee -a "$summary"
done
exit $status
