#include "cgrpo/io/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cgrpo/core/error.h"
#include "cgrpo/core/tensor_view.h"

namespace cgrpo {

namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

constexpr uint64_t kMaxHeader = 100ull << 20;      // the reference implementation's limit
constexpr size_t kChunkElems = size_t(1) << 22;   // conversion chunk (16 MiB of fp32)

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

File open_file(const std::string& path, const char* mode) {
  File f(std::fopen(path.c_str(), mode));
  CGRPO_CHECK(f != nullptr, "cannot open ", path, (mode[0] == 'r' ? " for reading" : " for writing"),
              hint(mode[0] == 'r' ? "check the path" : "check the directory exists and is writable"));
  return f;
}

const char* st_dtype_name(DType t) { return t == DType::F32 ? "F32" : t == DType::BF16 ? "BF16" : "F16"; }

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  CGRPO_CHECK(f.good(), "cannot open ", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  CGRPO_CHECK(!ec, "cannot open safetensors file ", path, ": ", ec.message());
  CGRPO_CHECK(size >= 8, path, ": file is ", size, " bytes, too short for a safetensors header (truncated?)");
  File f = open_file(path, "rb");
  unsigned char lenb[8];
  CGRPO_CHECK(std::fread(lenb, 1, 8, f.get()) == 8, path, ": cannot read the header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | lenb[i];
  CGRPO_CHECK(n <= kMaxHeader && n <= size - 8, path, ": header length ", n, " exceeds the file size ", size,
              " (truncated or not a safetensors file)");
  std::string header(n, '\0');
  CGRPO_CHECK(std::fread(header.data(), 1, n, f.get()) == n, path, ": cannot read the ", n, "-byte header");
  data_start_ = 8 + n;
  const uint64_t data_size = size - data_start_;
  json j;
  try {
    j = json::parse(header);
  } catch (const json::exception& e) {
    CGRPO_FAIL(path, ": header is not valid JSON: ", e.what());
  }
  CGRPO_CHECK(j.is_object(), path, ": header is not a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      CGRPO_CHECK(v.is_object(), path, ": __metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m)
        metadata_[m.key()] = m.value().is_string() ? m.value().get<std::string>() : m.value().dump();
      continue;
    }
    CGRPO_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"), path,
                ": tensor ", name, " lacks dtype, shape or data_offsets");
    SafetensorsTensor t;
    t.name = name;
    const std::string dt = v["dtype"].is_string() ? v["dtype"].get<std::string>() : v["dtype"].dump();
    if (dt == "F32") t.dtype = DType::F32;
    else if (dt == "BF16") t.dtype = DType::BF16;
    else if (dt == "F16") t.dtype = DType::F16;
    else CGRPO_FAIL(path, ": tensor ", name, " has dtype ", dt, ", which cgrpo cannot load",
                    hint("supported dtypes: F32, BF16, F16"));
    CGRPO_CHECK(v["shape"].is_array(), path, ": tensor ", name, ": shape is not an array");
    t.numel = 1;
    for (const json& d : v["shape"]) {
      CGRPO_CHECK(d.is_number_integer() && d.get<int64_t>() >= 0, path, ": tensor ", name, ": bad shape entry ",
                  d.dump());
      t.shape.push_back(d.get<int64_t>());
      t.numel *= t.shape.back();
    }
    const json& off = v["data_offsets"];
    CGRPO_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(), path,
                ": tensor ", name, ": data_offsets must be [begin, end], got ", off.dump());
    t.begin = off[0].get<uint64_t>();
    t.end = off[1].get<uint64_t>();
    CGRPO_CHECK(t.begin <= t.end && t.end <= data_size, path, ": tensor ", name, ": data_offsets [", t.begin, ", ",
                t.end, "] lie outside the ", data_size, "-byte data section (truncated or corrupt file)");
    CGRPO_CHECK(t.end - t.begin == uint64_t(t.numel) * dtype_size(t.dtype), path, ": tensor ", name, ": data_offsets [",
                t.begin, ", ", t.end, "] hold ", t.end - t.begin, " bytes but ", dt, shape_str(t.shape), " needs ",
                uint64_t(t.numel) * dtype_size(t.dtype));
    tensors_.push_back(std::move(t));
  }
  std::vector<const SafetensorsTensor*> by_off;
  for (const auto& t : tensors_) by_off.push_back(&t);
  std::sort(by_off.begin(), by_off.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_off.size(); ++i)
    CGRPO_CHECK(by_off[i]->begin >= by_off[i - 1]->end || by_off[i - 1]->begin == by_off[i - 1]->end, path,
                ": tensors ", by_off[i - 1]->name, " and ", by_off[i]->name, " overlap in the data section");
}

