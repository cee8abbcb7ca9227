// Why: every MpiComm collective against a serial computation of its result, on host buffers and on
// device buffers staged through the host (a CountingDevice whose memory is host memory), with MPI's
// int counts split into pieces (a small max_count). ctest runs it on 2, 3 and 4 ranks.
#include <mpi.h>

#include <catch2/catch.hpp>
#include <climits>
#include <cstdint>
#include <vector>

#include "comm/mpi_comm.h"
#include "engine/core/check.h"
#include "tests/mpi/counting_device.h"

using namespace mt;
using mt::test::CountingDevice;

namespace {

std::unique_ptr<Comm> world_comm(Device& device, size_t max_count = INT_MAX) {
  MPI_Comm comm = MPI_COMM_NULL;
  REQUIRE(MPI_Comm_dup(MPI_COMM_WORLD, &comm) == MPI_SUCCESS);
  return make_mpi_comm(comm, device, "test", max_count);
}

// What rank r adds at index i: small integers, so that sums are exact in every type (uint8 included:
// at most 4 ranks x 60).
template <typename T>
T summand(int r, size_t i) {
  return T((size_t(r) * 37 + i * 11) % 61);
}

// What rank r sends at index i: distinct and exact in every tested type.
template <typename T>
T tag(int r, size_t i) {
  return T(size_t(r) * 1000 + i);
}

const char* name(MemSpace s) { return s == MemSpace::Host ? "host" : "device"; }

}  // namespace

TEMPLATE_TEST_CASE("allreduce_sum adds every rank's buffer", "[mpi]", float, double, int32_t, int64_t,
                   uint8_t) {
  CountingDevice dev;
  auto comm = world_comm(dev);
  const MemSpace space = GENERATE(MemSpace::Host, MemSpace::Device);
  INFO(name(space));
  const int n = comm->size(), me = comm->rank();
  const size_t count = 37;
  std::vector<TestType> buf(count), expected(count, TestType(0));
  for (size_t i = 0; i < count; ++i) {
    buf[i] = summand<TestType>(me, i);
    for (int r = 0; r < n; ++r) expected[i] += summand<TestType>(r, i);
  }
  comm->allreduce_sum(buf.data(), count, dtype_of<TestType>(), space);
  CHECK(buf == expected);
  const int staged = space == MemSpace::Device ? 1 : 0;
  CHECK(dev.copies_of(CopyKind::DeviceToHost) == staged);
  CHECK(dev.copies_of(CopyKind::HostToDevice) == staged);
  CHECK(dev.syncs == staged);
  CHECK(dev.counters().launches == staged);  // a collective on device buffers is one launch
}

TEMPLATE_TEST_CASE("iallreduce_sum completes in wait(), several in flight", "[mpi]", float, double,
                   int32_t, int64_t) {
  CountingDevice dev;
  auto comm = world_comm(dev);
  const MemSpace space = GENERATE(MemSpace::Host, MemSpace::Device);
  INFO(name(space));
  const int n = comm->size(), me = comm->rank();
  std::vector<TestType> a(37), b(5);
  std::vector<TestType> expected_a(a.size(), TestType(0)), expected_b(b.size(), TestType(0));
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = summand<TestType>(me, i);
    for (int r = 0; r < n; ++r) expected_a[i] += summand<TestType>(r, i);
  }
  for (size_t i = 0; i < b.size(); ++i) {
    b[i] = summand<TestType>(me, i + 100);
    for (int r = 0; r < n; ++r) expected_b[i] += summand<TestType>(r, i + 100);
  }
  auto req_a = comm->iallreduce_sum(a.data(), a.size(), dtype_of<TestType>(), space);
  auto req_b = comm->iallreduce_sum(b.data(), b.size(), dtype_of<TestType>(), space);
  const int staged = space == MemSpace::Device ? 1 : 0;
  CHECK(dev.copies_of(CopyKind::DeviceToHost) == 2 * staged);
  CHECK(dev.copies_of(CopyKind::HostToDevice) == 0);
  req_b->wait();
  req_a->wait();
  req_a->wait();  // a second wait does nothing
  CHECK(dev.copies_of(CopyKind::HostToDevice) == 2 * staged);
  CHECK(a == expected_a);
  CHECK(b == expected_b);

  // Finished requests hand their staging buffers to the next ones: stale contents must not leak in.
  for (int round = 0; round < 3; ++round) {
    std::vector<TestType> c(a.size(), TestType(1));
    auto req = comm->iallreduce_sum(c.data(), c.size(), dtype_of<TestType>(), space);
    req->wait();
    CHECK(c == std::vector<TestType>(a.size(), TestType(n)));
  }
}

