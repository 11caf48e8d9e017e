#!/usr/bin/env bash
# Fault tests of ./train_mnist (after `make train_mnist ckpt_hash`; `make kill-test`):
#   1. a file size limit (ulimit -f, a full disk as far as the writer can tell) stops
#      training with a clear message naming the last good checkpoint, which is intact;
#   2. the output folder vanishing mid-run does the same;
#   3. SIGINT saves a checkpoint and exits 0, and resuming from it is exact;
#   4. an injected NaN stops training (exit 3) with the report (step, t, first non-finite
#      op), keeps the last good checkpoint, and --resume continues exactly from it; the
#      report's advice (resume with a lower --lr) works when followed;
#   5. every training option's run resumes through ./train_mnist, and ckpt_hash accepts it;
#   6. bad flags are refused up front, naming the flag;
#   7. the output folder: a second trainer, a fresh run over another run, a bad --out,
#      stale temp files;
#   8. ./sample and ./eval (`make sample eval bench`) refuse a checkpoint with a NaN or Inf
#      weight naming the tensor, name the file in every error, and check --threads as
#      ./train_mnist does (as does ./bench);
#   9. sizes are checked before anything is allocated: every tool refuses T above the one
#      bound, and the readers refuse /dev/zero and an 8 GB sparse file, under ulimit -v.
source "$(dirname "$0")/reliability_lib.sh"
make_data

echo "== write error: ulimit -f"
out="$WORK/fsize"
train --steps 2 --out "$out" >"$WORK/fsize-1.log" 2>&1 || fail "setup run: $(tail -n 3 "$WORK/fsize-1.log")"
good="$out/ckpt-00000002.safetensors"
good_hash=$(hash_of "$good")
set +e
(ulimit -f 2048; train --steps 5 --resume auto --out "$out") >"$WORK/fsize-2.log" 2>&1  # 2 MB < 18 MB
status=$?
set -e
[ "$status" -eq 1 ] || fail "under ulimit -f, exit status $status (want 1; 153 is death by SIGXFSZ): $(tail -n 3 "$WORK/fsize-2.log")"
grep -q "training stopped at step 3: cannot write checkpoint .*ckpt-00000003.safetensors" "$WORK/fsize-2.log" ||
  fail "no clear message: $(tail -n 3 "$WORK/fsize-2.log")"
