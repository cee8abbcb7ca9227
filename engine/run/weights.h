// Why: checkpoints hold fp32 host tensors; a model's master weights and Adam moments are acc_t<T>
// buffers on its device (fp32 for float and bf16, double for the f64 gradient check). These are the
// conversions between the two, and load_model_weights, the one way a command (eval, sample, grad, the
// trainer's evaluate_checkpoint) puts a checkpoint's weights into a Model.
#pragma once

#include <string>
#include <type_traits>
#include <vector>

#include "engine/core/device.h"
#include "engine/model/model.h"
#include "engine/run/checkpoint.h"

namespace mt {

// dst (n, host fp32) = src (n, device P).
template <typename P>
void copy_to_host_f32(std::vector<float>& dst, const P* src, size_t n, Device& dev) {
  dst.resize(n);
  if (n == 0) return;
  if constexpr (std::is_same_v<P, float>) {
    dev.copy(dst.data(), src, n * sizeof(float), CopyKind::DeviceToHost);
  } else {
    std::vector<P> tmp(n);
    dev.copy(tmp.data(), src, n * sizeof(P), CopyKind::DeviceToHost);
    for (size_t i = 0; i < n; ++i) dst[i] = float(tmp[i]);
  }
}

// dst (n, device P) = src[begin, begin + n) (host fp32).
template <typename P>
void copy_from_host_f32(P* dst, const std::vector<float>& src, size_t begin, size_t n, Device& dev) {
  if (n == 0) return;
  if constexpr (std::is_same_v<P, float>) {
    dev.copy(dst, src.data() + begin, n * sizeof(float), CopyKind::HostToDevice);
  } else {
    std::vector<P> tmp(src.begin() + std::ptrdiff_t(begin), src.begin() + std::ptrdiff_t(begin + n));
    dev.copy(dst, tmp.data(), n * sizeof(P), CopyKind::HostToDevice);
  }
}

// This rank's slices of the weights of `path` (a checkpoint folder written at any layout, or a
// single-file safetensors of full tensors: load_weights) into model's master weights, then its compute
// copies refreshed. Adam moments are not read.
template <typename T>
void load_model_weights(Model<T>& model, const std::string& path, Device& dev) {
  std::vector<float> dense(model.numel(ParamGroup::Dense)), expert(model.numel(ParamGroup::Expert));
  load_weights(path, model.layout(), dense.data(), expert.data());
  copy_from_host_f32(model.params(ParamGroup::Dense), dense, 0, dense.size(), dev);
  copy_from_host_f32(model.params(ParamGroup::Expert), expert, 0, expert.size(), dev);
  model.refresh_compute_weights();
}

}  // namespace mt