TEMPLATE_TEST_CASE("allgather concatenates the ranks' blocks in rank order", "[mpi]", float, double,
                   int32_t, int64_t) {
  CountingDevice dev;
  auto comm = world_comm(dev);
  const MemSpace space = GENERATE(MemSpace::Host, MemSpace::Device);
  INFO(name(space));
  const int n = comm->size(), me = comm->rank();
  const size_t count = 5;
  std::vector<TestType> send(count), recv(n * count, TestType(-1)), expected(n * count);
  for (size_t i = 0; i < count; ++i) send[i] = tag<TestType>(me, i);
  for (int r = 0; r < n; ++r)
    for (size_t i = 0; i < count; ++i) expected[r * count + i] = tag<TestType>(r, i);
  comm->allgather(send.data(), recv.data(), count, dtype_of<TestType>(), space);
  CHECK(recv == expected);
  const int staged = space == MemSpace::Device ? 1 : 0;
  CHECK(dev.copies_of(CopyKind::DeviceToHost) == staged);
  CHECK(dev.copies_of(CopyKind::HostToDevice) == staged);
}

TEMPLATE_TEST_CASE("reduce_scatter_sum gives rank r the sum of block r", "[mpi]", float, double, int32_t,
                   int64_t) {
  CountingDevice dev;
  auto comm = world_comm(dev);
  const MemSpace space = GENERATE(MemSpace::Host, MemSpace::Device);
  INFO(name(space));
  const int n = comm->size(), me = comm->rank();
  const size_t count = 4;
  std::vector<TestType> send(n * count), recv(count, TestType(-1)), expected(count, TestType(0));
  for (size_t j = 0; j < send.size(); ++j) send[j] = summand<TestType>(me, j);
  for (int r = 0; r < n; ++r)
    for (size_t i = 0; i < count; ++i) expected[i] += summand<TestType>(r, me * count + i);
  comm->reduce_scatter_sum(send.data(), recv.data(), count, dtype_of<TestType>(), space);
  CHECK(recv == expected);
  const int staged = space == MemSpace::Device ? 1 : 0;
  CHECK(dev.copies_of(CopyKind::DeviceToHost) == staged);
  CHECK(dev.copies_of(CopyKind::HostToDevice) == staged);
}

TEMPLATE_TEST_CASE("alltoallv moves uneven and empty blocks and keeps the gaps", "[mpi]", float, double,
                   int32_t, int64_t) {
  CountingDevice dev;
  auto comm = world_comm(dev);
  const MemSpace space = GENERATE(MemSpace::Host, MemSpace::Device);
  const size_t gap = GENERATE(0, 2);        // elements left between consecutive blocks
  const bool rank0_silent = GENERATE(false, true);  // rank 0 sends nothing at all
  INFO(name(space) << ", gap " << gap << (rank0_silent ? ", rank 0 silent" : ""));
  const int n = comm->size(), me = comm->rank();
  // Elements sent from rank i to rank j: uneven, some zero.
  auto sent = [&](int i, int j) -> size_t { return rank0_silent && i == 0 ? 0 : (i + 2 * j + 1) % 4; };
  std::vector<size_t> send_counts(n), send_displs(n), recv_counts(n), recv_displs(n);
  size_t send_end = gap, recv_end = gap;
  for (int j = 0; j < n; ++j) {
    send_counts[j] = sent(me, j);
    send_displs[j] = send_end;
    send_end += send_counts[j] + gap;
    recv_counts[j] = sent(j, me);
    recv_displs[j] = recv_end;
    recv_end += recv_counts[j] + gap;
  }
  const TestType sentinel = TestType(-1);
  std::vector<TestType> send(send_end, sentinel), recv(recv_end, sentinel), expected(recv_end, sentinel);
  int nonempty_recv = 0;
  for (int j = 0; j < n; ++j) {
    for (size_t k = 0; k < send_counts[j]; ++k) send[send_displs[j] + k] = tag<TestType>(me, j * 100 + k);
    for (size_t k = 0; k < recv_counts[j]; ++k) expected[recv_displs[j] + k] = tag<TestType>(j, me * 100 + k);
    nonempty_recv += recv_counts[j] > 0;
  }
  comm->alltoallv(send.data(), send_counts.data(), send_displs.data(), recv.data(), recv_counts.data(),
                  recv_displs.data(), dtype_of<TestType>(), space);
  CHECK(recv == expected);
  if (space == MemSpace::Device) {
    const bool sends = send_end > gap * (n + 1);
    CHECK(dev.copies_of(CopyKind::DeviceToHost) == (sends ? 1 : 0));
    // Adjacent received blocks come back in one copy; blocks with gaps between them one copy each.
    CHECK(dev.copies_of(CopyKind::HostToDevice) == (gap == 0 ? (nonempty_recv > 0 ? 1 : 0) : nonempty_recv));
  } else {
    CHECK(dev.total_copies() == 0);
  }
}