grep -q "File too large" "$WORK/fsize-2.log" || fail "the message lacks the system's reason: $(tail -n 2 "$WORK/fsize-2.log")"
grep -q "the last good checkpoint is $good" "$WORK/fsize-2.log" || fail "the message does not name $good"
[ "$(hash_of "$good")" = "$good_hash" ] || fail "$good changed"
[ -f "$out/ckpt-00000001.safetensors" ] || fail "--keep removed a checkpoint although the new one was never written"
! ls "$out"/*.tmp.* "$out"/ckpt-00000003.safetensors >/dev/null 2>&1 || fail "a partial checkpoint was left: $(ls "$out")"
echo "ok: $(grep -o 'training stopped.*' "$WORK/fsize-2.log" | cut -c1-150)..."

echo "== write error: the output folder vanishes"
out="$WORK/vanish"
"$TRAIN" "${TRAIN_ARGS[@]}" --steps 1000000 --out "$out" >"$WORK/vanish.log" 2>&1 &
pid=$!
for _ in $(seq 600); do [ -f "$out/ckpt-00000002.safetensors" ] && break; sleep 0.1; done
mv "$out" "$out.moved"
set +e
wait "$pid"
status=$?
set -e
[ "$status" -eq 1 ] || fail "exit status $status, want 1: $(tail -n 3 "$WORK/vanish.log")"
grep -q "cannot write checkpoint.*No such file or directory; check that the folder exists and is writable" "$WORK/vanish.log" ||
  fail "no clear message: $(tail -n 3 "$WORK/vanish.log")"
for f in "$out.moved"/ckpt-*.safetensors; do "$HASH" "$f" >/dev/null || fail "$f is damaged"; done
echo "ok: $(grep -o 'cannot write checkpoint.*' "$WORK/vanish.log" | cut -c1-150)..."

echo "== SIGINT saves and exits cleanly"
out="$WORK/sigint"
"$TRAIN" "${TRAIN_ARGS[@]}" --steps 1000000 --ckpt-every 1000 --out "$out" >"$WORK/sigint.log" 2>&1 &
pid=$!
for _ in $(seq 600); do grep -q "^step *3/" "$WORK/sigint.log" && break; sleep 0.1; done
kill -INT "$pid"
set +e
wait "$pid"
status=$?
set -e
[ "$status" -eq 0 ] || fail "after SIGINT, exit status $status: $(tail -n 3 "$WORK/sigint.log")"
grep -q "^interrupted: checkpoint saved" "$WORK/sigint.log" || fail "no 'interrupted' line: $(tail -n 3 "$WORK/sigint.log")"
saved=$(newest "$out")
[ -n "$saved" ] || fail "SIGINT left no checkpoint"
k=$(step_of "$saved")
last=$(grep -o '^step *[0-9]*' "$WORK/sigint.log" | tail -n 1 | grep -o '[0-9]*')
[ "$k" -eq "$last" ] || fail "SIGINT saved step $k, the last step done was $last"
train --steps $((k + 2)) --resume auto --out "$out" >"$WORK/sigint-2.log" 2>&1 || fail "resume: $(tail -n 3 "$WORK/sigint-2.log")"
[ "$(hash_of "$(newest "$out")")" = "$(reference_hash $((k + 2)))" ] || fail "resumed after SIGINT, step $((k + 2)) differs from an uninterrupted run"
echo "ok: SIGINT at step $k saved $(basename "$saved"), exit 0; resumed to step $((k + 2)) bit for bit"

echo "== an injected NaN"
out="$WORK/nan"
set +e
train --steps 8 --ckpt-every 2 --inject-nan-at 5 --out "$out" >"$WORK/nan.log" 2>&1
status=$?
set -e
[ "$status" -eq 3 ] || fail "exit status $status, want 3: $(tail -n 3 "$WORK/nan.log")"
grep -q "training stopped: step 5: the loss is nan\. Samples with a non-finite x_t or model output have t = \[[0-9]*\]\. First non-finite value: op #[0-9]* (conv2d)" \
  "$WORK/nan.log" || fail "the report lacks the step, t or op: $(grep error "$WORK/nan.log")"
grep -q "the last good checkpoint is $out/ckpt-00000004.safetensors" "$WORK/nan.log" || fail "the last good checkpoint is not named"
[ "$(newest "$out")" = "$out/ckpt-00000004.safetensors" ] || fail "newest checkpoint is $(newest "$out"), want step 4"
grep -q "Resume from the last checkpoint with a lower --lr" "$WORK/nan.log" || fail "the report gives no advice"
# The advice, followed (in a copy of the folder): resume with a lower --lr.
cp -r "$out" "$out-lr"
train --steps 8 --resume auto --lr 0.0005 --out "$out-lr" >"$WORK/nan-lr.log" 2>&1 ||
  fail "the advice (resume with a lower --lr) failed: $(tail -n 3 "$WORK/nan-lr.log")"
grep -q "^note: --lr 0.0005 replaces the checkpoint's learning rate from step 4 on" "$WORK/nan-lr.log" ||
  fail "no note that --lr replaced the learning rate: $(grep -i lr "$WORK/nan-lr.log")"
grep -q "lr 0.0005" "$WORK/nan-lr.log" || fail "the resumed run does not train at lr 0.0005"
"$HASH" "$out-lr/ckpt-00000008.safetensors" >/dev/null || fail "the checkpoint after the --lr resume does not validate"
train --steps 9 --resume auto --out "$out-lr" >"$WORK/nan-lr-2.log" 2>&1 && grep -q "lr 0.0005" "$WORK/nan-lr-2.log" ||
  fail "a later resume did not keep the new learning rate: $(tail -n 3 "$WORK/nan-lr-2.log")"
train --steps 8 --resume auto --out "$out" >"$WORK/nan-2.log" 2>&1 || fail "resume after the NaN: $(tail -n 3 "$WORK/nan-2.log")"
[ "$(hash_of "$out/ckpt-00000008.safetensors")" = "$(reference_hash 8)" ] || fail "resumed after the NaN, step 8 differs from an uninterrupted run"
echo "ok: $(grep -o 'step 5: .*(conv2d)' "$WORK/nan.log"); resumed from step 4 to 8 bit for bit"

echo "== every option resumes (issue 14: --learned-variance, --predict, --timesteps importance could not)"
for option in "--learned-variance" "--predict x0" "--predict v" "--timesteps importance" "--conditional" "--loss weighted"; do
  out="$WORK/option-$(echo "$option" | tr -d ' -')"
  # shellcheck disable=SC2086  # the option is two words
  train $option --steps 2 --sample-every 0 --out "$out" >"$out.log" 2>&1 || fail "$option: first run: $(tail -n 3 "$out.log")"
  train --steps 4 --sample-every 0 --resume auto --out "$out" >"$out-2.log" 2>&1 ||
    fail "$option: resume: $(tail -n 3 "$out-2.log")"
  "$HASH" "$out/ckpt-00000004.safetensors" >/dev/null || fail "$option: ckpt_hash refuses the resumed checkpoint"
done
echo "ok: --learned-variance, --predict x0/v, --timesteps importance, --conditional, --loss weighted resume; ckpt_hash accepts them"

echo "== flags checked up front"
expect_error() {  # expect_error PATTERN ARGS...: the run exits 1 with PATTERN in its error
  local pattern=$1
  shift
  set +e
  "$TRAIN" "$@" >"$WORK/flag.log" 2>&1
  local status=$?
  set -e
  [ "$status" -eq 1 ] || fail "$*: exit status $status, want 1: $(tail -n 2 "$WORK/flag.log")"
  grep -q -- "$pattern" "$WORK/flag.log" || fail "$*: no '$pattern' in: $(tail -n 2 "$WORK/flag.log")"
}
expect_error "unknown --dataset 'foo'" "${TRAIN_ARGS[@]}" --dataset foo --steps 1 --out "$WORK/flags"
expect_error "--threads 300 not in 1..256" "${TRAIN_ARGS[@]}" --threads 300 --steps 1 --out "$WORK/flags"
expect_error "--T 10000000 not in \[1, 100000\]" "${TRAIN_ARGS[@]}" --T 10000000 --steps 1 --out "$WORK/flags"
expect_error "--inject-nan-at 9 is not a step this run trains (1..4)" "${TRAIN_ARGS[@]}" --inject-nan-at 9 --steps 4 --out "$WORK/flags"
out="$WORK/option-learnedvariance"  # at step 4
expect_error "the checkpoint is at step 4, beyond the target 3" "${TRAIN_ARGS[@]}" --steps 3 --resume auto --out "$out"
train --steps 4 --sample-every 0 --resume auto --out "$out" >"$WORK/at-target.log" 2>&1 || fail "resume at the target: $(tail -n 2 "$WORK/at-target.log")"
grep -q "^note: the checkpoint is already at the target step 4: nothing to train" "$WORK/at-target.log" ||
  fail "a resume at the target does not say there is nothing to train: $(tail -n 3 "$WORK/at-target.log")"
train --steps 5 --batch 8 --resume auto --out "$out" >"$WORK/ignored.log" 2>&1 || fail "resume with --batch: $(tail -n 2 "$WORK/ignored.log")"
grep -q "^note: --batch is ignored with --resume" "$WORK/ignored.log" || fail "no note that --batch is ignored"
[ "$("$TRAIN" --help | grep -c -- '^  --data .*default')" -eq 1 ] && [ "$("$TRAIN" --help | grep -- '^  --data ' | grep -o default | wc -l)" -eq 1 ] ||
  fail "the --data help line does not give one default: $("$TRAIN" --help | grep -- '^  --data ')"
train --epochs 1 --batch 32 --sample-every 0 --out "$WORK/epochs" >"$WORK/epochs.log" 2>&1 || fail "--epochs 1: $(tail -n 2 "$WORK/epochs.log")"
grep -q "target step 2$" "$WORK/epochs.log" || fail "--epochs 1 of 64 images at batch 32 is not 2 steps: $(grep target "$WORK/epochs.log")"
echo "ok: --dataset, --threads, --T, --inject-nan-at, --steps below/at a checkpoint, ignored flags, --data help, --epochs"
echo "fault_test: write errors (2), SIGINT, NaN (and its advice), option resume and flag checks handled"

# --- the output folder (issue 14, section 3 and 5): lock, fresh-run refusal, start-up checks
echo "== two trainers into one folder"
two_trainers() {
  local out="$WORK/two" pid status
  "$TRAIN" "${TRAIN_ARGS[@]}" --steps 1000000 --out "$out" >"$WORK/two-a.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do [ -f "$out/ckpt-00000002.safetensors" ] && break; sleep 0.1; done
  for extra in "" "--resume auto"; do
    set +e
    # shellcheck disable=SC2086
    timeout 60 "$TRAIN" "${TRAIN_ARGS[@]}" --steps 2 --out "$out" $extra >"$WORK/two-b.log" 2>&1
    status=$?
    set -e
    [ "$status" -eq 1 ] || { kill "$pid"; fail "a second trainer ($extra) into a locked folder: exit $status, want 1: $(tail -n 2 "$WORK/two-b.log")"; }
    grep -q "another trainer (pid $pid) is writing into '$out'" "$WORK/two-b.log" ||
      { kill "$pid"; fail "the second trainer does not name the holder's pid $pid: $(tail -n 2 "$WORK/two-b.log")"; }
    ! grep -q "^step" "$WORK/two-b.log" || { kill "$pid"; fail "the second trainer trained before stopping"; }
  done
  kill -INT "$pid"
  set +e
  wait "$pid"
  status=$?
  set -e
  [ "$status" -eq 0 ] || fail "the first trainer: exit $status: $(tail -n 3 "$WORK/two-a.log")"
  local saved
  saved=$(grep -o '^saved .*' "$WORK/two-a.log" | tail -n 1 | cut -d' ' -f2)
  [ "$(newest "$out")" = "$saved" ] || fail "the first trainer's last checkpoint $saved is not the newest ($(newest "$out"))"
  for f in "$out"/ckpt-*.safetensors; do "$HASH" "$f" >/dev/null || fail "$f is damaged"; done
  echo "ok: $(grep -o 'another trainer.*' "$WORK/two-b.log" | cut -c1-120)...; the first run's checkpoints survive"
}
two_trainers

echo "== a fresh run into a folder that holds checkpoints"
fresh_run_refused() {
  local out="$WORK/two" status newest_before hash_before advice k
  newest_before=$(newest "$out")
  hash_before=$(hash_of "$newest_before")
  k=$(step_of "$newest_before")
  set +e
  train --steps 2 --out "$out" >"$WORK/fresh.log" 2>&1
  status=$?
  set -e
  [ "$status" -eq 1 ] || fail "a fresh run over another run's checkpoints: exit $status, want 1: $(tail -n 2 "$WORK/fresh.log")"
  grep -q "already holds checkpoints of another run" "$WORK/fresh.log" || fail "no clear refusal: $(tail -n 2 "$WORK/fresh.log")"
  [ "$(hash_of "$newest_before")" = "$hash_before" ] || fail "the refused run changed $newest_before"
  # Each piece of advice, followed. 1: the resume command, as the message spells it.
  advice=$(grep -o -- "--resume auto --out [^;]*" "$WORK/fresh.log")
  [ "$advice" = "--resume auto --out $out" ] || fail "the advice is '$advice'"
  # shellcheck disable=SC2086
  train --steps $((k + 1)) $advice >"$WORK/fresh-resume.log" 2>&1 || fail "following '$advice': $(tail -n 2 "$WORK/fresh-resume.log")"
  grep -q "^resumed from $newest_before " "$WORK/fresh-resume.log" || fail "'$advice' did not resume from $newest_before"
  # 2: another folder.
  train --steps 2 --out "$WORK/fresh-other" >"$WORK/fresh-other.log" 2>&1 || fail "another --out: $(tail -n 2 "$WORK/fresh-other.log")"
  # 3: --overwrite moves the old run aside, deleting nothing.
  local before after
  hashes() { local f; for f in "$1"/ckpt-*.safetensors; do echo "$(basename "$f") $(hash_of "$f")"; done; }
  before=$(hashes "$out")
  grep -q -- "--overwrite to move the old run's checkpoints and figures into $out/previous-1/" "$WORK/fresh.log" ||
    fail "the --overwrite advice: $(tail -n 1 "$WORK/fresh.log")"
  train --steps 2 --out "$out" --overwrite >"$WORK/fresh-over.log" 2>&1 || fail "--overwrite: $(tail -n 2 "$WORK/fresh-over.log")"
  after=$(hashes "$out/previous-1")
  [ -n "$before" ] && [ "$before" = "$after" ] || fail "--overwrite lost or changed old checkpoints: before [$before] after [$after]"
  [ "$(newest "$out")" = "$out/ckpt-00000002.safetensors" ] || fail "--overwrite: the new run's checkpoints are missing"
  [ "$(hash_of "$out/ckpt-00000002.safetensors")" = "$(hash_of "$WORK/fresh-other/ckpt-00000002.safetensors")" ] ||
    fail "--overwrite: the new run differs from the same run in an empty folder"
  echo "ok: refused; --resume auto, another --out and --overwrite (old run in previous-1/) each work"
}
fresh_run_refused

echo "== --out checked at start"
out_checked_at_start() {
  local status
  : >"$WORK/a-file"
  for bad in "$WORK/a-file" "$WORK/a-file/sub"; do
    set +e
    train --steps 1000 --ckpt-every 500 --out "$bad" >"$WORK/badout.log" 2>&1
    status=$?
    set -e
    [ "$status" -eq 1 ] || fail "--out $bad: exit $status, want 1"
    grep -q "error: .*'$bad'.*\(is not a folder\|is a file, not a folder\)" "$WORK/badout.log" ||
      fail "--out $bad: no clear message: $(tail -n 2 "$WORK/badout.log")"
    ! grep -q "^step\|^model" "$WORK/badout.log" || fail "--out $bad was found only after training began"
  done
  # A read-only folder: root writes there anyway, so as root this runs as nobody (setpriv).
  local ro="$WORK/read-only"
  mkdir "$ro" && chmod 555 "$ro" && chmod o+x "$WORK"
  if [ "$(id -u)" != 0 ]; then
    set +e; train --steps 1000 --out "$ro" >"$WORK/ro.log" 2>&1; status=$?; set -e
  elif command -v setpriv >/dev/null; then
    set +e; setpriv --reuid=65534 --regid=65534 --clear-groups "$TRAIN" "${TRAIN_ARGS[@]}" --steps 1000 --out "$ro" \
      >"$WORK/ro.log" 2>&1; status=$?; set -e
  else
    echo "skip: a read-only --out as root needs setpriv" >"$WORK/ro.log"; status=1
  fi
  grep -q "^skip" "$WORK/ro.log" || {
    [ "$status" -eq 1 ] || fail "a read-only --out: exit $status, want 1: $(tail -n 2 "$WORK/ro.log")"
    grep -q "the output folder '$ro' (--out) is not writable: cannot create a file in it" "$WORK/ro.log" ||
      fail "a read-only --out: no clear message: $(tail -n 2 "$WORK/ro.log")"
  }
  # A run that fails before writing anything leaves no folder behind.
  set +e
  train --steps 2 --out "$WORK/never" --data "$WORK/no-such-data" >"$WORK/never.log" 2>&1
  status=$?
  set -e
  [ "$status" -eq 1 ] || fail "a run on missing data: exit $status, want 1"
  [ ! -e "$WORK/never" ] || fail "a failed run left its empty --out folder: $(ls -A "$WORK/never")"
  echo "ok: a file, a path under a file or a read-only folder is refused before training; a failed run leaves no empty folder"
}
out_checked_at_start

echo "== stale temp files of dead writers"
stale_temp_files() {
  local out="$WORK/two" dead
  dead=$(sh -c 'echo $$')  # a pid that has exited
  for n in samples.png loss.svg samples-00000002.png ckpt-00000009.safetensors; do : >"$out/$n.tmp.$dead"; done
  : >"$out/loss.svg.tmp.$$"  # a live pid (this shell): kept
  train --steps 3 --resume auto --out "$out" >"$WORK/stale.log" 2>&1 || fail "resume: $(tail -n 2 "$WORK/stale.log")"
  ! ls "$out"/*.tmp."$dead" >/dev/null 2>&1 || fail "stale temp files were left: $(ls "$out")"
  [ -f "$out/loss.svg.tmp.$$" ] || fail "the temp file of a live pid was removed"
  rm -f "$out/loss.svg.tmp.$$"
  echo "ok: samples.png, loss.svg and checkpoint temp files of a dead pid removed, a live one's kept"
}
stale_temp_files
echo "fault_test: the output folder is locked, checked at start and never mixed"

# --- the loaders of ./sample and ./eval (issue 14, sections 4 and 5) ----------------------
SAMPLE=${SAMPLE:-./sample}
EVAL=${EVAL:-./eval}
BENCH=${BENCH:-./bench}
for b in "$SAMPLE" "$EVAL" "$BENCH"; do [ -x "$b" ] || fail "$b not built (make sample eval bench)"; done

# poke_f32 FILE TENSOR BYTES: the first value of TENSOR in the safetensors FILE becomes the
# float32 whose little-endian bytes are BYTES (printf escapes). The file stays well-formed:
# only a check of the values themselves can tell it from a good one.
poke_f32() {
  local file=$1 name=$2 bytes=$3 n begin
  n=$(od -An -t u8 -N 8 "$file" | tr -d ' ')
  begin=$(head -c $((8 + n)) "$file" | grep -ao "\"$name\":{[^}]*}" | grep -o '"data_offsets":\[[0-9]*' | grep -o '[0-9]*$')
  [ -n "$begin" ] || fail "poke_f32: no tensor $name in $file"
  # shellcheck disable=SC2059  # BYTES are printf escapes
  printf "$bytes" | dd of="$file" bs=1 seek=$((8 + n + begin)) conv=notrunc status=none
}
NAN_F32='\x00\x00\xc0\x7f'
INF_F32='\x00\x00\x80\x7f'

# expect_tool_error LOG PATTERN PROGRAM ARGS...: PROGRAM exits 1 with PATTERN in its error.
expect_tool_error() {
  local log=$1 pattern=$2 status
  shift 2
  set +e
  "$@" >"$log" 2>&1
  status=$?
  set -e
  [ "$status" -eq 1 ] || fail "$*: exit status $status, want 1: $(tail -n 2 "$log")"
  grep -q -- "$pattern" "$log" || fail "$*: no '$pattern' in: $(tail -n 2 "$log")"
}

echo "== non-finite weights are refused by ./sample and ./eval, naming the tensor"
loaders_refuse_non_finite() {
  local out="$WORK/loaders" good="$WORK/loaders/ckpt-00000001.safetensors"
  train --steps 1 --sample-every 0 --out "$out" >"$WORK/loaders.log" 2>&1 || fail "setup run: $(tail -n 3 "$WORK/loaders.log")"
  cp "$good" "$WORK/nan-ema.safetensors"
  poke_f32 "$WORK/nan-ema.safetensors" ema.conv_in.weight "$NAN_F32"
  cp "$good" "$WORK/inf-weight.safetensors"
  poke_f32 "$WORK/inf-weight.safetensors" conv_in.weight "$INF_F32"
  # Before, ./sample wrote a black grid and ./eval --nll printed nan bits/dim, both with exit 0.
  expect_tool_error "$WORK/sample-nan.log" "$WORK/nan-ema.safetensors: tensor ema.conv_in.weight has a non-finite value (nan" \
    "$SAMPLE" --checkpoint "$WORK/nan-ema.safetensors" --n 4 --threads 1 --out "$WORK/sample-nan"
  [ ! -e "$WORK/sample-nan/samples.png" ] || fail "./sample wrote samples.png from NaN weights"
  expect_tool_error "$WORK/sample-inf.log" "tensor conv_in.weight has a non-finite value (inf" \
    "$SAMPLE" --checkpoint "$WORK/inf-weight.safetensors" --no-ema --n 4 --threads 1 --out "$WORK/sample-inf"
  expect_tool_error "$WORK/eval-nan.log" "$WORK/nan-ema.safetensors: tensor ema.conv_in.weight has a non-finite value" \
    "$EVAL" --nll --checkpoint "$WORK/nan-ema.safetensors" --nll-n 1 --threads 1 --data "$WORK/data"
  expect_tool_error "$WORK/eval-inf.log" "$WORK/inf-weight.safetensors: tensor conv_in.weight has a non-finite value (inf" \
    "$EVAL" --nll --checkpoint "$WORK/inf-weight.safetensors" --nll-n 1 --threads 1 --data "$WORK/data"
  # The good checkpoint still samples.
  "$SAMPLE" --checkpoint "$good" --n 2 --threads 1 --out "$WORK/sample-good" >"$WORK/sample-good.log" 2>&1 ||
    fail "./sample on a good checkpoint: $(tail -n 2 "$WORK/sample-good.log")"
  echo "ok: $(grep -o 'error: .*' "$WORK/sample-nan.log" | cut -c1-140)..."
}
loaders_refuse_non_finite

echo "== ./eval --nll names the file, not 'checkpoint'"
# A weights-only file (tools/torch_reference.py's) has no train.* keys, which --nll needs.
weights=tests/fixtures/unet_minimal_weights.safetensors
expect_tool_error "$WORK/eval-meta.log" ": $weights: metadata has no 'train\." \
  "$EVAL" --nll --checkpoint "$weights" --nll-n 1 --threads 1 --data "$WORK/data"
echo "ok: $(grep -o 'error: .*' "$WORK/eval-meta.log" | cut -c1-140)"

echo "== --threads 300 is refused by every tool, naming the flag"
expect_tool_error "$WORK/threads.log" "--threads 300 not in 1..256" \
  "$SAMPLE" --checkpoint "$WORK/loaders/ckpt-00000001.safetensors" --threads 300 --out "$WORK/threads"
expect_tool_error "$WORK/threads.log" "--threads 300 not in 1..256" \
  "$EVAL" --nll --checkpoint "$WORK/loaders/ckpt-00000001.safetensors" --threads 300 --data "$WORK/data"
expect_tool_error "$WORK/threads.log" "--threads 300 not in 1..256" "$BENCH" --threads 1,300 --only peak
echo "ok: ./sample, ./eval and ./bench, as ./train_mnist above: --threads 300 not in 1..256"
echo "fault_test: ./sample and ./eval refuse non-finite weights naming the tensor, name the file, check --threads"

# --- sizes checked before anything is allocated (issue 14, section 2) ----------------------
echo "== sizes checked before allocating, under ulimit -v"
# set_meta FILE KEY VALUE OUT: a copy of the safetensors FILE with metadata KEY = VALUE (the
# JSON header rewritten and re-padded to 8 bytes, its length updated, the data as it was).
set_meta() {
  local -x LC_ALL=C
  local n header new_n
  n=$(od -An -tu8 -N8 "$1" | tr -d ' ')
  header=$(head -c $((8 + n)) "$1" | tail -c "$n")
  header=$(printf '%s' "$header" | sed -e "s/\"$2\":\"[^\"]*\"/\"$2\":\"$3\"/" -e 's/ *$//')
  [[ $header == *"\"$2\":\"$3\""* ]] || fail "set_meta: $1 has no metadata key $2"
  while [ $((${#header} % 8)) -ne 0 ]; do header="$header "; done
  new_n=${#header}
  {
    printf "$(printf '\\%03o' $((new_n & 255)) $((new_n >> 8 & 255)) $((new_n >> 16 & 255)) $((new_n >> 24 & 255)) 0 0 0 0)"
    printf '%s' "$header"
    tail -c +$((9 + n)) "$1"
  } >"$4"
}
bounded_sizes() {
  local out="$WORK/bounds"
  expect_bounded() {  # expect_bounded PATTERN COMMAND...: under ulimit -v 1 GiB, exit 1 with PATTERN in the error
    local pattern=$1 status
    shift
    set +e
    (ulimit -v 1048576; timeout 120 "$@") >"$WORK/bounds.log" 2>&1
    status=$?
    set -e
    [ "$status" -eq 1 ] || fail "$*: exit status $status under ulimit -v 1 GiB, want 1: $(tail -n 2 "$WORK/bounds.log")"
    grep -q -- "^error: .*$pattern" "$WORK/bounds.log" || fail "$*: no '$pattern' in: $(tail -n 2 "$WORK/bounds.log")"
  }
  # T above the one bound (kMaxT), in every tool (./train_mnist's is under "flags checked up front").
  expect_bounded "--T 100000000000 not in \[1, 100000\]" "$SCHEDULE" --T 100000000000
  expect_bounded "--T 100000000000 not in \[1, 100000\]" "$SAMPLE" --forward --T 100000000000 --data "$WORK/data" --out "$out"
  train --steps 1 --sample-every 0 --out "$out" >"$WORK/bounds-train.log" 2>&1 || fail "setup run: $(tail -n 3 "$WORK/bounds-train.log")"
  set_meta "$out/ckpt-00000001.safetensors" train.T 1000000 "$WORK/T1e6.safetensors"
  set_meta "$out/ckpt-00000001.safetensors" train.T 20 "$WORK/T20.safetensors"
  [ "$(hash_of "$WORK/T20.safetensors")" = "$(hash_of "$out/ckpt-00000001.safetensors")" ] || fail "set_meta damaged the file"
  local invalid="$WORK/T1e6.safetensors: the training config in its metadata is invalid: .*train: --T 1000000 not in \[1, 100000\]"
  expect_bounded "$invalid" "$SAMPLE" --checkpoint "$WORK/T1e6.safetensors" --n 1 --out "$out"
  expect_bounded "$invalid" "$HASH" "$WORK/T1e6.safetensors"
  expect_bounded "$invalid" "$TRAIN" "${TRAIN_ARGS[@]}" --steps 2 --resume "$WORK/T1e6.safetensors" --out "$WORK/bounds-resume"
  # What has no real size, and a file far larger than the memory: refused, not read.
  expect_bounded "'/dev/zero' is a character device, not a regular file" "$HASH" /dev/zero
  expect_bounded "'/dev/zero' is a character device, not a regular file" "$SAMPLE" --checkpoint /dev/zero --out "$out"
  truncate -s 8G "$WORK/x.safetensors"
  expect_bounded "safetensors '$WORK/x.safetensors': header does not start with '{'" "$HASH" "$WORK/x.safetensors"
  rm -f "$WORK/x.safetensors"
  echo "ok: ./schedule and ./sample --forward refuse --T 100000000000; ./sample, ./ckpt_hash and --resume refuse train.T = 1000000 naming the file; /dev/zero and an 8 GB sparse file get a clear error under ulimit -v 1 GiB"
}
bounded_sizes
