#!/usr/bin/env bash
# study_default.sh: the measured study behind ./train_mnist's default run (docs/results.md).
#
#   tools/study_default.sh speeds            time each model/batch of the study (img/s, 2 threads)
#   tools/study_default.sh screen [ROW...]   10-minute runs, one axis at a time, judged by DDIM 50
#   tools/study_default.sh confirm NAME...   20-minute runs of the named rows, judged by Algorithm 2
#   tools/study_default.sh default           the default ./train_mnist, timed alone on 2 threads,
#                                            judged by Algorithm 2 with each sampler variance
#   tools/study_default.sh seeds ROW         the 10-minute ROW at seeds 1 and 2
#   tools/study_default.sh table             the results so far, as docs/results.md's table
#
# A row's budget is wall-clock time at the speed its model and batch reach alone on 2 threads
# (the `speeds` step, stored in $STUDY/speeds.txt): it trains with --steps = minutes x 60 x
# img/s / batch, so a row gives the same checkpoint whatever else the machine is doing, and
# two rows train side by side with one thread each (results do not depend on --threads).
# Each row is judged at N = 1000 against the train-image floor at the same N: FLD, precision,
# recall and class entropy from ./eval (the classifier: ./eval --train-classifier).
#
# Environment: STUDY (default runs/study) holds every run, log and table; JOBS (default 2)
# rows at a time; BIN (default .) the folder of train_mnist and eval; DATA (default data/mnist).
set -euo pipefail
cd "$(dirname "$0")/.."
STUDY=${STUDY:-runs/study}
JOBS=${JOBS:-2}
BIN=${BIN:-.}
DATA=${DATA:-data/mnist}
CLASSIFIER=${CLASSIFIER:-$STUDY/classifier.safetensors}
mkdir -p "$STUDY"

# The rows: NAME and the flags that differ from the base, the default run's recipe before
# this study (BASE). One axis at a time from the base, then the combinations the screen
# suggested. The default run is b32cos10lr2e-3 at --steps 3400 (the `default` step).
BASE="--lr 1e-3 --lr-schedule constant --warmup 200 --ema 0.999 --batch 64 --grad-clip 1"
rows() {
  cat <<'EOF'
base
lr5e-4        --lr 5e-4
lr2e-3        --lr 2e-3
lr4e-3        --lr 4e-3
cos10         --lr-schedule cosine --lr-floor 0.1
cos0          --lr-schedule cosine --lr-floor 0
ema0.995      --ema 0.995
ema0.9995     --ema 0.9995
noema         --ema 0
emaw4         --ema-warmup 4
emaw30        --ema-warmup 30
b32           --batch 32
b128          --batch 128
ch48          --ch 48
rb2           --res-blocks 2
noclip        --grad-clip 0
lr2e-3cos10ema0.995 --lr 2e-3 --lr-schedule cosine --lr-floor 0.1 --ema 0.995
b32cos10      --batch 32 --lr-schedule cosine --lr-floor 0.1
b32cos10emaw4 --batch 32 --lr-schedule cosine --lr-floor 0.1 --ema-warmup 4
b32cos10lr2e-3 --batch 32 --lr-schedule cosine --lr-floor 0.1 --lr 2e-3
EOF
}
row_flags() { rows | awk -v n="$1" '$1 == n { $1 = ""; print }'; }
# What sets a row's speed: its model and batch flags.
speed_key() {
  local f="$BASE $(row_flags "$1")" key="" ch=32 rb=1 batch
  batch=$(echo "$f" | tr ' ' '\n' | awk '/^--batch$/ { getline; b = $1 } END { print b }')
  echo "$f" | grep -q -- '--ch ' && ch=$(echo "$f" | sed -E 's/.*--ch ([0-9]+).*/\1/')
  echo "$f" | grep -q -- '--res-blocks ' && rb=$(echo "$f" | sed -E 's/.*--res-blocks ([0-9]+).*/\1/')
  key="ch${ch}-rb${rb}-b${batch}"
  echo "$key"
}

