// Why: the Catch2 entry point of moetrain_gpu_tests (the GPU tests are their own executable, label gpu).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
