// Why: the few rules that follow from the model's shape alone (which layers are MoE), beside its struct.
#include "engine/model/model_config.h"

namespace mt {

const char* to_string(MoeLayout layout) {
  switch (layout) {
    case MoeLayout::Full: return "full";
    case MoeLayout::OneDense: return "1dense";
    case MoeLayout::Interleave: return "interleave";
  }
  return "?";
}

bool ModelConfig::is_moe_layer(int layer) const {
  if (!moe.enabled) return false;
  switch (moe.layout) {
    case MoeLayout::Full: return true;
    case MoeLayout::OneDense: return layer > 0;
    case MoeLayout::Interleave: return layer % 2 == 1;
  }
  return false;
}

int ModelConfig::n_moe_layers() const {
  int n = 0;
  for (int l = 0; l < n_layers; ++l) n += is_moe_layer(l);
  return n;
}

}  // namespace mt
