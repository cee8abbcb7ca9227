// Why: data-parallel gradient reduction in buckets, started during the backward of the last
// micro-batch as soon as a bucket's gradients are final (the model signals a growing suffix of each
// buffer, engine/model/model.h GradReadyHook), so that communication overlaps the rest of the backward.
// Dense gradients sum over the dp group, expert gradients over the edp group (the replicas of the
// same experts). Buckets end on tensor boundaries.
#pragma once

#include <memory>
#include <vector>

#include "comm/comm.h"
#include "engine/model/model.h"

namespace mt {

template <typename P>
class GradSync final : public GradReadyHook {
 public:
  struct Buffer {
    P* data = nullptr;
    const ParamTable* table = nullptr;
    Comm* comm = nullptr;
  };
  GradSync(Buffer dense, Buffer expert, MemSpace space, size_t bucket_bytes);

  void ready(ParamGroup group, size_t offset) override;  // starts the buckets inside [offset, end)
  void finish();  // starts what is left and waits for all; the buffers then hold the sums

 private:
  struct Bucket {
    size_t begin, end;
    std::unique_ptr<CommRequest> request;
    bool started = false;
  };
  struct Group {
    Buffer buf;
    std::vector<Bucket> buckets;  // from the end of the buffer to its start
  };
  void start(Group& g, Bucket& b);
  Group groups_[2];
  MemSpace space_;
};

}  // namespace mt
