// Why: the Catch2 entry point of moetrain_tests (Debian's Catch2 v2, single header).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
