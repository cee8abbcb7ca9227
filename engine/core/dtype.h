// Why: the element types of the engine. T is the activation / compute type of a backend (float or
// double on the CPU, float or bf16 on the GPU); P = acc_t<T> is the type of master weights, gradients,
// optimizer state and statistics (float, or double when T is double, which the gradient checks use).
// bf16 is a 16-bit storage type here (host code never computes in it); the CUDA backend reinterprets
// it as __nv_bfloat16.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace mt {

struct bf16 {
  uint16_t bits;
};

// Round to nearest even, NaN kept a NaN.
inline bf16 to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x40)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{uint16_t(u >> 16)};
}

inline float to_float(bf16 b) {
  uint32_t u = uint32_t(b.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

template <typename T>
struct acc_type {
  using type = float;
};
template <>
struct acc_type<double> {
  using type = double;
};
template <typename T>
using acc_t = typename acc_type<T>::type;

enum class DType { F32, F64, BF16, I32, I64, U8 };

template <typename T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>) return DType::F32;
  else if constexpr (std::is_same_v<T, double>) return DType::F64;
  else if constexpr (std::is_same_v<T, bf16>) return DType::BF16;
  else if constexpr (std::is_same_v<T, int32_t>) return DType::I32;
  else if constexpr (std::is_same_v<T, int64_t>) return DType::I64;
  else return DType::U8;
}

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: case DType::I32: return 4;
    case DType::F64: case DType::I64: return 8;
    case DType::BF16: return 2;
    case DType::U8: return 1;
  }
  return 0;
}

const char* dtype_name(DType t);

}  // namespace mt
