# tests/e2e/reliability_lib.sh: helpers shared by tests/e2e/kill_test.sh and tests/e2e/fault_test.sh
# (sourced, not run). Both drive ./train_mnist on a synthetic IDX dataset in a temp
# folder, and use ./ckpt_hash to check checkpoints and compare training states;
# fault_test.sh also runs ./sample and ./schedule.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
TRAIN=${TRAIN:-./train_mnist}
HASH=${HASH:-./ckpt_hash}
SAMPLE=${SAMPLE:-./sample}
SCHEDULE=${SCHEDULE:-./schedule}
for b in "$TRAIN" "$HASH" "$SAMPLE" "$SCHEDULE"; do
  [ -x "$b" ] || { echo "$0: $b not built (make train_mnist ckpt_hash sample schedule)" >&2; exit 1; }
done
WORK=$(mktemp -d /tmp/ddpm_reliability.XXXXXX)
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

# 64 random 28x28 images and their labels (all 0), as IDX files in $WORK/data.
make_data() {
  mkdir -p "$WORK/data"
  { printf '\x00\x00\x08\x03\x00\x00\x00\x40\x00\x00\x00\x1c\x00\x00\x00\x1c'; head -c $((64 * 784)) /dev/urandom; } \
    >"$WORK/data/train-images-idx3-ubyte"
  { printf '\x00\x00\x08\x01\x00\x00\x00\x40'; head -c 64 /dev/zero; } >"$WORK/data/train-labels-idx1-ubyte"
}

# The training setup of every run: the tiny U-Net (28x28, ~18 MB checkpoints), 4 images
# per step, T = 20, a checkpoint every step, one thread (results do not depend on it).
# In the background, run "$TRAIN" "${TRAIN_ARGS[@]}" directly (not through train, whose
# subshell would take the signals instead of the trainer).
# A constant learning rate: the killed runs train toward --steps 1000000 and the last resume
# ends them at N, which equals an uninterrupted --steps N run only when the schedule does
# not depend on the target step (a decaying one, the default, lands at the target).
TRAIN_ARGS=(--data "$WORK/data" --model tiny --batch 4 --T 20 --warmup 5 --lr-schedule constant --ckpt-every 1
  --keep 2 --sample-n 1 --log-every 1 --threads 1)
train() { "$TRAIN" "${TRAIN_ARGS[@]}" "$@"; }

newest() { { ls "$1"/ckpt-*.safetensors 2>/dev/null || true; } | sort | tail -n 1; }
hash_of() { "$HASH" "$1" | cut -d' ' -f1; }
step_of() { local n; n=$(basename "$1" .safetensors); echo $((10#${n#ckpt-})); }

# The state after $1 uninterrupted steps, run once into $WORK/ref-$1.
reference_hash() {
  local out="$WORK/ref-$1"
  [ -f "$out/ckpt-$(printf %08d "$1").safetensors" ] || train --steps "$1" --out "$out" >"$out.log" 2>&1 ||
    fail "reference run of $1 steps failed: $(tail -n 3 "$out.log")"
  hash_of "$out/ckpt-$(printf %08d "$1").safetensors"
}