TEMPLATE_TEST_CASE("alltoall_host sends block j to rank j", "[mpi]", int32_t, int64_t, float, double) {
  CountingDevice dev;
  auto comm = world_comm(dev);
  const int n = comm->size(), me = comm->rank();
  const size_t count = 3;
  std::vector<TestType> send(n * count), recv(n * count, TestType(-1)), expected(n * count);
  for (int j = 0; j < n; ++j)
    for (size_t k = 0; k < count; ++k) {
      send[j * count + k] = tag<TestType>(me, j * count + k);
      expected[j * count + k] = tag<TestType>(j, me * count + k);
    }
  comm->alltoall_host(send.data(), recv.data(), count, dtype_of<TestType>());
  CHECK(recv == expected);
}

TEMPLATE_TEST_CASE("broadcast copies the root's buffer to every rank", "[mpi]", float, double, int32_t,
                   int64_t) {
  CountingDevice dev;
  auto comm = world_comm(dev);
  const MemSpace space = GENERATE(MemSpace::Host, MemSpace::Device);
  const int n = comm->size(), me = comm->rank();
  const int root = GENERATE(0, 1) == 0 ? n - 1 : n / 2;  // a non-zero root on every size
  INFO(name(space) << ", root " << root);
  const size_t count = 11;
  std::vector<TestType> buf(count), expected(count);
  for (size_t i = 0; i < count; ++i) {
    buf[i] = tag<TestType>(me, i);
    expected[i] = tag<TestType>(root, i);
  }
  comm->broadcast(buf.data(), count, dtype_of<TestType>(), root, space);
  CHECK(buf == expected);
  if (space == MemSpace::Device) {
    CHECK(dev.copies_of(CopyKind::DeviceToHost) == (me == root ? 1 : 0));
    CHECK(dev.copies_of(CopyKind::HostToDevice) == (me == root ? 0 : 1));
  }
}

TEST_CASE("bf16 moves as 16-bit words and cannot be summed", "[mpi]") {
  CountingDevice dev;
  auto comm = world_comm(dev);
  const int n = comm->size(), me = comm->rank();
  auto word = [](int r, size_t i) { return bf16{uint16_t(r * 1000 + i)}; };
  auto bits = [](const std::vector<bf16>& v) {
    std::vector<uint16_t> b;
    for (auto x : v) b.push_back(x.bits);
    return b;
  };
  const size_t count = 3;
  std::vector<bf16> send(count), recv(n * count, bf16{0xffff}), expected(n * count);
  for (size_t i = 0; i < count; ++i) send[i] = word(me, i);
  for (int r = 0; r < n; ++r)
    for (size_t i = 0; i < count; ++i) expected[r * count + i] = word(r, i);
  comm->allgather(send.data(), recv.data(), count, DType::BF16, MemSpace::Device);
  CHECK(bits(recv) == bits(expected));

  std::vector<size_t> counts(n, count), displs(n);
  for (int j = 0; j < n; ++j) displs[j] = j * count;
  std::vector<bf16> all(n * count), got(n * count);
  for (size_t i = 0; i < all.size(); ++i) all[i] = word(me, i);
  for (int j = 0; j < n; ++j)
    for (size_t k = 0; k < count; ++k) expected[j * count + k] = word(j, me * count + k);
  comm->alltoallv(all.data(), counts.data(), displs.data(), got.data(), counts.data(), displs.data(),
                  DType::BF16, MemSpace::Host);
  CHECK(bits(got) == bits(expected));

  std::vector<bf16> b = send;
  comm->broadcast(b.data(), count, DType::BF16, n - 1, MemSpace::Host);
  CHECK(bits(b) == std::vector<uint16_t>{word(n - 1, 0).bits, word(n - 1, 1).bits, word(n - 1, 2).bits});

  CHECK_THROWS_WITH(comm->allreduce_sum(b.data(), count, DType::BF16, MemSpace::Host),
                    Catch::Contains("cannot sum bf16"));
  CHECK_THROWS_AS(comm->iallreduce_sum(b.data(), count, DType::BF16, MemSpace::Host), Error);
  CHECK_THROWS_AS(comm->reduce_scatter_sum(all.data(), b.data(), count, DType::BF16, MemSpace::Host), Error);
}

