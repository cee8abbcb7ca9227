// Why: a job in which rank 1 fails while the other ranks wait in an allreduce, so that
// tests/mpi/expect_failure.sh can check that the whole job ends non-zero with a message instead of
// hanging. Modes (argv[1]): "throw" (rank 1 gets an mt::Error from the comm layer and, as app/main.cpp
// does, prints it and ends the job with mt::exit_job), "kill" (rank 1 dies by SIGKILL), "exit" (rank 1
// exits without MPI_Finalize), "none" (no rank fails: the control, which must succeed).
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "comm/grid.h"
#include "comm/job.h"
#include "engine/core/check.h"
#include "tests/mpi/counting_device.h"

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode != "throw" && mode != "kill" && mode != "exit" && mode != "none") {
    std::fprintf(stderr, "usage: %s throw|kill|exit|none\n", argv[0]);
    return 2;
  }
  int rank = 0;
  try {
    mt::test::CountingDevice device(mt::DeviceKind::Cpu);
    auto grid = mt::make_grid(1, 1, device);
    rank = grid->world_rank;
    if (rank == 1 && mode != "none") {
      // Let the other ranks enter the allreduce first.
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      if (mode == "kill") std::raise(SIGKILL);
      if (mode == "exit") std::exit(3);
      float x = 0;
      grid->world().allreduce_sum(&x, 1, mt::DType::BF16, mt::MemSpace::Host);  // throws mt::Error
    }
    std::fprintf(stderr, "rank %d waiting in allreduce\n", rank);
    double one = 1;
    grid->world().allreduce_sum(&one, 1, mt::DType::F64, mt::MemSpace::Host);
    MT_CHECK(one == grid->world_size, "allreduce of ones gave ", one);
    std::fprintf(stderr, "rank %d done\n", rank);
  } catch (const std::exception& e) {
    // What app/main.cpp does when a rank of a multi-rank job fails.
    std::fprintf(stderr, "moetrain: error (rank %d): %s\n", rank, e.what());
    std::fflush(stderr);
    mt::exit_job(1);
  }
  mt::finalize_job();
  return 0;
}
