#!/usr/bin/env bash
# Fails when a file under ddpm/ includes a header from a layer above its own. The layers,
# bottom to top (docs/architecture: README "Layout"):
#   core < (dist) < ops < model < diffusion < extensions < train < eval < app
# io/ and data/ are leaves beside the stack: they include core/ and io/ only, and every
# layer above core may include them. dist/ (the communicator of MPI ranks) sits just above
# core: it includes core/ only, and only train/, eval/ and app/ include it. A folder may
# include its own headers. ddpm/ddpm.h, the public API's umbrella header (docs/library.md),
# is the top of the stack, above app/: it may include any layer but dist/, and nothing in
# ddpm/ may include it. No other file sits directly in ddpm/.
set -euo pipefail
cd "$(dirname "$0")/.."

rank() {
  case "$1" in
    core) echo 0 ;; io) echo 1 ;; data) echo 1 ;; dist) echo 1 ;; ops) echo 2 ;; model) echo 3 ;; diffusion) echo 4 ;;
    extensions) echo 5 ;; train) echo 6 ;; eval) echo 7 ;; app) echo 8 ;; ddpm.h) echo 9 ;; *) echo "" ;;
  esac
}

status=0
n=0
for f in $(git ls-files 'ddpm/*.h' 'ddpm/*.cpp' 2>/dev/null || find ddpm -name '*.h' -o -name '*.cpp'); do
  layer=$(echo "$f" | cut -d/ -f2)  # a folder, or ddpm.h for the umbrella header
  r=$(rank "$layer")
  [ -n "$r" ] || { echo "check_layers: $f is in no known layer (ddpm/$layer/)" >&2; status=1; continue; }
  while IFS= read -r inc; do
    n=$((n + 1))
    dep=$(echo "$inc" | cut -d/ -f2)
    [ "$dep" = "$layer" ] && continue
    d=$(rank "$dep")
    bad=""
    if [ -z "$d" ]; then bad="an unknown layer"
    elif [ "$layer" = io ] || [ "$layer" = data ]; then
      { [ "$dep" = core ] || [ "$dep" = io ]; } || bad="a layer beside the leaves"
    elif [ "$layer" = dist ]; then
      [ "$dep" = core ] || bad="a layer other than core/ (dist/ includes core/ only)"
    elif [ "$dep" = dist ]; then
      case "$layer" in train | eval | app) ;; *) bad="dist/, which only train/, eval/ and app/ include" ;; esac
    elif [ "$d" -gt "$r" ]; then bad="a layer above $layer/"
    elif [ "$d" -eq "$r" ]; then bad="a sibling layer"
    fi
    [ -z "$bad" ] || { echo "check_layers: $f includes $inc, $bad" >&2; status=1; }
  done < <(grep -oE '^#include "ddpm/[^"]+"' "$f" | sed -E 's/^#include "(.*)"$/\1/')
done
[ "$n" -gt 0 ] || { echo "check_layers: found no includes at all (a broken parse must not pass)" >&2; exit 1; }
[ $status -eq 0 ] && echo "check_layers: $n includes, each one points down the stack"
exit $status
