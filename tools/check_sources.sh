#!/usr/bin/env bash
# Fails when the Makefile and CMakeLists.txt name different sources (library, the MPI
# build's, tests or tools), or when a listed file does not exist.
set -euo pipefail
cd "$(dirname "$0")/.."

make_list() {  # the backslash-continued list after "NAME :="
  awk -v name="$1" '
    $0 ~ "^"name" :=" { on = 1; sub("^"name" :=", "") }
    on { line = $0; cont = sub(/\\$/, "", line); n = split(line, w, /[ \t]+/); for (i = 1; i <= n; i++) if (w[i] != "") print w[i]; if (!cont) on = 0 }
  ' Makefile | sort
}
cmake_list() {  # the lines between "set(NAME" and ")"
  awk -v name="$1" '
    $0 ~ "^set\\("name"$" { on = 1; next }
    on && /^\)/ { on = 0 }
    on { gsub(/[ \t]/, ""); if ($0 != "") print }
  ' CMakeLists.txt | sort
}

status=0
for list in LIB_SRCS MPI_SRCS TEST_SRCS TOOLS; do
  if ! diff <(make_list "$list") <(cmake_list "$list") >/tmp/check_sources.$$ 2>&1; then
    echo "check_sources: $list differs between Makefile (<) and CMakeLists.txt (>):" >&2
    cat /tmp/check_sources.$$ >&2
    status=1
  fi
done
rm -f /tmp/check_sources.$$
for f in $(make_list LIB_SRCS) $(make_list MPI_SRCS) $(make_list TEST_SRCS); do
  [ -f "$f" ] || { echo "check_sources: $f is listed but does not exist" >&2; status=1; }
done
for t in $(make_list TOOLS); do
  [ -f "tools/$t.cpp" ] || { echo "check_sources: tool $t has no tools/$t.cpp" >&2; status=1; }
done
# Every source file in the tree is in a list (nothing compiled by one build only).
# (tests/fuzz/ holds the libFuzzer harnesses, which only clang can build: `make fuzz`.)
for f in $(git ls-files 'ddpm/*.cpp' 'tests/*.cpp' 2>/dev/null | grep -v '^tests/fuzz/' ||
           find ddpm tests -name '*.cpp' -not -path 'tests/fuzz/*'); do
  make_list LIB_SRCS | grep -qx "$f" || make_list MPI_SRCS | grep -qx "$f" || make_list TEST_SRCS | grep -qx "$f" ||
    { echo "check_sources: $f is in the tree but in no source list" >&2; status=1; }
done
[ $status -eq 0 ] && echo "check_sources: Makefile and CMakeLists.txt list the same sources"
exit $status
