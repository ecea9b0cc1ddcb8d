// TensorView: a non-owning view (pointer, dtype, shape, strides in elements, device). Up to 5 dims.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "cgrpo/core/buffer.h"
#include "cgrpo/core/dtype.h"
#include "cgrpo/core/error.h"

namespace cgrpo {

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() { return DType::F32; }

struct TensorView {
  static constexpr int kMaxDims = 5;

  void* data = nullptr;
  DType dtype = DType::F32;
  Device device = Device::CPU;
  int ndim = 0;
  std::array<int64_t, kMaxDims> shape{};
  std::array<int64_t, kMaxDims> strides{};  // in elements

  TensorView() = default;
  // Contiguous row-major view.
  TensorView(void* p, DType t, std::initializer_list<int64_t> dims, Device d = Device::CPU);
  static TensorView of(float* p, std::initializer_list<int64_t> dims) { return TensorView(p, DType::F32, dims); }
  static TensorView of(const float* p, std::initializer_list<int64_t> dims) {
    return TensorView(const_cast<float*>(p), DType::F32, dims);
  }
  static TensorView of(Buffer& b, DType t, std::initializer_list<int64_t> dims) {
    return TensorView(b.data(), t, dims, b.device());
  }

  int64_t dim(int i) const { return shape[i < 0 ? ndim + i : i]; }
  int64_t stride(int i) const { return strides[i < 0 ? ndim + i : i]; }
  int64_t numel() const;
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  bool contiguous() const;
  std::string str() const;  // "f32[2,3,4]"

  template <class T>
  T* as() const {
    CGRPO_CHECK(dtype == dtype_of<T>(), "tensor ", str(), " accessed as the wrong element type");
    return static_cast<T*>(data);
  }
  // Flat view of a contiguous range [offset, offset + count) of a contiguous tensor.
  TensorView slice_flat(int64_t offset, int64_t count) const;
};

std::string shape_str(const std::vector<int64_t>& shape);  // "[2,3,4]"

}  // namespace cgrpo
