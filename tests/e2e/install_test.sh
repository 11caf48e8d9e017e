#!/usr/bin/env bash
# install_test.sh (`make install-test`, CI's last stage): ddpm as another project gets it
# (docs/library.md).
#   1. `make install PREFIX=$tmp/make-prefix` from this build (SIMD=$SIMD): every tracked
#      ddpm/**/*.h and nothing else under include/, libddpm.a, ddpm.pc with this build's
#      SIMD flags, the CMake package. DESTDIR stages the same tree under another root.
#   2. CMake's install from $DDPM_CMAKE_BUILD (default build/cmake, which CI's cmake stage has
#      just built; only the library target is brought up to date) into $tmp/cmake-prefix: the
#      same files, and a ddpm.pc equal to make's but for the prefix. Skipped, saying so, when
#      that folder is not a configured CMake build; under CI=true that fails instead.
#   3. ddpm/ddpm.h compiles on its own against the install, warning-free (-Wall -Wextra -Werror).
#   4. examples/sample16, copied out of the tree, built with CMake (find_package(ddpm),
#      CMAKE_PREFIX_PATH) against each install and with its Makefile (pkg-config,
#      PKG_CONFIG_PATH) against make's.
#   5. A checkpoint: 2 steps of ./train_mnist's tiny U-Net at T = 20 on data/mnist (batch 16).
#   6. Every binary samples it: a 4x4 grid of 28x28 images with make_grid's 2-pixel padding,
#      4 * (28 + 2) + 2 = 122 pixels square, 8-bit gray. One also samples the fixture weights
#      (tests/fixtures/unet_minimal_weights.safetensors, 8x8 images: 4 * (8 + 2) + 2 = 42
#      square) given "linear 20", and refuses them without a schedule, saying what to pass.
# The first failure stops it with a line naming the step.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SIMD=${SIMD:-native}
MAKE=${MAKE:-make}
CMAKE_BUILD=${DDPM_CMAKE_BUILD:-build/cmake}
tmp=$(mktemp -d /tmp/ddpm-install-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS

fail() { echo "install_test: FAIL: $*" >&2; exit 1; }
step() { echo "install_test: $* ($((SECONDS - start))s)"; }
command -v pkg-config >/dev/null || fail "pkg-config is missing (Debian: sudo apt-get install -y pkg-config)"
command -v cmake >/dev/null || fail "cmake is missing (Debian: sudo apt-get install -y cmake)"

# The headers an install must hold: the tracked ones (the tree's, outside a git checkout).
expected_headers() {
  { git ls-files 'ddpm/*.h' 2>/dev/null || find ddpm -name '*.h'; } | sort
}
# check_install PREFIX: the layout of docs/library.md.
check_install() {
  local p=$1
  diff <(expected_headers) <(cd "$p/include" && find ddpm -type f | sort) >"$tmp/headers.diff" ||
    { cat "$tmp/headers.diff" >&2; fail "$p/include differs from the tracked headers (< tree, > installed)"; }
  for f in lib/libddpm.a lib/pkgconfig/ddpm.pc lib/cmake/ddpm/ddpmConfig.cmake \
           lib/cmake/ddpm/ddpmConfigVersion.cmake lib/cmake/ddpm/ddpmTargets.cmake; do
    [ -s "$p/$f" ] || fail "$p/$f is missing"
  done
  grep -qxF "prefix=$p" "$p/lib/pkgconfig/ddpm.pc" || fail "$p/lib/pkgconfig/ddpm.pc does not name its prefix $p"
}
# png_size FILE: "WIDTHxHEIGHT depth D color C" from the IHDR chunk (PNG spec 11.2.2).
png_size() {
  local b
  b=($(od -An -tu1 -j12 -N14 "$1"))
  [ "${#b[@]}" -eq 14 ] || fail "$1 is not a PNG (too short)"
  [ "$(printf '%02x%02x%02x%02x' "${b[0]}" "${b[1]}" "${b[2]}" "${b[3]}")" = 49484452 ] || fail "$1 has no IHDR first"
  echo "$(( (b[4] << 24) | (b[5] << 16) | (b[6] << 8) | b[7] ))x$(( (b[8] << 24) | (b[9] << 16) | (b[10] << 8) | b[11] )) depth ${b[12]} color ${b[13]}"
}
# run_sample BIN CHECKPOINT EXPECTED_SIZE [SCHEDULE T]: runs it, checks the grid.
run_sample() {
  local bin=$1 ckpt=$2 want=$3 out
  shift 3
  out="$tmp/$(basename "$(dirname "$bin")")-$(basename "$ckpt" .safetensors).png"
  "$bin" "$ckpt" "$out" "$@" >"$tmp/run.log" 2>&1 || { cat "$tmp/run.log" >&2; fail "$bin $ckpt $* failed"; }
  [ -s "$out" ] || fail "$bin wrote no $out"
  local got
  got=$(png_size "$out")
  [ "$got" = "$want depth 8 color 0" ] || fail "$out is $got; want $want, 8-bit gray (4x4 grid, 2-pixel padding)"
  echo "  $(cat "$tmp/run.log"): $got"
}

# 1. make install (and a DESTDIR-staged one: the same tree under the stage, naming the prefix).
step "make install PREFIX=$tmp/make-prefix (SIMD=$SIMD)"
"$MAKE" -s --no-print-directory install SIMD="$SIMD" PREFIX="$tmp/make-prefix" >"$tmp/install.log" ||
  { cat "$tmp/install.log" >&2; fail "make install"; }
check_install "$tmp/make-prefix"
"$MAKE" -s --no-print-directory install SIMD="$SIMD" PREFIX=/opt/ddpm DESTDIR="$tmp/stage" >/dev/null || fail "make install DESTDIR=..."
grep -qxF prefix=/opt/ddpm "$tmp/stage/opt/ddpm/lib/pkgconfig/ddpm.pc" || fail "DESTDIR: ddpm.pc does not name PREFIX /opt/ddpm"
[ -s "$tmp/stage/opt/ddpm/lib/libddpm.a" ] || fail "DESTDIR: no libddpm.a under the stage"
export PKG_CONFIG_PATH="$tmp/make-prefix/lib/pkgconfig"
flags=$(pkg-config --cflags --libs ddpm) || fail "pkg-config --cflags --libs ddpm"
echo "  pkg-config --cflags --libs ddpm: $flags"
case " $flags " in *" -std=c++17 "*) ;; *) fail "ddpm.pc has no -std=c++17" ;; esac
# The Makefile's ARCH_FLAGS for this SIMD (`make install-test` passes them).
if [ -n "${DDPM_ARCH_FLAGS:-}" ]; then
  case " $flags " in *" $DDPM_ARCH_FLAGS "*) ;; *) fail "ddpm.pc lacks this build's SIMD flags '$DDPM_ARCH_FLAGS'" ;; esac
