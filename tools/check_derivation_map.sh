#!/usr/bin/env bash
# Fails when docs/derivation.md points at something that does not exist. The map's tags are
#   - code: [`NAME`](../path/file.cpp)       NAME (or Type::NAME) must appear in that file, each
#                                            ::-part as a whole word, that file must define its
#                                            last part (a function definition at column 0, or a
#                                            type or member declaration), and a header under
#                                            ddpm/ must declare it
#   - test: [`"CASE NAME"`](../tests/x.cpp)  TEST_CASE("CASE NAME") must be in that file
#   - test: no test yet                      allowed, and counted in the summary
# The code: and test: lines under one formula (a run of consecutive tag lines) must agree:
# each test case's body mentions at least one of the run's code names, and each code name
# is mentioned by at least one of the run's test cases. "Mentions" means the name's last
# ::-part appears as a whole word in the body, outside comments and string literals, or in
# the body of a function defined in that test file or in tests/*.h that the body calls
# (followed through such helpers). A test of an identity that never calls the code named
# beside it fails here.
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
  # The linked file defines it, not only mentions it: a top-level definition line (functions
  # start at column 0 here; calls are indented), or a type or member declaration.
  grep -qE "^[A-Za-z].*(^|[^A-Za-z0-9_])${last}[[:space:]]*\(|(struct|class|enum class|enum|using)[[:space:]]+${last}([^A-Za-z0-9_]|$)|[[:space:]*&]${last}[[:space:]]*[,;=[{]" "$file" ||
    fail "'code: $name' links $file, which mentions '$last' but does not define it"
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

# 4. Each formula's tests exercise its code. The body of TEST_CASE("$2") in file $1, with the
# bodies of the helpers it calls that tests/*.h or $1 define (a function whose definition
# starts at column 0; it and a test case end at the first "}" at column 0), string
# literals and // comments removed. Empty when the case is not found (step 3 reports it).
case_text() {
  awk -v name="$2" '
    function strip(line) {
      gsub(/"([^"\\]|\\.)*"/, "\"\"", line)
      sub(/\/\/.*/, "", line)
      return line
    }
    { line[++n] = strip($0); raw[n] = $0 }
    # The lines of the block after line i, up to the first "}" at column 0.
    function block(i,   j, out) {
      out = ""
      for (j = i + 1; j <= n && raw[j] !~ /^}/; j++) out = out line[j] "\n"
      return out
    }
    function calls(text,   rest, id) {  # appends the identifiers called in text to the work list
      rest = text
      while (match(rest, /[A-Za-z_][A-Za-z0-9_]*[ \t]*\(/)) {
        id = substr(rest, RSTART, RLENGTH)
        sub(/[ \t]*\($/, "", id)
        if (!(id in seen)) { seen[id] = 1; work[++nwork] = id }
        rest = substr(rest, RSTART + RLENGTH)
      }
    }
    END {
      start = 0
      for (i = 1; i <= n; i++)
        if (index(raw[i], "TEST_CASE(\"" name "\")") == 1) { start = i; break }
      if (!start) exit
      text = block(start)
      calls(text)
      for (w = 1; w <= nwork; w++) {
        re = "(^|[^A-Za-z0-9_])" work[w] "[ \t]*\\("
        for (i = 1; i <= n; i++)
          if (raw[i] ~ /^[A-Za-z_]/ && raw[i] !~ /^TEST_CASE/ && raw[i] !~ /;[ \t]*$/ && line[i] ~ re) {
            helper = block(i)
            text = text helper
            calls(helper)
            break
          }
      }
      printf "%s", text
    }
  ' "$1" tests/*.h
}

n_pairs=0
declare -A case_cache=()
# One formula's tags: the lines in run_lines, the first at line run_start of the map.
check_run() {
  local -a codes=() tests=() files=()
  local line
  for line in "${run_lines[@]}"; do
    if [[ $line =~ $code_re ]]; then
      codes+=("${BASH_REMATCH[1]}")
    elif [[ $line =~ $test_re ]]; then
      local file
      file=$(resolve "${BASH_REMATCH[2]}") || continue  # reported by step 3
      tests+=("${BASH_REMATCH[1]}")
      files+=("$file")
    fi
  done
  [ ${#codes[@]} -gt 0 ] && [ ${#tests[@]} -gt 0 ] || return 0
  local -A covered=()
  local i code text found listed
  listed=$(printf '"%s", ' "${tests[@]}")
  for i in "${!tests[@]}"; do
    local key="${files[$i]}|${tests[$i]}"
    [ -n "${case_cache[$key]+x}" ] || case_cache[$key]=$(case_text "${files[$i]}" "${tests[$i]}")
    text=${case_cache[$key]}
    [ -n "$text" ] || continue  # not a TEST_CASE: reported by step 3
    found=0
    for code in "${codes[@]}"; do
      if grep -qE "(^|[^A-Za-z0-9_])${code##*::}([^A-Za-z0-9_]|$)" <<<"$text"; then
        found=1
        covered[$code]=1
        n_pairs=$((n_pairs + 1))
      fi
    done
    [ $found -eq 1 ] ||
      fail "$map line $run_start: 'test: \"${tests[$i]}\"' (${files[$i]}) mentions none of the code listed with it (${codes[*]})"
  done
  for code in "${codes[@]}"; do
    [ -n "${covered[$code]+x}" ] ||
      fail "$map line $run_start: 'code: $code' is mentioned by none of the tests listed with it (${listed%, })"
  done
}

run_lines=()
run_start=0
lineno=0
while IFS= read -r line || [ -n "$line" ]; do
  lineno=$((lineno + 1))
  if [[ $line =~ ^[[:space:]]*-\ (code|test): ]]; then
    [ ${#run_lines[@]} -gt 0 ] || run_start=$lineno
    run_lines+=("$line")
  else
    [ ${#run_lines[@]} -eq 0 ] || check_run
    run_lines=()
  fi
done <"$map"
[ ${#run_lines[@]} -eq 0 ] || check_run

# 5. Nothing points outside the repository (the pattern is split so this file does not match it).
outside="shared""/reference|\.\./""shared"
if grep -rnE "$outside" docs ddpm tests tools Makefile CMakeLists.txt >&2; then
  fail "the lines above point at files outside the repository; state what they say here instead"
fi

if [ "$n_code" -eq 0 ] || [ "$n_test" -eq 0 ]; then
  fail "found $n_code code tags and $n_test test tags in $map; expected some of each"
fi
[ $status -eq 0 ] &&
  echo "check_derivation_map: all $n_links links, $n_code code tags and $n_test test tags in $map resolve, and each formula's tests mention its code ($n_pairs test-code pairs); rows marked no test yet: $n_untested"
exit $status
