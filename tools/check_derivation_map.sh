#!/usr/bin/env bash
# Fails when docs/derivation.md's tags name something that does not exist:
#   code: ddpm::NAME or ddpm::Type::NAME   NAME must be declared in a header under ddpm/
#                                          (a function, type, enum or member declaration)
#   test: "CASE NAME"                      TEST_CASE("CASE NAME") must exist under tests/
# Also fails when the map has no tags at all (a broken parse must not pass).
set -euo pipefail
cd "$(dirname "$0")/.."
map=docs/derivation.md
[ -f "$map" ] || { echo "check_derivation_map: $map is missing" >&2; exit 1; }

status=0
n_code=0
n_test=0
while IFS= read -r tag; do
  n_code=$((n_code + 1))
  name=${tag##*::}
  # A declaration: NAME( ... , struct/class/enum/using NAME, or a member "NAME;" / "NAME," / "NAME ="
  if ! grep -rEq --include='*.h' "(^|[^A-Za-z0-9_])${name}[[:space:]]*\(|(struct|class|enum class|enum|using)[[:space:]]+${name}([^A-Za-z0-9_]|$)|[[:space:]*&]${name}[[:space:]]*[,;=[]" ddpm/; then
    echo "check_derivation_map: 'code: $tag' names '$name', which no header under ddpm/ declares" >&2
    status=1
  fi
done < <(grep -oE 'code: ddpm::[A-Za-z_][A-Za-z0-9_:]*' "$map" | sed 's/^code: //')

while IFS= read -r name; do
  n_test=$((n_test + 1))
  if ! grep -rqF "TEST_CASE(\"$name\")" tests/; then
    echo "check_derivation_map: 'test: \"$name\"' is not a TEST_CASE under tests/" >&2
    status=1
  fi
done < <(grep -oE 'test: "[^"]+"' "$map" | sed -E 's/^test: "(.*)"$/\1/')

if [ "$n_code" -eq 0 ] || [ "$n_test" -eq 0 ]; then
  echo "check_derivation_map: found $n_code code tags and $n_test test tags in $map; expected some of each" >&2
  status=1
fi
[ $status -eq 0 ] && echo "check_derivation_map: all $n_code code tags and $n_test test tags in $map resolve"
exit $status