# speeds: the img/s of a 40-step run per key (its progress line at step 40: the average over
# the run), 2 threads, one key at a time; two rounds, and each key keeps its faster one (the
# machine may be shared: the faster run is the less disturbed).
speeds() {
  local keys key flags round rate
  keys=$(for r in $(rows | awk '{print $1}'); do speed_key "$r"; done | sort -u)
  : >"$STUDY/speeds.raw"
  for round in 1 2; do
    for key in $keys; do
      flags=$(echo "$key" | sed -E 's/ch([0-9]+)-rb([0-9]+)-b([0-9]+)/--ch \1 --res-blocks \2 --batch \3/')
      rm -rf "$STUDY/speed-$key"
      "$BIN/train_mnist" $flags --steps 40 --threads 2 --log-every 1 --sample-every 0 --ckpt-every 1000 \
        --data "$DATA" --out "$STUDY/speed-$key" >"$STUDY/speed-$key.log" 2>&1
      rate=$(grep -E '^step +40/' "$STUDY/speed-$key.log" | awk '{ print $(NF-5) }')
      echo "$key $rate" | tee -a "$STUDY/speeds.raw"
      rm -rf "$STUDY/speed-$key"
    done
  done
  sort -k1,1 -k2,2gr "$STUDY/speeds.raw" | awk '!seen[$1]++' >"$STUDY/speeds.txt"
  echo "measured on $(date -u +%F) on $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1-3 /proc/loadavg)" \
    >>"$STUDY/speeds.txt"
}

