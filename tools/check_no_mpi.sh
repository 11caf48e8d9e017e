#!/usr/bin/env bash
# Fails when a default-build library or program holds any MPI symbol: the default build
# needs nothing but a compiler, and only `make MPI=1` (ddpm/dist/mpi.cpp) brings MPI in.
# Usage: tools/check_no_mpi.sh FILE...   (archives, objects or programs; nm reads each)
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 FILE..." >&2; exit 2; }
command -v nm >/dev/null || { echo "check_no_mpi: nm not found (binutils)" >&2; exit 1; }
status=0
for f in "$@"; do
  [ -e "$f" ] || { echo "check_no_mpi: $f does not exist" >&2; status=1; continue; }
  # Every symbol, defined or needed, C or C++ (demangled): MPI's API (MPI_*, PMPI_*) and
  # Open MPI's internals (ompi_*, opal_*).
  hits=$(nm -C "$f" 2>/dev/null | grep -E '\b(P?MPI_[A-Za-z_]+|ompi_[a-z_]+|opal_[a-z_]+)\b' | head -n 3 || true)
  if [ -n "$hits" ]; then
    echo "check_no_mpi: $f holds MPI symbols; MPI belongs to the MPI=1 build only:" >&2
    echo "$hits" >&2
    status=1
  fi
done
[ $status -eq 0 ] && echo "check_no_mpi: no MPI symbol in $*"
exit $status