TEST_CASE("a broadcast root outside the communicator is an error", "[mpi]") {
  CountingDevice dev;
  auto comm = world_comm(dev);
  int x = 0;
  CHECK_THROWS_WITH(comm->broadcast(&x, 1, DType::I32, comm->size(), MemSpace::Host),
                    Catch::Contains("broadcast root"));
  CHECK_THROWS_AS(comm->broadcast(&x, 1, DType::I32, -1, MemSpace::Host), Error);
}

TEST_CASE("counts above the largest MPI count are split into pieces", "[mpi]") {
  CountingDevice dev;
  const size_t max_count = 7;
  auto comm = world_comm(dev, max_count);
  const MemSpace space = GENERATE(MemSpace::Host, MemSpace::Device);
  const size_t count = GENERATE(1, 7, 21, 100);
  INFO(name(space) << ", count " << count);
  const int n = comm->size(), me = comm->rank();
  const int staged = space == MemSpace::Device ? 1 : 0;

  SECTION("allreduce_sum") {
    std::vector<float> buf(count), expected(count, 0.f);
    for (size_t i = 0; i < count; ++i) {
      buf[i] = summand<float>(me, i);
      for (int r = 0; r < n; ++r) expected[i] += summand<float>(r, i);
    }
    comm->allreduce_sum(buf.data(), count, DType::F32, space);
    CHECK(buf == expected);
    // The whole buffer is staged once, however many MPI calls it takes.
    CHECK(dev.copies_of(CopyKind::DeviceToHost) == staged);
    CHECK(dev.copies_of(CopyKind::HostToDevice) == staged);
  }
  SECTION("iallreduce_sum") {
    std::vector<double> buf(count), expected(count, 0.0);
    for (size_t i = 0; i < count; ++i) {
      buf[i] = summand<double>(me, i);
      for (int r = 0; r < n; ++r) expected[i] += summand<double>(r, i);
    }
    comm->iallreduce_sum(buf.data(), count, DType::F64, space)->wait();
    CHECK(buf == expected);
  }
  SECTION("broadcast") {
    std::vector<int64_t> buf(count), expected(count);
    for (size_t i = 0; i < count; ++i) {
      buf[i] = tag<int64_t>(me, i);
      expected[i] = tag<int64_t>(n - 1, i);
    }
    comm->broadcast(buf.data(), count, DType::I64, n - 1, space);
    CHECK(buf == expected);
  }
  SECTION("allgather") {
    std::vector<int32_t> send(count), recv(n * count, -1), expected(n * count);
    for (size_t i = 0; i < count; ++i) send[i] = tag<int32_t>(me, i);
    for (int r = 0; r < n; ++r)
      for (size_t i = 0; i < count; ++i) expected[r * count + i] = tag<int32_t>(r, i);
    comm->allgather(send.data(), recv.data(), count, DType::I32, space);
    CHECK(recv == expected);
  }
  SECTION("reduce_scatter_sum") {
    std::vector<float> send(n * count), recv(count, -1.f), expected(count, 0.f);
    for (size_t j = 0; j < send.size(); ++j) send[j] = summand<float>(me, j);
    for (int r = 0; r < n; ++r)
      for (size_t i = 0; i < count; ++i) expected[i] += summand<float>(r, me * count + i);
    comm->reduce_scatter_sum(send.data(), recv.data(), count, DType::F32, space);
    CHECK(recv == expected);
  }
}

