#!/usr/bin/env bash
# Kill test: SIGKILLs ./train_mnist KILLS times (default 20), each run resuming
# (--resume auto) where the previous one died: odd kills at a random moment, even ones
# the moment a checkpoint write has begun. After every kill, each
# checkpoint left in the folder must be complete (./ckpt_hash reads it as the trainer
# does) and the next run must resume from the newest. Temp files show which kills landed
# inside a checkpoint write; at least one must. Finally the run is completed and its state
# must equal, bit for bit, an uninterrupted run of the same number of steps.
#   bash tests/e2e/kill_test.sh          (after `make train_mnist ckpt_hash`; `make kill-test`)
source "$(dirname "$0")/reliability_lib.sh"
KILLS=${KILLS:-20}
make_data
out="$WORK/run"
mkdir -p "$out"
mid_write=0
resumes=0
for ((i = 1; i <= KILLS; i++)); do
  args=(--steps 1000000 --out "$out")
  before=$(newest "$out")
  [ -n "$before" ] && args+=(--resume auto)
  "$TRAIN" "${TRAIN_ARGS[@]}" "${args[@]}" >"$WORK/run-$i.log" 2>&1 &
  pid=$!
  if ((i % 2)); then
    # A random moment, 0.5 to 3 s: start-up, loading, steps or checkpoint writes.
    sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.3f", 0.5 + 2.5 * r / 32768 }')"
  else
    # Aimed at a write: as soon as this run's temp file (<ckpt>.tmp.<pid>) appears.
    for _ in $(seq 5000); do compgen -G "$out/*.tmp.$pid" >/dev/null && break; sleep 0.002; done
  fi
  kill -KILL "$pid" 2>/dev/null || fail "run $i ended before it was killed: $(tail -n 3 "$WORK/run-$i.log")"
  wait "$pid" 2>/dev/null || true
  if ls "$out"/*.tmp.* >/dev/null 2>&1; then mid_write=$((mid_write + 1)); fi
  if grep -q "^resumed from" "$WORK/run-$i.log"; then  # (a run killed during start-up prints nothing)
    grep -q "^resumed from $before " "$WORK/run-$i.log" || fail "run $i did not resume from the newest, $before: $(grep '^resumed' "$WORK/run-$i.log")"
    resumes=$((resumes + 1))
  fi
  latest=$(newest "$out")
  if [ -n "$latest" ]; then
    for f in "$out"/ckpt-*.safetensors; do
      "$HASH" "$f" >/dev/null 2>"$WORK/hash.err" || fail "after kill $i, $f does not load: $(cat "$WORK/hash.err")"
    done
    echo "kill $i: newest complete checkpoint $(basename "$latest") loads$(ls "$out"/*.tmp.* >/dev/null 2>&1 && echo ' (killed mid-write)')"
  else
    echo "kill $i: killed before the first checkpoint"
  fi
done
latest=$(newest "$out")
[ -n "$latest" ] || fail "no checkpoint after $KILLS runs"
total=$(($(step_of "$latest") + 2))
train --steps "$total" --resume auto --out "$out" >"$WORK/final.log" 2>&1 || fail "final run: $(tail -n 3 "$WORK/final.log")"
! ls "$out"/*.tmp.* >/dev/null 2>&1 || fail "temp files of killed runs were not cleaned up: $(ls "$out")"
got=$(hash_of "$out/ckpt-$(printf %08d "$total").safetensors")
want=$(reference_hash "$total")
[ "$got" = "$want" ] || fail "after $KILLS kills and resumes, the state at step $total ($got) differs from an uninterrupted run ($want)"
[ "$resumes" -ge 1 ] || fail "no run lived long enough to resume; lengthen the random delays"
[ "$mid_write" -ge 1 ] || fail "none of the $KILLS kills landed inside a checkpoint write"
echo "kill_test: $KILLS SIGKILLs survived ($mid_write during a checkpoint write, $resumes resumes); step $total equals an uninterrupted run bit for bit (hash $got)"
