// Why: the names `moetrain bench` prints for each op family (engine/model/profile.h).
#include "engine/model/profile.h"

namespace mt {

const char* op_family_name(OpFamily f) {
  switch (f) {
    case OpFamily::Embedding: return "embedding";
    case OpFamily::Norm: return "rmsnorm";
    case OpFamily::Linear: return "linear (dense)";
    case OpFamily::Attention: return "attention";
    case OpFamily::SwiGLU: return "swiglu";
    case OpFamily::Router: return "router";
    case OpFamily::Dispatch: return "dispatch/combine";
    case OpFamily::Experts: return "experts";
    case OpFamily::LmHead: return "lm head";
    case OpFamily::Loss: return "cross-entropy";
    case OpFamily::TpComm: return "tp comm";
    case OpFamily::Optimizer: return "optimizer";
    case OpFamily::GradComm: return "grad comm";
    case OpFamily::Count: break;
  }
  return "?";
}

}  // namespace mt