steps_for() {  # steps_for ROW MINUTES
  local key rate batch
  key=$(speed_key "$1")
  rate=$(awk -v k="$key" '$1 == k { print $2 }' "$STUDY/speeds.txt")
  [ -n "$rate" ] || { echo "study: no speed for $key: run '$0 speeds' first" >&2; exit 1; }
  batch=${key##*-b}
  awk -v m="$2" -v r="$rate" -v b="$batch" 'BEGIN { printf "%d\n", m * 60 * r / b }'
}

# train_row ROW MINUTES SEED: the run in $STUDY/ROW-MINUTESm-sSEED (skipped when its final
# checkpoint exists). An interrupted row resumes from its last checkpoint (every 250 steps),
# which gives the same bits as an uninterrupted run.
train_row() {
  local row=$1 minutes=$2 seed=$3 dir steps resume=""
  dir="$STUDY/$row-${minutes}m-s$seed"
  steps=$(steps_for "$row" "$minutes")
  [ -f "$dir/done" ] && return 0
  ls "$dir"/ckpt-*.safetensors >/dev/null 2>&1 && resume="--resume auto"
  "$BIN/train_mnist" $BASE $(row_flags "$row") --seed "$seed" --steps "$steps" --threads 1 --sample-every 0 \
    --ckpt-every 250 --log-every 100 --data "$DATA" --out "$dir" $resume >>"$dir.train.log" 2>&1
  echo "$steps" >"$dir/done"
}

# judge ROW MINUTES SEED SAMPLER: ./eval at N = 1000 (sampler ddim: DDIM 50 steps; ddpm:
# Algorithm 2), with --variance V for rows named ROW@V.
judge() {
  local row=${1%@*} minutes=$2 seed=$3 sampler=$4 threads=${5:-1} variance="" dir ckpt out
  [ "$1" != "$row" ] && variance="--variance ${1#*@}"
  dir="$STUDY/$row-${minutes}m-s$seed"
  ckpt=$(ls "$dir"/ckpt-*.safetensors | sort | tail -n 1)
  out="$STUDY/$1-${minutes}m-s$seed.$sampler.eval"
  [ -s "$out" ] && return 0
  local how="--sampler ddpm"
  [ "$sampler" = ddim ] && how="--sampler ddim --ddim-steps 50"
  "$BIN/eval" --checkpoint "$ckpt" --n 1000 --classifier "$CLASSIFIER" --data "$DATA" $how $variance \
    --threads "$threads" >"$out.tmp" 2>"$out.log" && mv "$out.tmp" "$out"
}

export -f train_row judge steps_for speed_key row_flags rows
export STUDY BIN DATA CLASSIFIER BASE

screen() {  # screen [ROW...]: the named rows, or all of them
  { [ $# -gt 0 ] && printf '%s\n' "$@" || rows | awk '{print $1}'; } |
    xargs -P "$JOBS" -I{} bash -c 'train_row {} 10 0 && judge {} 10 0 ddim'
}

confirm() {
  for r in "$@"; do echo "$r"; done | xargs -P "$JOBS" -I{} bash -c 'train_row {} 20 0 && judge {} 20 0 ddpm'
}

# default: the exact default run (./train_mnist, no flags but --data and --out), alone on 2
# threads and timed (training plus its final grid), then judged by Algorithm 2 at N = 1000
# with each sampler variance. Run it on a quiet machine: its wall time is the README's.
default_run() {
  local dir="$STUDY/default-20m-s0" start
  if [ ! -f "$dir/done" ]; then
    local load timer=()
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    [ -x /usr/bin/time ] && timer=(/usr/bin/time -f '%M kB peak RSS' -o "$dir.rss")
    start=$(date +%s)
    "${timer[@]}" "$BIN/train_mnist" --data "$DATA" --out "$dir" >"$dir.train.log" 2>&1
    echo "$(( $(date +%s) - start )) s wall, training and final grid, on $(lscpu | sed -n 's/^Model name: *//p'), load before $load" >"$dir.time"
    grep -E '^step ' "$dir.train.log" | tail -n 1 | awk '{ split($2, s, "/"); print s[1] }' >"$dir/done"
  fi
  for v in fixed_large fixed_small; do
    judge "default@$v" 20 0 ddpm 2
  done
}

seeds() {
  for s in 1 2; do echo "$s"; done | xargs -P "$JOBS" -I{} bash -c "train_row $1 10 {} && judge $1 10 {} ddim"
}

table() {
  echo "| row | flags | minutes | steps | images seen | sampler | FLD (N = 1000) | floor FLD | precision | floor precision | recall | class entropy |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  local r
  for f in $(for r in $(rows | awk '{print $1}') default; do ls "$STUDY/$r"-*.eval "$STUDY/$r"@*.eval 2>/dev/null; done); do
    local name=${f##*/} rowvar minutes seed sampler row steps batch
    name=${name%.eval}
    sampler=${name##*.}
    name=${name%.*}
    seed=${name##*-s}
    name=${name%-s*}
    minutes=${name##*-}
    rowvar=${name%-*}
    row=${rowvar%@*}
    steps=$(cat "$STUDY/$row-$minutes-s$seed/done")
    batch=$(sed -nE '1s/.*, batch ([0-9]+),.*/\1/p' "$STUDY/$row-$minutes-s$seed.train.log")
    flags=$(row_flags "$row" | sed 's/^ *//')
    [ -z "$flags" ] && flags="(the base)"
    [ "$row" = default ] && flags="(./train_mnist as it is)"
    awk -v row="$rowvar" -v flags="$flags$([ "$rowvar" != "$row" ] && echo " --variance ${rowvar#*@}")" \
      -v m="${minutes%m}" -v steps="$steps" -v imgs="$((steps * batch))" -v seed="$seed" \
      -v sampler="$([ "$sampler" = ddim ] && echo "DDIM 50" || echo "Algorithm 2")" '
      /^  samples/ && !seen_samples++ { fld = $(NF-4); prec = $(NF-3); rec = $(NF-2); ent = $(NF-1) }
      /^  MNIST train images \(floor\)/ && !seen_floor++ { ffld = $(NF-4); fprec = $(NF-3) }
      END { printf "| %s%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", row,
            (seed == 0 ? "" : " (seed " seed ")"), flags, m, steps, imgs, sampler, fld, ffld, prec, fprec, rec, ent }' "$f"
  done
}

case "${1:-}" in
  speeds) speeds ;;
  screen) shift; screen "$@" ;;
  confirm) shift; confirm "$@" ;;
  seeds) shift; seeds "$1" ;;
  default) default_run ;;
  table) table ;;
  *) sed -n '2,20p' "$0"; exit 1 ;;
esac
