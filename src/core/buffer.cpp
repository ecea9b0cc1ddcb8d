#include "cgrpo/core/buffer.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "cgrpo/core/error.h"

namespace cgrpo {
namespace {
std::atomic<int64_t> g_live[2][kMemCategories];
std::atomic<int64_t> g_peak[2][kMemCategories];
DeviceAllocator g_alloc[2];

void account(Device d, MemCategory c, int64_t delta) {
  const int di = static_cast<int>(d), ci = static_cast<int>(c);
  const int64_t now = g_live[di][ci].fetch_add(delta) + delta;
  int64_t peak = g_peak[di][ci].load();
  while (now > peak && !g_peak[di][ci].compare_exchange_weak(peak, now)) {
  }
}
}  // namespace

const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

const char* mem_category_name(MemCategory c) {
  static const char* names[] = {"params", "grads", "master", "moments", "activations", "workspace", "other"};
  return names[static_cast<int>(c)];
}

MemoryStats memory_stats() {
  MemoryStats s;
  for (int d = 0; d < 2; ++d)
    for (int c = 0; c < kMemCategories; ++c) {
      s.live_bytes[d][c] = g_live[d][c].load();
      s.peak_bytes[d][c] = g_peak[d][c].load();
    }
  return s;
}

void reset_peak_memory() {
  for (int d = 0; d < 2; ++d)
    for (int c = 0; c < kMemCategories; ++c) g_peak[d][c] = g_live[d][c].load();
}

void set_device_allocator(Device d, DeviceAllocator a) { g_alloc[static_cast<int>(d)] = a; }

Buffer::Buffer(size_t bytes, Device device, MemCategory category)
    : bytes_(bytes), device_(device), category_(category) {
  if (bytes == 0) return;
  if (device == Device::CPU) {
    const size_t rounded = (bytes + 63) / 64 * 64;
    ptr_ = std::aligned_alloc(64, rounded);
    CGRPO_CHECK(ptr_ != nullptr, "out of host memory allocating ", bytes, " bytes for ",
                mem_category_name(category), hint("reduce the micro-batch size or shard more (parallel.zero_stage)"));
  } else {
    const DeviceAllocator& a = g_alloc[static_cast<int>(device)];
    CGRPO_CHECK(a.alloc != nullptr, "no allocator installed for device ", device_name(device),
                hint("the CUDA backend must be initialised before device buffers are made"));
    ptr_ = a.alloc(bytes);
  }
  account(device_, category_, static_cast<int64_t>(bytes_));
}

Buffer::~Buffer() { reset(); }

void Buffer::reset() {
  if (ptr_ == nullptr) return;
  if (device_ == Device::CPU)
    std::free(ptr_);
  else
    g_alloc[static_cast<int>(device_)].free(ptr_);
  account(device_, category_, -static_cast<int64_t>(bytes_));
  ptr_ = nullptr;
  bytes_ = 0;
}

void Buffer::zero() {
  CGRPO_CHECK(device_ == Device::CPU, "Buffer::zero on a device buffer");
  if (ptr_) std::memset(ptr_, 0, bytes_);
}

Buffer::Buffer(Buffer&& o) noexcept
    : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)), device_(o.device_), category_(o.category_) {}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    reset();
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
    device_ = o.device_;
    category_ = o.category_;
  }
  return *this;
}

}  // namespace cgrpo
