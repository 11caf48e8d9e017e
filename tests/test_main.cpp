// The doctest entry point. doctest comes from Debian's doctest-dev package.
#if !__has_include(<doctest/doctest.h>)
#error "doctest not found: install it with `apt-get install -y doctest-dev` (Debian's doctest-dev package)"
#endif
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
