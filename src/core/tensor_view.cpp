#include "cgrpo/core/tensor_view.h"

namespace cgrpo {

TensorView::TensorView(void* p, DType t, std::initializer_list<int64_t> dims, Device d) : data(p), dtype(t), device(d) {
  CGRPO_CHECK(dims.size() <= static_cast<size_t>(kMaxDims), "tensor rank ", dims.size(), " > ", kMaxDims);
  ndim = static_cast<int>(dims.size());
  int i = 0;
  for (int64_t v : dims) {
    CGRPO_CHECK(v >= 0, "negative tensor dimension ", v);
    shape[i++] = v;
  }
  int64_t s = 1;
  for (int k = ndim - 1; k >= 0; --k) {
    strides[k] = s;
    s *= shape[k];
  }
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

bool TensorView::contiguous() const {
  int64_t s = 1;
  for (int k = ndim - 1; k >= 0; --k) {
    if (shape[k] != 1 && strides[k] != s) return false;
    s *= shape[k];
  }
  return true;
}

std::string TensorView::str() const {
  return dtype_name(dtype) + shape_str(std::vector<int64_t>(shape.begin(), shape.begin() + ndim));
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

TensorView TensorView::slice_flat(int64_t offset, int64_t count) const {
  CGRPO_CHECK(contiguous(), "slice_flat of non-contiguous ", str());
  CGRPO_CHECK(offset >= 0 && count >= 0 && offset + count <= numel(), "slice [", offset, ", ", offset + count,
              ") out of range for ", str());
  TensorView v;
  v.data = static_cast<char*>(data) + offset * static_cast<int64_t>(dtype_size(dtype));
  v.dtype = dtype;
  v.device = device;
  v.ndim = 1;
  v.shape[0] = count;
  v.strides[0] = 1;
  return v;
}

}  // namespace cgrpo