fi

# 2. CMake's install, from the CMake build when there is one.
prefixes=("$tmp/make-prefix")
if [ -f "$CMAKE_BUILD/CMakeCache.txt" ]; then
  step "cmake --install $CMAKE_BUILD --prefix $tmp/cmake-prefix"
  cmake --build "$CMAKE_BUILD" --target ddpm >"$tmp/cmake-build.log" || { cat "$tmp/cmake-build.log" >&2; fail "cmake --build --target ddpm"; }
  cmake --install "$CMAKE_BUILD" --prefix "$tmp/cmake-prefix" >"$tmp/cmake-install.log" ||
    { cat "$tmp/cmake-install.log" >&2; fail "cmake --install"; }
  check_install "$tmp/cmake-prefix"
  diff <(grep -v '^prefix=' "$tmp/make-prefix/lib/pkgconfig/ddpm.pc") <(grep -v '^prefix=' "$tmp/cmake-prefix/lib/pkgconfig/ddpm.pc") ||
    fail "ddpm.pc of make install (<) and CMake's install (>) differ (the same SIMD on both?)"
  prefixes+=("$tmp/cmake-prefix")
elif [ "${CI:-}" = true ]; then
  fail "$CMAKE_BUILD is not a configured CMake build (CI builds it first: cmake -S . -B build/cmake)"
else
  step "CMake's install skipped: $CMAKE_BUILD is not a configured CMake build (cmake -S . -B build/cmake, or DDPM_CMAKE_BUILD=DIR)"
fi

# 3. The umbrella header alone, warning-free, with the installed flags only.
step "ddpm/ddpm.h alone against the install"
echo '#include <ddpm/ddpm.h>' >"$tmp/umbrella.cpp"
"${CXX:-g++}" -Wall -Wextra -Werror $(pkg-config --cflags ddpm) -fsyntax-only "$tmp/umbrella.cpp" || fail "ddpm/ddpm.h does not compile alone"

# 4. The example, out of the tree, with CMake against each install and with pkg-config.
cp -r examples/sample16 "$tmp/src"
rm -f "$tmp/src/sample16"
bins=()
for p in "${prefixes[@]}"; do
  name=$(basename "$p")
  step "examples/sample16 with CMake, find_package(ddpm) in $name"
  cmake -S "$tmp/src" -B "$tmp/cmake-$name" -DCMAKE_PREFIX_PATH="$p" >"$tmp/configure.log" 2>&1 ||
    { cat "$tmp/configure.log" >&2; fail "cmake configure of examples/sample16 against $p"; }
  cmake --build "$tmp/cmake-$name" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log" >&2; fail "cmake --build of examples/sample16 against $p"; }
  bins+=("$tmp/cmake-$name/sample16")
done
step "examples/sample16 with its Makefile, pkg-config from make-prefix"
"$MAKE" -s --no-print-directory -C "$tmp/src" CXXFLAGS="-O2 -Wall -Wextra -Werror" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log" >&2; fail "make -C examples/sample16"; }
bins+=("$tmp/src/sample16")

# 5. A checkpoint to sample: 2 steps of the tiny U-Net, T = 20.
step "a checkpoint: ./train_mnist --steps 2 --T 20 --batch 16"
[ -x ./train_mnist ] || fail "./train_mnist is not built (make train_mnist)"
./train_mnist --steps 2 --T 20 --batch 16 --sample-n 4 --log-every 1 --out "$tmp/run" >"$tmp/train.log" 2>&1 ||
  { cat "$tmp/train.log" >&2; fail "./train_mnist (MNIST in data/mnist: make data)"; }
ckpt="$tmp/run/ckpt-00000002.safetensors"
[ -f "$ckpt" ] || fail "./train_mnist wrote no $ckpt"

# 6. Each binary on it, and one on the fixture weights.
for bin in "${bins[@]}"; do
  step "${bin#$tmp/} on the checkpoint"
  run_sample "$bin" "$ckpt" 122x122
done
weights=tests/fixtures/unet_minimal_weights.safetensors
step "${bins[0]#$tmp/} on $weights"
run_sample "${bins[0]}" "$weights" 42x42 linear 20
if "${bins[0]}" "$weights" "$tmp/none.png" >"$tmp/refuse.log" 2>&1; then fail "a weights file without SCHEDULE T was sampled"; fi
grep -q "does not record its schedule: pass SCHEDULE T" "$tmp/refuse.log" || { cat "$tmp/refuse.log" >&2; fail "the refusal does not say what to pass"; }
step "passed"
