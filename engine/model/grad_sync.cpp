// Why: see grad_sync.h.
#include "engine/model/grad_sync.h"

#include "engine/core/check.h"

namespace mt {

template <typename P>
GradSync<P>::GradSync(Buffer dense, Buffer expert, MemSpace space, size_t bucket_bytes) : space_(space) {
  Buffer bufs[2] = {dense, expert};
  for (int i = 0; i < 2; ++i) {
    Group& g = groups_[i];
    g.buf = bufs[i];
    if (!g.buf.table || g.buf.table->numel == 0 || !g.buf.comm || g.buf.comm->size() == 1) continue;
    // Walk the tensors from the last, closing a bucket once it holds bucket_bytes.
    const auto& ts = g.buf.table->tensors;
    size_t end = g.buf.table->numel, begin = end;
    for (int t = int(ts.size()) - 1; t >= 0; --t) {
      begin = ts[t].offset;
      if ((end - begin) * sizeof(P) >= bucket_bytes || t == 0) {
        g.buckets.push_back({begin, end, nullptr, false});
        end = begin;
      }
    }
  }
}

template <typename P>
void GradSync<P>::start(Group& g, Bucket& b) {
  b.request = g.buf.comm->iallreduce_sum(g.buf.data + b.begin, b.end - b.begin, dtype_of<P>(), space_);
  b.started = true;
}

template <typename P>
void GradSync<P>::ready(ParamGroup group, size_t offset) {
  Group& g = groups_[int(group)];
  for (Bucket& b : g.buckets)
    if (!b.started && b.begin >= offset) start(g, b);
}

template <typename P>
void GradSync<P>::finish() {
  for (Group& g : groups_) {
    for (Bucket& b : g.buckets)
      if (!b.started) start(g, b);
    for (Bucket& b : g.buckets) {
      b.request->wait();
      b.request.reset();
      b.started = false;
    }
  }
}

template class GradSync<float>;
template class GradSync<double>;

}  // namespace mt
