// Buffer: owning, move-only, 64-byte aligned memory on a device, tagged with a category so the
// process can report bytes by category (params, grads, master, moments, activations, workspace).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace cgrpo {

enum class Device : uint8_t { CPU = 0, CUDA = 1 };
const char* device_name(Device d);

enum class MemCategory : uint8_t { Params, Grads, Master, Moments, Activations, Workspace, Other, kCount };
const char* mem_category_name(MemCategory c);
constexpr int kMemCategories = static_cast<int>(MemCategory::kCount);

// Live and peak bytes per (device, category), process-wide.
struct MemoryStats {
  std::array<std::array<int64_t, kMemCategories>, 2> live_bytes{};
  std::array<std::array<int64_t, kMemCategories>, 2> peak_bytes{};
};
MemoryStats memory_stats();
void reset_peak_memory();

// Allocation hooks for non-CPU devices; the CUDA backend installs its own at init.
struct DeviceAllocator {
  void* (*alloc)(size_t bytes) = nullptr;
  void (*free)(void* ptr) = nullptr;
};
void set_device_allocator(Device d, DeviceAllocator a);

class Buffer {
 public:
  Buffer() = default;
  Buffer(size_t bytes, Device device = Device::CPU, MemCategory category = MemCategory::Other);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;

  void* data() const { return ptr_; }
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  MemCategory category() const { return category_; }
  bool empty() const { return ptr_ == nullptr; }
  void reset();  // frees; the Buffer becomes empty
  void zero();   // memset 0 (CPU only)

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  Device device_ = Device::CPU;
  MemCategory category_ = MemCategory::Other;
};

}  // namespace cgrpo
