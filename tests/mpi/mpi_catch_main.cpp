// Why: the entry point of the Catch2 MPI tests. Every rank runs the same test cases in the same order
// (so their collectives match), and the job fails when any rank has a failure.
#define CATCH_CONFIG_RUNNER
#include <mpi.h>

#include <catch2/catch.hpp>
#include <cstdio>

#include "comm/grid.h"

int main(int argc, char** argv) {
  if (!mt::launched_by_mpi()) {
    std::fprintf(stderr, "%s: run this test under mpirun\n", argv[0]);
    return 2;
  }
  mt::init_distributed();
  int failed = Catch::Session().run(argc, argv);
  MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return failed;
}
