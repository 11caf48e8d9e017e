#!/usr/bin/env bash
# Fails when docs/derivation.md points at something that does not exist. The map's tags are
#   - code: [`NAME`](../path/file.cpp)       NAME (or Type::NAME) must appear in that file, each
#                                            ::-part as a whole word, and its last part must be
#                                            declared in a header under ddpm/ (a function, type,
#                                            enum or member declaration)
#   - test: [`"CASE NAME"`](../tests/x.cpp)  TEST_CASE("CASE NAME") must be in that file
#   - test: no test yet                      allowed, and counted in the summary
# Every relative link in the map must name a file or folder inside the repository, and
# the map, the code, the tests and the tools must not point at files outside the repository.
# A code: or test: line in any other form fails, and so does a map with no tags at all
# (a broken parse must not pass).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd -P)
map=docs/derivation.md
[ -f "$map" ] || { echo "check_derivation_map: $map is missing" >&2; exit 1; }

status=0
fail() { echo "check_derivation_map: $*" >&2; status=1; }

# Resolves a link target (relative to docs/) to a repository path, or fails.
resolve() {
  local target=${1%%#*}
  local dir
  dir=$(cd docs && cd "$(dirname "$target")" 2>/dev/null && pwd -P) || return 1
  local full="$dir/$(basename "$target")"
  [ -e "$full" ] || return 1
  case "$full" in "$root"/*) echo "${full#"$root"/}" ;; *) return 1 ;; esac
}

# 1. Every relative link resolves to a file inside the repository.
n_links=0
while IFS= read -r target; do
  n_links=$((n_links + 1))
  case "$target" in http://* | https://* | mailto:* | '#'*) continue ;; esac
  resolve "$target" >/dev/null || fail "link '$target' does not name a file inside the repository"
done < <(grep -oE '\]\([^)]+\)' "$map" | sed -E 's/^\]\((.*)\)$/\1/')

# 2. code: tags.
n_code=0
code_re='^[[:space:]]*- code: \[`([A-Za-z_][A-Za-z0-9_:]*)`\]\(([^)]+)\)'
while IFS= read -r line; do
  if [[ ! $line =~ $code_re ]]; then
    fail "'$line' is not of the form '- code: [\`NAME\`](../path)'"
    continue
  fi
  n_code=$((n_code + 1))
  name=${BASH_REMATCH[1]}
  target=${BASH_REMATCH[2]}
  file=$(resolve "$target") || { fail "'code: $name' links '$target', which is not a file in the repository"; continue; }
  IFS=: read -ra parts <<<"${name//::/:}"
  for part in "${parts[@]}"; do
    grep -qE "(^|[^A-Za-z0-9_])${part}([^A-Za-z0-9_]|$)" "$file" ||
      fail "'code: $name' links $file, which does not contain '$part'"
  done
  last=${name##*::}
  # A declaration: NAME( ... , struct/class/enum/using NAME, or a member "NAME;" / "NAME," / "NAME ="
  if ! grep -rEq --include='*.h' "(^|[^A-Za-z0-9_])${last}[[:space:]]*\(|(struct|class|enum class|enum|using)[[:space:]]+${last}([^A-Za-z0-9_]|$)|[[:space:]*&]${last}[[:space:]]*[,;=[]" ddpm/; then
    fail "'code: $name' names '$last', which no header under ddpm/ declares"
  fi
done < <(grep -E '^[[:space:]]*- code:' "$map")

# 3. test: tags.
n_test=0
n_untested=0
test_re='^[[:space:]]*- test: \[`"([^"]+)"`\]\(([^)]+)\)'
untested_re='^[[:space:]]*- test: no test yet'
while IFS= read -r line; do
  if [[ $line =~ $untested_re ]]; then
    n_untested=$((n_untested + 1))
    continue
  fi
  if [[ ! $line =~ $test_re ]]; then
    fail "'$line' is not of the form '- test: [\`\"CASE\"\`](../tests/file.cpp)' or '- test: no test yet'"
    continue
  fi
  n_test=$((n_test + 1))
  name=${BASH_REMATCH[1]}
  target=${BASH_REMATCH[2]}
  file=$(resolve "$target") || { fail "'test: \"$name\"' links '$target', which is not a file in the repository"; continue; }
  grep -qF "TEST_CASE(\"$name\")" "$file" || fail "'test: \"$name\"' is not a TEST_CASE in $file"
done < <(grep -E '^[[:space:]]*- test:' "$map")

# 4. Nothing points outside the repository (the pattern is split so this file does not match it).
outside="shared""/reference|\.\./""shared"
if grep -rnE "$outside" docs ddpm tests tools Makefile CMakeLists.txt >&2; then
  fail "the lines above point at files outside the repository; state what they say here instead"
fi

if [ "$n_code" -eq 0 ] || [ "$n_test" -eq 0 ]; then
  fail "found $n_code code tags and $n_test test tags in $map; expected some of each"
fi
[ $status -eq 0 ] &&
  echo "check_derivation_map: all $n_links links, $n_code code tags and $n_test test tags in $map resolve; rows marked no test yet: $n_untested"
exit $status