TEST_CASE("alltoallv and alltoall_host reject counts MPI cannot take", "[mpi]") {
  CountingDevice dev;
  const size_t max_count = 7;
  auto comm = world_comm(dev, max_count);
  const int n = comm->size();
  const MemSpace space = GENERATE(MemSpace::Host, MemSpace::Device);
  INFO(name(space));
  std::vector<float> send(n * 8), recv(n * 8);
  std::vector<size_t> big(n, 8), small(n, 2), displs(n);
  for (int j = 0; j < n; ++j) displs[j] = j * 8;  // beyond 7 from rank 1 on
  CHECK_THROWS_WITH(comm->alltoallv(send.data(), big.data(), displs.data(), recv.data(), big.data(),
                                    displs.data(), DType::F32, space),
                    Catch::Contains("largest MPI count 7"));
  CHECK_THROWS_WITH(comm->alltoallv(send.data(), small.data(), displs.data(), recv.data(), small.data(),
                                    displs.data(), DType::F32, space),
                    Catch::Contains("largest MPI count 7"));
  CHECK_THROWS_WITH(comm->alltoall_host(send.data(), recv.data(), 8, DType::F32),
                    Catch::Contains("largest MPI count 7"));
}

TEST_CASE("device buffers of a CPU device need no staging", "[mpi]") {
  CountingDevice dev(DeviceKind::Cpu);
  auto comm = world_comm(dev);
  const int n = comm->size(), me = comm->rank();
  std::vector<double> buf(9, double(me + 1));
  comm->allreduce_sum(buf.data(), buf.size(), DType::F64, MemSpace::Device);
  CHECK(buf == std::vector<double>(9, n * (n + 1) / 2.0));
  std::vector<double> all(n);
  comm->allgather(&buf[0], all.data(), 1, DType::F64, MemSpace::Device);
  CHECK(all == std::vector<double>(n, n * (n + 1) / 2.0));
  CHECK(dev.total_copies() == 0);
  CHECK(dev.syncs == 0);
}

TEST_CASE("empty collectives, barrier and describe", "[mpi]") {
  CountingDevice dev;
  auto comm = world_comm(dev);
  const MemSpace space = GENERATE(MemSpace::Host, MemSpace::Device);
  const int n = comm->size(), me = comm->rank();
  float x = 5.f;
  comm->allreduce_sum(&x, 0, DType::F32, space);
  comm->iallreduce_sum(&x, 0, DType::F32, space)->wait();
  comm->allgather(&x, &x, 0, DType::F32, space);
  comm->reduce_scatter_sum(&x, &x, 0, DType::F32, space);
  comm->broadcast(&x, 0, DType::F32, 0, space);
  std::vector<size_t> zeros(n, 0);
  comm->alltoallv(&x, zeros.data(), zeros.data(), &x, zeros.data(), zeros.data(), DType::F32, space);
  comm->barrier();
  CHECK(x == 5.f);
  CHECK(dev.total_copies() == 0);
  CHECK(comm->describe() == "mpi test " + std::to_string(me) + "/" + std::to_string(n));
}

TEST_CASE("a failing MPI call becomes an mt::Error, not an abort inside MPI", "[mpi]") {
  CountingDevice dev;
  auto comm = world_comm(dev);
  const int n = comm->size();
  // Every rank sends 2 elements to each rank, which expects 1: MPI reports a truncation everywhere.
  std::vector<float> send(2 * n, 1.f), recv(2 * n, 0.f);
  std::vector<size_t> two(n, 2), one(n, 1), displs(n);
  for (int j = 0; j < n; ++j) displs[j] = 2 * j;
  CHECK_THROWS_WITH(comm->alltoallv(send.data(), two.data(), displs.data(), recv.data(), one.data(),
                                    displs.data(), DType::F32, MemSpace::Host),
                    Catch::Contains("MPI call failed") && Catch::Contains("MPI_Alltoallv"));
}