const SafetensorsTensor* SafetensorsFile::find(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

void SafetensorsFile::read_f32(const SafetensorsTensor& t, float* dst, int64_t first, int64_t count) const {
  if (count < 0) count = t.numel - first;
  CGRPO_CHECK(first >= 0 && first + count <= t.numel, path_, ": elements [", first, ", ", first + count,
              ") are outside tensor ", t.name, " ", shape_str(t.shape));
  if (count == 0) return;
  File f = open_file(path_, "rb");
  const size_t es = dtype_size(t.dtype);
  CGRPO_CHECK(fseeko(f.get(), static_cast<off_t>(data_start_ + t.begin + uint64_t(first) * es), SEEK_SET) == 0, path_,
              ": seek to tensor ", t.name, " failed");
  std::vector<unsigned char> tmp(t.dtype == DType::F32 ? 0 : std::min<size_t>(size_t(count), kChunkElems) * es);
  for (size_t done = 0; done < size_t(count);) {
    const size_t n = std::min<size_t>(size_t(count) - done, kChunkElems);
    void* into = t.dtype == DType::F32 ? static_cast<void*>(dst + done) : tmp.data();
    CGRPO_CHECK(std::fread(into, es, n, f.get()) == n, path_, ": short read in tensor ", t.name,
                " (file truncated while reading?)");
    if (t.dtype != DType::F32) convert(tmp.data(), t.dtype, dst + done, DType::F32, n);
    done += n;
  }
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors, const ParamFill& fill,
                       DType dtype, const std::map<std::string, std::string>& metadata) {
  ojson h = ojson::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t off = 0;
  for (const auto& t : tensors) {
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    const uint64_t bytes = uint64_t(numel) * dtype_size(dtype);
    h[t.name] = {{"dtype", st_dtype_name(dtype)}, {"shape", t.shape}, {"data_offsets", {off, off + bytes}}};
    off += bytes;
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');  // the data section starts 8-byte aligned
  const std::string tmp_path = path + ".tmp";
  {
    File f = open_file(tmp_path, "wb");
    unsigned char lenb[8];
    for (int i = 0; i < 8; ++i) lenb[i] = static_cast<unsigned char>(uint64_t(header.size()) >> (8 * i));
    bool ok = std::fwrite(lenb, 1, 8, f.get()) == 8 && std::fwrite(header.data(), 1, header.size(), f.get()) == header.size();
    std::vector<float> f32(kChunkElems);  // [chunk]
    std::vector<unsigned char> buf(dtype == DType::F32 ? 0 : kChunkElems * dtype_size(dtype));
    for (const auto& t : tensors) {
      int64_t numel = 1;
      for (int64_t d : t.shape) numel *= d;
      for (size_t done = 0; ok && done < size_t(numel);) {
        const size_t n = std::min<size_t>(size_t(numel) - done, kChunkElems);
        fill(t.offset + int64_t(done), int64_t(n), f32.data());
        const void* src = f32.data();
        if (dtype != DType::F32) {
          convert(f32.data(), DType::F32, buf.data(), dtype, n);
          src = buf.data();
        }
        ok = std::fwrite(src, dtype_size(dtype), n, f.get()) == n;
        done += n;
      }
    }
    ok = ok && std::fflush(f.get()) == 0;
    CGRPO_CHECK(ok, "write to ", tmp_path, " failed", hint("check free disk space"));
  }
  std::error_code ec;
  fs::rename(tmp_path, path, ec);
  CGRPO_CHECK(!ec, "cannot rename ", tmp_path, " to ", path, ": ", ec.message());
}

void save_model(const std::string& dir, const ModelConfig& cfg, const float* params, DType dtype,
                uint64_t max_shard_bytes) {
  save_model(dir, cfg, [params](int64_t first, int64_t count, float* out) { std::copy_n(params + first, count, out); },
             dtype, max_shard_bytes);
}

void save_model(const std::string& dir, const ModelConfig& cfg, const ParamFill& fill, DType dtype,
                uint64_t max_shard_bytes) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  CGRPO_CHECK(!ec, "cannot create directory ", dir, ": ", ec.message());
  const ParamLayout layout(cfg);
  cfg.save((fs::path(dir) / "config.json").string());
  std::vector<std::vector<TensorToWrite>> shards(1);
  uint64_t in_shard = 0, total = 0;
  for (const ParamInfo& p : layout.params()) {
    const uint64_t bytes = uint64_t(p.numel) * dtype_size(dtype);
    if (max_shard_bytes > 0 && in_shard > 0 && in_shard + bytes > max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back({p.name, p.shape, p.offset});
    in_shard += bytes;
    total += bytes;
  }
  if (max_shard_bytes == 0) {
    write_safetensors((fs::path(dir) / "model.safetensors").string(), shards[0], fill, dtype);
    return;
  }
  ojson index = {{"metadata", {{"total_size", total}}}, {"weight_map", ojson::object()}};
  for (size_t s = 0; s < shards.size(); ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    write_safetensors((fs::path(dir) / name).string(), shards[s], fill, dtype);
    for (const auto& t : shards[s]) index["weight_map"][t.name] = name;
  }
  std::ofstream f(fs::path(dir) / "model.safetensors.index.json");
  f << index.dump(2) << "\n";
  CGRPO_CHECK(f.good(), "cannot write ", (fs::path(dir) / "model.safetensors.index.json").string());
}

std::vector<ModelTensorEntry> list_model_tensors(const std::string& dir) {
  const fs::path single = fs::path(dir) / "model.safetensors", index = fs::path(dir) / "model.safetensors.index.json";
  std::vector<std::string> files;
  std::map<std::string, std::string> weight_map;
  if (fs::exists(index)) {
    json j;
    try {
      j = json::parse(read_text(index.string()));
    } catch (const json::exception& e) {
      CGRPO_FAIL(index.string(), ": not valid JSON: ", e.what());
    }
    CGRPO_CHECK(j.contains("weight_map") && j["weight_map"].is_object(), index.string(), ": no weight_map object");
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      CGRPO_CHECK(it.value().is_string(), index.string(), ": weight_map entry ", it.key(), " is not a file name");
      const std::string file = it.value().get<std::string>();
      weight_map[it.key()] = file;
      if (std::find(files.begin(), files.end(), file) == files.end()) files.push_back(file);
    }
  } else {
    CGRPO_CHECK(fs::exists(single), "no weights in ", dir, ": neither model.safetensors nor model.safetensors.index.json",
                hint("create a model with `cgrpo init` or download an HF checkpoint"));
    files.push_back("model.safetensors");
  }
  std::vector<ModelTensorEntry> out;
  for (const std::string& file : files) {
    const std::string path = (fs::path(dir) / file).string();
    SafetensorsFile st(path);
    for (const SafetensorsTensor& t : st.tensors()) {
      if (!weight_map.empty()) {
        auto it = weight_map.find(t.name);
        CGRPO_CHECK(it != weight_map.end() && it->second == file, path, ": tensor ", t.name,
                    " is not mapped to this file in model.safetensors.index.json");
      }
      out.push_back({path, t});
    }
  }
  for (const auto& [name, file] : weight_map) {
    const bool found = std::any_of(out.begin(), out.end(), [&](const ModelTensorEntry& e) { return e.tensor.name == name; });
    CGRPO_CHECK(found, (fs::path(dir) / file).string(), ": tensor ", name,
                " is listed in model.safetensors.index.json but missing from the file");
  }
  return out;
}

}  // namespace cgrpo
