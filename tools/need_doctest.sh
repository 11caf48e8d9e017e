#!/usr/bin/env bash
# tools/need_doctest.sh: makes sure $CXX finds doctest (doctest/doctest.h) before `make test`
# compiles a test. When it does not: as root on a machine with apt-get, installs Debian's
# doctest-dev, saying so (updating the package lists once if the install needs them);
# elsewhere prints the one command to run, and fails.
set -euo pipefail
CXX=${CXX:-g++}
found() { echo '#include <doctest/doctest.h>' | "$CXX" -std=c++17 -E -x c++ - >/dev/null 2>&1; }
found && exit 0
install="apt-get install -y doctest-dev"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "doctest not found: installing Debian's doctest-dev ($install)" >&2
  export DEBIAN_FRONTEND=noninteractive
  # A fresh image has no package lists: then update them and try once more.
  { $install -q || { apt-get update -q && $install -q; }; } >&2 || true
  found && exit 0
  echo "error: installing doctest-dev failed (see above); run: $install" >&2
elif command -v apt-get >/dev/null; then
  echo "error: doctest not found; install Debian's doctest-dev: sudo $install" >&2
else
  echo "error: doctest not found by $CXX; install doctest (https://github.com/doctest/doctest), whose" \
    "header doctest/doctest.h the tests include" >&2
fi
exit 1
