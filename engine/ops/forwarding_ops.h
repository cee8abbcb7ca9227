// Why: a backend that wraps another (engine/cpu/counting_ops.h counts each call, tests/gpu/plain_bf16_ops.h
// rounds outputs) should not write every op's signature again: ForwardingOps<T> is generated from the
// table of ops.h and passes every call to the wrapped Ops<T>, after its hook before(sync) (the op's
// OpSync column). A wrapper overrides the hook, and only the ops it treats differently.
#pragma once

#include "engine/ops/ops.h"

namespace mt {

template <typename T>
class ForwardingOps : public Ops<T> {
 public:
  using P = acc_t<T>;
  explicit ForwardingOps(Ops<T>& inner) : inner_(inner) {}

  Device& device() override { return inner_.device(); }

#define MT_FORWARDING_OP_(ret, name, params, args, sync) \
  ret name params override {                             \
    before(OpSync::sync);                                \
    return inner_.name args;                             \
  }
  MT_OPS(MT_FORWARDING_OP_, T, P)
#undef MT_FORWARDING_OP_

 protected:
  // Called before each op is passed on.
  virtual void before(OpSync) {}
  Ops<T>& inner_;
};

}  // namespace mt
