#!/usr/bin/env bash
# tests/e2e/mpi_test.sh (`make mpi-test`): the MPI build against the default build's one
# process, on this machine, with mpirun -np 1..4 (--oversubscribe: more ranks than cores).
#   1. the default build holds no MPI symbol, the MPI build does;
#   2. training: R = 1, 2, 3, 4 ranks write checkpoints with the bits of one process of the
#      default build (and the same samples.png), for the tiny U-Net at T = 10, batch 12 in
#      12 micro-batches of 1, with dropout and the label drop on, 2 steps;
#   3. the checkpoint the 2 ranks wrote resumes on 3 ranks, bit for bit;
#   4. ./sample's grid and chain over 3 ranks, and ./eval --nll's bits/dim over 3 ranks, are
#      the one-process ones exactly;
#   5. a rank killed mid-run (SIGKILL) ends the whole job within seconds, and the newest
#      checkpoint is good; an error on one rank (its data missing) ends the job naming the
#      rank; a NaN on rank 2 stops every rank (exit 3) with the report printed once;
#   6. Ctrl-C (SIGINT to mpirun) saves one checkpoint and exits cleanly, and it resumes
#      exactly.
# MPI_BIN names the MPI build's folder (build/mpi-native); the one-process tools are the
# default build's ./train_mnist, ./sample, ./eval and ./ckpt_hash.
set -euo pipefail
cd "$(dirname "$0")/../.."
MPI_BIN=${MPI_BIN:-build/mpi-native}
for b in ./train_mnist ./sample ./eval ./ckpt_hash "$MPI_BIN/train_mnist" "$MPI_BIN/sample" "$MPI_BIN/eval"; do
  [ -x "$b" ] || { echo "$0: $b not built (make mpi-test builds both builds)" >&2; exit 1; }
done
command -v mpirun >/dev/null || { echo "$0: mpirun not found: sudo apt-get install -y openmpi-bin libopenmpi-dev" >&2; exit 1; }
# Root may run mpirun only when it says so; more ranks than cores need --oversubscribe.
MPIRUN=(mpirun --oversubscribe --allow-run-as-root)
WORK=$(mktemp -d /tmp/ddpm_mpi.XXXXXX)
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
hash_of() { ./ckpt_hash "$1" | cut -d' ' -f1; }
ckpt() { echo "$1/ckpt-$(printf %08d "$2").safetensors"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }  # seconds, no bc needed
# The processes whose parent is $1 (from /proc, no procps needed).
children() {
  local s line ppid
  for s in /proc/[0-9]*/stat; do
    { read -r line <"$s"; } 2>/dev/null || continue
    read -r _ ppid _ <<<"${line##*) }"
    if [ "$ppid" = "$1" ]; then s=${s#/proc/}; echo "${s%/stat}"; fi
  done
}
T0=$(now)
section() { echo "== $* ($(since "$T0") s so far)"; }

section "the default build has no MPI in it; the MPI build does"
bash tools/check_no_mpi.sh ./train_mnist ./sample ./eval
grep -q " U MPI_Init_thread" <(nm -C "$MPI_BIN/train_mnist") || fail "$MPI_BIN/train_mnist does not call MPI_Init_thread"

# 64 random 28x28 images (labels 0..9) as the training set and 16 as the test set, IDX.
mkdir -p "$WORK/data"
idx_images() { printf '\x00\x00\x08\x03'; printf "\\x00\\x00\\x00\\x$(printf %02x "$1")"; printf '\x00\x00\x00\x1c\x00\x00\x00\x1c'; head -c $(($1 * 784)) /dev/urandom; }
idx_labels() { printf '\x00\x00\x08\x01'; printf "\\x00\\x00\\x00\\x$(printf %02x "$1")"; for i in $(seq 0 $(($1 - 1))); do printf "\\x0$((i % 10))"; done; }
idx_images 64 >"$WORK/data/train-images-idx3-ubyte"
idx_labels 64 >"$WORK/data/train-labels-idx1-ubyte"
idx_images 16 >"$WORK/data/t10k-images-idx3-ubyte"
idx_labels 16 >"$WORK/data/t10k-labels-idx1-ubyte"

# The run every comparison uses: K = 12 / 1 = 12 micro-batches, which 1, 2, 3 and 4 ranks
# divide; small, so that the stage fits CI's budget (about 50 s here). A constant learning
# rate: runs stopped early and resumed to another --steps must equal a run made to that
# --steps, and a decaying schedule (the default) follows the target step.
ARGS=(--data "$WORK/data" --model tiny --T 10 --batch 12 --micro-batch 1 --dropout 0.1 --conditional
  --warmup 2 --lr-schedule constant --sample-every 0 --sample-n 4 --log-every 1 --threads 1)

section "one process of the default build: 3 steps, a checkpoint after each (2 threads)"
./train_mnist "${ARGS[@]}" --threads 2 --steps 3 --ckpt-every 1 --keep 3 --out "$WORK/one" >"$WORK/one.log" 2>&1 ||
  fail "the one-process run failed: $(tail -n 3 "$WORK/one.log")"
ref2=$(hash_of "$(ckpt "$WORK/one" 2)")
ref3=$(hash_of "$(ckpt "$WORK/one" 3)")

for R in 1 2 3 4; do
  section "mpirun -np $R: 2 steps"
  out="$WORK/np$R"
  "${MPIRUN[@]}" -np "$R" "$MPI_BIN/train_mnist" "${ARGS[@]}" --steps 2 --ckpt-every 2 --out "$out" >"$out.log" 2>&1 ||
    fail "mpirun -np $R failed: $(tail -n 5 "$out.log")"
  got=$(hash_of "$(ckpt "$out" 2)")
  [ "$got" = "$ref2" ] || fail "-np $R: checkpoint hash $got, one process $ref2"
  [ "$(grep -c '^step ' "$out.log")" -eq 2 ] || fail "-np $R: progress lines from more than rank 0: $(grep '^step ' "$out.log")"
  cmp -s "$out/samples.png" "$WORK/np1/samples.png" || fail "-np $R: samples.png differs from -np 1's"
  echo "ok: $got (one process: $ref2); $(grep -o 'communication: .*' "$out.log" || echo 'one rank')"
done

section "the checkpoint of 2 ranks resumes on 3"
out="$WORK/np2"
"${MPIRUN[@]}" -np 3 "$MPI_BIN/train_mnist" "${ARGS[@]}" --resume auto --steps 3 --ckpt-every 3 --out "$out" >"$out-resume.log" 2>&1 ||
  fail "the 3-rank resume failed: $(tail -n 3 "$out-resume.log")"
grep -q "resumed from .*ckpt-00000002.safetensors at step 2" "$out-resume.log" || fail "no resume line: $(head -n 3 "$out-resume.log")"
got=$(hash_of "$(ckpt "$out" 3)")
[ "$got" = "$ref3" ] || fail "2 ranks then 3: hash $got, one process $ref3"
echo "ok: step 3 after 2 ranks then 3 is $got, as one process"

section "./sample and ./eval --nll over 3 ranks"
SARGS=(--checkpoint "$(ckpt "$WORK/one" 3)" --n 7 --batch 2 --chain --fig-rows 4 --fig-cols 5 --threads 1 --log-every 1000)
./sample "${SARGS[@]}" --out "$WORK/s1" >"$WORK/s1.log" 2>&1 || fail "./sample: $(tail -n 3 "$WORK/s1.log")"
"${MPIRUN[@]}" -np 3 "$MPI_BIN/sample" "${SARGS[@]}" --out "$WORK/s3" >"$WORK/s3.log" 2>&1 ||
  fail "mpirun -np 3 ./sample: $(tail -n 3 "$WORK/s3.log")"
for f in samples.png chain.png; do cmp -s "$WORK/s1/$f" "$WORK/s3/$f" || fail "$f of 3 ranks differs from one process's"; done
EARGS=(--nll --checkpoint "$(ckpt "$WORK/one" 3)" --data "$WORK/data" --nll-n 7 --batch 2 --threads 1)
./eval "${EARGS[@]}" >"$WORK/e1.out" 2>"$WORK/e1.log" || fail "./eval --nll: $(tail -n 3 "$WORK/e1.log")"
"${MPIRUN[@]}" -np 3 "$MPI_BIN/eval" "${EARGS[@]}" >"$WORK/e3.out" 2>"$WORK/e3.log" ||
  fail "mpirun -np 3 ./eval --nll: $(tail -n 3 "$WORK/e3.log")"
grep -q "bits/dim" "$WORK/e1.out" || fail "./eval --nll printed no bits/dim: $(cat "$WORK/e1.out")"
diff "$WORK/e1.out" "$WORK/e3.out" >/dev/null || fail "bits/dim differ: $(diff "$WORK/e1.out" "$WORK/e3.out")"
echo "ok: samples.png and chain.png identical; ./eval --nll prints the same: $(grep -m1 -i 'total' "$WORK/e1.out" | tr -s ' ')"

section "a rank killed mid-run ends the job within seconds"
out="$WORK/kill"
"${MPIRUN[@]}" -np 3 "$MPI_BIN/train_mnist" "${ARGS[@]}" --steps 100000 --ckpt-every 1 --keep 2 --out "$out" >"$out.log" 2>&1 &
job=$!
for _ in $(seq 600); do [ -f "$(ckpt "$out" 2)" ] && break; sleep 0.1; done
[ -f "$(ckpt "$out" 2)" ] || fail "no checkpoint 2 to kill after: $(tail -n 3 "$out.log")"
victim=""
for p in $(children "$job"); do
  grep -qz '^OMPI_COMM_WORLD_RANK=1$' "/proc/$p/environ" 2>/dev/null && victim=$p
done
[ -n "$victim" ] || fail "rank 1 of the job (a child of mpirun $job) not found"
t_kill=$(now)
kill -KILL "$victim"
set +e
wait "$job"
status=$?
set -e
took=$(since "$t_kill")
[ "$status" -ne 0 ] || fail "the job exited 0 after rank 1 was killed"
awk -v t="$took" 'BEGIN { exit !(t < 10) }' || fail "the job took $took s to end after rank 1 was killed"
grep -q "signal 9" "$out.log" || fail "no message naming the killed rank: $(tail -n 5 "$out.log")"
[ -z "$(children "$job")" ] || fail "ranks of the job are still running"
newest=$(ls "$out"/ckpt-*.safetensors | sort | tail -n 1)
./ckpt_hash "$newest" >/dev/null || fail "$newest is damaged"
echo "ok: the job ended $took s after the kill (exit $status); $(basename "$newest") is good; mpirun: $(grep -m1 -o 'process rank 1.*signal 9[^.]*' "$out.log" | tr -s ' ')"

section "an error on one rank ends the job, naming the rank"
out="$WORK/norank"
t_start=$(now)
set +e
"${MPIRUN[@]}" -np 2 "$MPI_BIN/train_mnist" "${ARGS[@]}" --steps 2 --out "$out" : \
  -np 1 "$MPI_BIN/train_mnist" "${ARGS[@]}" --data "$WORK/missing" --steps 2 --out "$out" >"$out.log" 2>&1
status=$?
set -e
took=$(since "$t_start")
[ "$status" -ne 0 ] || fail "the job exited 0 with rank 2's data missing"
grep -q "^error: rank 2 of 3: .*$WORK/missing" "$out.log" || fail "no error naming rank 2 and its folder: $(tail -n 5 "$out.log")"
echo "ok: exit $status after $took s: $(grep -m1 -o '^error: rank 2 of 3: .\{0,90\}' "$out.log")..."

section "a NaN on rank 2 stops every rank with one report"
out="$WORK/nan"
set +e
"${MPIRUN[@]}" -np 3 "$MPI_BIN/train_mnist" "${ARGS[@]}" --steps 2 --ckpt-every 1 --inject-nan-at 2 \
  --inject-nan-sample 10 --out "$out" >"$out.log" 2>&1
status=$?
set -e
[ "$status" -eq 3 ] || fail "exit status $status after the NaN, want 3: $(tail -n 5 "$out.log")"
[ "$(grep -c '^error: training stopped: step 2 (micro-batch 10 of 12' "$out.log")" -eq 1 ] ||
  fail "the report is not printed exactly once: $(grep -c 'training stopped' "$out.log") times"
grep -q "the last good checkpoint is .*ckpt-00000001.safetensors" "$out.log" || fail "the report names no last good checkpoint"
[ "$(hash_of "$(ckpt "$out" 1)")" = "$(hash_of "$(ckpt "$WORK/one" 1)")" ] || fail "the last good checkpoint differs from one process's step 1"
echo "ok: $(grep -o 'error: training stopped: step 2 .\{0,80\}' "$out.log")..."

section "Ctrl-C (SIGINT to mpirun) saves one checkpoint and exits cleanly"
# On SIGINT mpirun sends the ranks SIGCONT, then SIGTERM odls_base_sigkill_timeout seconds
# later (1 by default), then SIGKILL as long again after that: the ranks stop at their next
# micro-batch and rank 0 saves within that time. 3 s gives a loaded CI machine a margin.
out="$WORK/sigint"
"${MPIRUN[@]}" --mca odls_base_sigkill_timeout 3 -np 2 "$MPI_BIN/train_mnist" "${ARGS[@]}" --steps 100000 \
  --ckpt-every 1000 --out "$out" >"$out.log" 2>&1 &
job=$!
for _ in $(seq 600); do grep -q "^step *3/" "$out.log" && break; sleep 0.1; done
kill -INT "$job"
set +e
wait "$job"
set -e
grep -q "^interrupted: checkpoint saved" "$out.log" || fail "no 'interrupted: checkpoint saved' line: $(tail -n 5 "$out.log")"
saved=$(ls "$out"/ckpt-*.safetensors)
[ "$(echo "$saved" | wc -l)" -eq 1 ] || fail "not exactly one checkpoint: $saved"
n=$(basename "$saved" .safetensors)
n=$((10#${n#ckpt-}))
last=$(grep -o '^step *[0-9]*' "$out.log" | tail -n 1 | grep -o '[0-9]*')
[ "$n" -eq "$last" ] || fail "saved step $n, but the last step done was $last"
"${MPIRUN[@]}" -np 4 "$MPI_BIN/train_mnist" "${ARGS[@]}" --resume auto --steps $((n + 1)) --ckpt-every 1000 \
  --out "$out" >"$out-2.log" 2>&1 || fail "the resume failed: $(tail -n 3 "$out-2.log")"
./train_mnist "${ARGS[@]}" --steps $((n + 1)) --ckpt-every 1000 --out "$WORK/sigint-ref" >"$WORK/sigint-ref.log" 2>&1 ||
  fail "the one-process reference failed: $(tail -n 3 "$WORK/sigint-ref.log")"
[ "$(hash_of "$(ckpt "$out" $((n + 1)))")" = "$(hash_of "$(ckpt "$WORK/sigint-ref" $((n + 1)))")" ] ||
  fail "the resume after Ctrl-C differs from an uninterrupted run"
echo "ok: saved step $n, the last step done; resumed on 4 ranks to step $((n + 1)) as one process"

echo "mpi_test: all passed in $(since "$T0") s"
