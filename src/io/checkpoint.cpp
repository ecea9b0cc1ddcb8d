#include "cgrpo/io/checkpoint.h"

#include <fcntl.h>
#include <hdf5.h>
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <tuple>

#include "cgrpo/core/build_info.h"
#include "cgrpo/core/error.h"
#include "cgrpo/core/logging.h"
#include "cgrpo/core/tensor_view.h"

namespace fs = std::filesystem;

namespace cgrpo {

uint64_t tensor_checksum(const float* x, int64_t begin, int64_t n) {
  uint64_t sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, x + i, 4);
    uint64_t z = uint64_t(begin + i) * 0x9E3779B97F4A7C15ull ^ (uint64_t(bits) << 17 | bits);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;  // splitmix64 finaliser
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    sum += z ^ (z >> 31);
  }
  return sum;
}

namespace {

// ---------------------------------------------------------------------------------------------- HDF5 RAII
struct H5Id {
  hid_t id = -1;
  herr_t (*close)(hid_t) = nullptr;
  H5Id() = default;
  H5Id(hid_t i, herr_t (*c)(hid_t)) : id(i), close(c) {}
  H5Id(const H5Id&) = delete;
  H5Id& operator=(const H5Id&) = delete;
  H5Id(H5Id&& o) noexcept : id(o.id), close(o.close) { o.id = -1; }
  ~H5Id() {
    if (id >= 0 && close) close(id);
  }
  operator hid_t() const { return id; }
  bool ok() const { return id >= 0; }
};

// An error in a load is not fatal by itself: `auto` resume falls back to an older checkpoint.
struct LoadError {
  std::string what;
};
#define H5_TRY(expr, ...)                                                  \
  do {                                                                     \
    if ((expr) < 0) throw LoadError{::cgrpo::detail::cat(__VA_ARGS__)};    \
  } while (0)

struct Category {
  const char* group;
  bool params;  // params (else a moment)
  int moment;   // 1 or 2
};
constexpr Category kCategories[] = {{"params", true, 0}, {"exp_avg", false, 1}, {"exp_avg_sq", false, 2}};

std::vector<int64_t> shape_of(const TensorSpec& t) { return t.shape.empty() ? std::vector<int64_t>{t.numel} : t.shape; }

// Select the flat row-major range [a, a + n) of a 1-D or 2-D dataspace (a union of at most 3 blocks).
void select_flat(hid_t space, const std::vector<int64_t>& shape, int64_t a, int64_t n) {
  if (n <= 0) {
    H5Sselect_none(space);
    return;
  }
  if (shape.size() == 1) {
    hsize_t start = hsize_t(a), count = hsize_t(n);
    H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, nullptr, &count, nullptr);
    return;
  }
  CGRPO_CHECK(shape.size() == 2, "checkpoint tensors are 1-D or 2-D, got ", shape_str(shape));
  const int64_t C = shape[1], end = a + n;
  int64_t r0 = a / C, c0 = a % C;
  const int64_t r1 = end / C, c1 = end % C;
  bool first = true;
  auto block = [&](int64_t row, int64_t col, int64_t rows, int64_t cols) {
    if (rows <= 0 || cols <= 0) return;
    hsize_t start[2] = {hsize_t(row), hsize_t(col)}, count[2] = {hsize_t(rows), hsize_t(cols)};
    H5Sselect_hyperslab(space, first ? H5S_SELECT_SET : H5S_SELECT_OR, start, nullptr, count, nullptr);
    first = false;
  };
  if (r0 == r1) {
    block(r0, c0, 1, c1 - c0);
    return;
  }
  if (c0 > 0) {
    block(r0, c0, 1, C - c0);
    ++r0;
  }
  block(r0, 0, r1 - r0, C);
  block(r1, 0, 1, c1);
}

H5Id open_file(const std::string& path, bool create) {
  H5Id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  H5Pset_fapl_mpio(fapl, MPI_COMM_WORLD, MPI_INFO_NULL);
  H5Pset_all_coll_metadata_ops(fapl, true);
  H5Pset_coll_metadata_write(fapl, true);
  if (create) return H5Id(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl), H5Fclose);
  return H5Id(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl), H5Fclose);
}

void write_attr_i64(hid_t obj, const char* name, int64_t v) {
  H5Id space(H5Screate(H5S_SCALAR), H5Sclose);
  H5Id a(H5Acreate2(obj, name, H5T_NATIVE_INT64, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  CGRPO_CHECK(a.ok() && H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0, "HDF5: cannot write attribute ", name);
}
void write_attr_u64(hid_t obj, const char* name, uint64_t v) {
  H5Id space(H5Screate(H5S_SCALAR), H5Sclose);
  H5Id a(H5Acreate2(obj, name, H5T_NATIVE_UINT64, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  CGRPO_CHECK(a.ok() && H5Awrite(a, H5T_NATIVE_UINT64, &v) >= 0, "HDF5: cannot write attribute ", name);
}
void write_attr_str(hid_t obj, const char* name, const std::string& v) {
  H5Id type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type, std::max<size_t>(1, v.size()));
  H5Id space(H5Screate(H5S_SCALAR), H5Sclose);
  H5Id a(H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  std::string buf = v.empty() ? std::string(1, '\0') : v;
  CGRPO_CHECK(a.ok() && H5Awrite(a, type, buf.data()) >= 0, "HDF5: cannot write attribute ", name);
}
template <class T>
T read_attr(hid_t obj, const char* name, hid_t type) {
  if (H5Aexists(obj, name) <= 0) throw LoadError{std::string("missing attribute '") + name + "'"};
  H5Id a(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  T v{};
  H5_TRY(H5Aread(a, type, &v), "cannot read attribute '", name, "'");
  return v;
}
int64_t read_attr_i64(hid_t obj, const char* name) { return read_attr<int64_t>(obj, name, H5T_NATIVE_INT64); }
uint64_t read_attr_u64(hid_t obj, const char* name) { return read_attr<uint64_t>(obj, name, H5T_NATIVE_UINT64); }
std::string read_attr_str(hid_t obj, const char* name) {
  if (H5Aexists(obj, name) <= 0) throw LoadError{std::string("missing attribute '") + name + "'"};
  H5Id a(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  H5Id type(H5Aget_type(a), H5Tclose);
  const size_t n = H5Tget_size(type);
  std::string buf(n, '\0');
  H5_TRY(H5Aread(a, type, buf.data()), "cannot read attribute '", name, "'");
  return std::string(buf.c_str());
}

// Sum per-dataset partial checksums over ranks (mod 2^64).
std::vector<uint64_t> sum_over_ranks(std::vector<uint64_t> partial) {
  std::vector<uint64_t> total(partial.size());
  MPI_Allreduce(partial.data(), total.data(), int(partial.size()), MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
  return total;
}

void fsync_path(const std::string& p) {
  const int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// Replace `path` with `text` atomically: write path.tmp, fsync, rename, fsync the directory (rank 0's pointer
// and record files: `latest`, best.json).
void write_text_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << text;
    CGRPO_CHECK(out.good(), "cannot write ", tmp, hint("check space and permissions"));
  }
  fsync_path(tmp);
  std::error_code ec;
  fs::rename(tmp, path, ec);
  CGRPO_CHECK(!ec, "cannot update ", path, ": ", ec.message());
  fsync_path(fs::path(path).parent_path().string());
}

// Iterates the datasets an engine maps to: (category, unit, tensor, offset of the tensor in the unit).
template <class F>
void for_each_dataset(ZeroEngine& e, F&& f) {
  for (const Category& c : kCategories) {
    if (!c.params && !e.trainable()) continue;
    for (int u = 0; u < e.num_units(); ++u) {
      int64_t off = 0;
      for (const TensorSpec& t : e.unit(u).tensors) {
        f(c, u, t, off);
        off += t.numel;
      }
    }
  }
}

std::string dataset_path(const char* prefix, const Category& c, const TensorSpec& t) {
  return std::string("/") + prefix + c.group + "/" + t.name;
}

void write_engine(hid_t file, ZeroEngine& e, const char* prefix, std::vector<std::string>& names,
                  std::vector<uint64_t>& partial, std::vector<hid_t>& open_sets) {
  for (const Category& c : kCategories) {
    if (!c.params && !e.trainable()) continue;
    H5Id g(H5Gcreate2(file, (std::string("/") + prefix + c.group).c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
           H5Gclose);
    CGRPO_CHECK(g.ok(), "HDF5: cannot create group ", prefix, c.group);
  }
  H5Id dxpl(H5Pcreate(H5P_DATASET_XFER), H5Pclose);
  H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
  H5Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
  H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
  std::vector<float> stage;  // host copy of one dataset's range when the engine lives on a device
  for_each_dataset(e, [&](const Category& c, int u, const TensorSpec& t, int64_t off) {
    const std::vector<int64_t> shape = shape_of(t);
    std::vector<hsize_t> dims(shape.begin(), shape.end());
    H5Id fspace(H5Screate_simple(int(dims.size()), dims.data(), nullptr), H5Sclose);
    const std::string name = dataset_path(prefix, c, t);
    const hid_t ds = H5Dcreate2(file, name.c_str(), H5T_NATIVE_FLOAT, fspace, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    CGRPO_CHECK(ds >= 0, "HDF5: cannot create dataset ", name);
    // this rank writes its shard's part of the tensor, each element exactly once over the ranks
    const ShardRange sh = e.shard_of(u);
    const int64_t lo = std::max(sh.offset, off), hi = std::min(sh.offset + sh.count, off + t.numel);
    const int64_t n = std::max<int64_t>(0, hi - lo);
    const ShardRange st = c.params ? e.param_range(u) : e.moment_range(u);
    const float* base = c.params ? e.param_storage(u) : c.moment == 1 ? e.moment1(u) : e.moment2(u);
    const float* src = base ? base + (lo - st.offset) : nullptr;
    // device storage, or bf16 parameters without an fp32 master: write from a host copy
    if ((base == nullptr || e.backend().device() != Device::CPU) && n > 0) {
      stage.resize(size_t(n));
      if (c.params)
        e.download_params(u, lo, n, stage.data());
      else
        e.backend().download(src, stage.data(), size_t(n) * 4);
      src = stage.data();
    }
    select_flat(fspace, shape, lo - off, n);
    hsize_t mcount = hsize_t(std::max<int64_t>(n, 1));
    H5Id mspace(H5Screate_simple(1, &mcount, nullptr), H5Sclose);
    if (n == 0) H5Sselect_none(mspace);
    CGRPO_CHECK(H5Dwrite(ds, H5T_NATIVE_FLOAT, mspace, fspace, dxpl, n ? src : nullptr) >= 0,
                "HDF5: writing ", name, " failed", hint("is the checkpoint directory on a writable filesystem?"));
    names.push_back(name);
    partial.push_back(n ? tensor_checksum(src, lo - off, n) : 0);
    open_sets.push_back(ds);
  });
}

void read_engine(hid_t file, ZeroEngine& e, const char* prefix, std::vector<std::string>& names,
                 std::vector<uint64_t>& partial, std::vector<uint64_t>& stored) {
  H5Id dxpl(H5Pcreate(H5P_DATASET_XFER), H5Pclose);
  H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
  std::vector<float> stage;  // host landing zone of one dataset's range when the engine lives on a device
  for_each_dataset(e, [&](const Category& c, int u, const TensorSpec& t, int64_t off) {
    const std::string name = dataset_path(prefix, c, t);
    if (H5Lexists(file, (std::string("/") + prefix + c.group).c_str(), H5P_DEFAULT) <= 0 ||
        H5Lexists(file, name.c_str(), H5P_DEFAULT) <= 0)
      throw LoadError{"missing dataset " + name + " (the checkpoint is incomplete or from another model)"};
    H5Id ds(H5Dopen2(file, name.c_str(), H5P_DEFAULT), H5Dclose);
    if (!ds.ok()) throw LoadError{"cannot open dataset " + name};
    H5Id fspace(H5Dget_space(ds), H5Sclose);
    const std::vector<int64_t> shape = shape_of(t);
    const int nd = H5Sget_simple_extent_ndims(fspace);
    std::vector<hsize_t> dims(size_t(std::max(nd, 0)));
    H5Sget_simple_extent_dims(fspace, dims.data(), nullptr);
    const std::vector<int64_t> got(dims.begin(), dims.end());
    if (got != shape)
      throw LoadError{"dataset " + name + " has shape " + shape_str(got) + " but the model expects " +
                      shape_str(shape) + " (incompatible config)"};
    // read everything this rank stores of the tensor; checksum only its shard's part (each element once)
    const ShardRange st = c.params ? e.param_range(u) : e.moment_range(u);
    const int64_t lo = std::max(st.offset, off), hi = std::min(st.offset + st.count, off + t.numel);
    const int64_t n = std::max<int64_t>(0, hi - lo);
    float* base = c.params ? e.param_storage(u) : c.moment == 1 ? e.moment1(u) : e.moment2(u);
    const bool staged = base == nullptr || e.backend().device() != Device::CPU;  // as in write_engine
    if (staged) stage.resize(size_t(std::max<int64_t>(n, 1)));
    float* dst = staged ? stage.data() : base + (lo - st.offset);  // holds [lo, hi) of the unit
    select_flat(fspace, shape, lo - off, n);
    hsize_t mcount = hsize_t(std::max<int64_t>(n, 1));
    H5Id mspace(H5Screate_simple(1, &mcount, nullptr), H5Sclose);
    if (n == 0) H5Sselect_none(mspace);
    H5_TRY(H5Dread(ds, H5T_NATIVE_FLOAT, mspace, fspace, dxpl, n ? dst : nullptr), "cannot read dataset ", name,
           " (truncated or damaged file)");
    if (staged && n > 0) {
      if (c.params)
        e.upload_params(u, lo, n, dst);
      else
        e.backend().upload(dst, base + (lo - st.offset), size_t(n) * 4);
    }
    const ShardRange sh = e.shard_of(u);
    const int64_t clo = std::max(sh.offset, off), chi = std::min(sh.offset + sh.count, off + t.numel);
    partial.push_back(chi > clo ? tensor_checksum(dst + (clo - lo), clo - off, chi - clo) : 0);
    stored.push_back(read_attr_u64(ds, "xsum64"));
    names.push_back(name);
  });
}

// Agree on one outcome across ranks: "" if every rank succeeded, else the message of the lowest failing rank.
std::string agree(const std::string& mine) {
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  int me = mine.empty() ? world : rank, first = world;
  MPI_Allreduce(&me, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (first == world) return "";
  int len = rank == first ? int(mine.size()) : 0;
  MPI_Bcast(&len, 1, MPI_INT, first, MPI_COMM_WORLD);
  std::string msg = rank == first ? mine : std::string(size_t(len), '\0');
  MPI_Bcast(msg.data(), len, MPI_CHAR, first, MPI_COMM_WORLD);
  return msg;
}

// The root attributes save_checkpoint writes. strict = false (inspect) tolerates a missing phase and data
// batch/position (then "grpo" and 0); try_load requires everything.
CheckpointMeta read_meta(hid_t f, bool strict) {
  CheckpointMeta m;
  auto i64_or = [&](const char* name) { return strict || H5Aexists(f, name) > 0 ? read_attr_i64(f, name) : 0; };
  m.format_version = read_attr_i64(f, "format_version");
  m.writer = read_attr_str(f, "writer");
  m.step = read_attr_i64(f, "step");
  m.tokens_seen = read_attr_i64(f, "tokens_seen");
  m.lr_step = read_attr_i64(f, "lr_step");
  m.data_epoch = read_attr_i64(f, "data_epoch");
  m.data_index = read_attr_i64(f, "data_index");
  m.data_batch = i64_or("data_batch");
  m.data_position = i64_or("data_position");
  m.phase = strict || H5Aexists(f, "phase") > 0 ? read_attr_str(f, "phase") : "grpo";
  m.seed = read_attr_i64(f, "seed");
  m.world_size = read_attr_i64(f, "world_size");
  m.zero_stage = read_attr_i64(f, "zero_stage");
  m.adam_step = read_attr_i64(f, "adam_step");
  m.config_ini = read_attr_str(f, "config");
  m.ref_model = read_attr_str(f, "ref_model");
  return m;
}

// Loads and verifies `path` into the engines (collective); on success also restores their AdamW step count.
// Returns "" or the agreed error.
std::string try_load(const std::string& path, ZeroEngine& policy, ZeroEngine* ref, CheckpointMeta& meta) {
  std::string err;
  try {
    if (!fs::exists(path)) throw LoadError{"no such file"};
    H5Id file = open_file(path, false);
    if (!file.ok()) throw LoadError{"not a readable HDF5 file (truncated or damaged?)"};
    if (read_attr_i64(file, "complete") != 1) throw LoadError{"not marked complete"};
    meta = read_meta(file, /*strict=*/true);
    if (meta.format_version != kCheckpointFormatVersion)
      throw LoadError{"format version " + std::to_string(meta.format_version) + " (this cgrpo reads " +
                      std::to_string(kCheckpointFormatVersion) + ")"};
    if (ref && meta.ref_model != "datasets") throw LoadError{"has no reference model datasets (ref_model = " + meta.ref_model + ")"};
    std::vector<std::string> names;
    std::vector<uint64_t> partial, stored;
    read_engine(file, policy, "", names, partial, stored);
    if (ref) read_engine(file, *ref, "ref/", names, partial, stored);
    const std::vector<uint64_t> total = sum_over_ranks(partial);
    for (size_t i = 0; i < names.size(); ++i)
      if (total[i] != stored[i]) throw LoadError{"checksum mismatch in dataset " + names[i] + " (damaged data)"};
  } catch (const LoadError& e) {
    err = e.what.empty() ? "unknown error" : e.what;
  }
  // a rank that failed early skipped collectives the others entered: only reach here via matching paths
  err = agree(err);
  // the params datasets went into param_storage (the fp32 master with param dtype bf16; without a master, the owned
  // part of the working copy): rebuild the working copy from it (collective at stages 1-2 in bf16, a no-op in
  // f32). Every rank gets here, also after a failed load, so the working copy always equals bf16(master).
  policy.params_loaded();
  if (ref) ref->params_loaded();
  if (err.empty()) {
    policy.set_steps_taken(meta.adam_step);
    if (ref) ref->set_steps_taken(meta.adam_step);
  }
  return err;
}

std::vector<std::pair<int64_t, std::string>> list_complete(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  // SFT checkpoints are sft_step_N.h5, GRPO ones step_N.h5; the two step counters are unrelated, and any GRPO
  // checkpoint is newer than every SFT one (SFT runs first). Newest first: GRPO by step, then SFT by step.
  static const std::regex re(R"((sft_)?step_(\d+)\.h5)");
  std::vector<std::tuple<bool, int64_t, std::string>> found;
  for (const auto& ent : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string f = ent.path().filename().string();
    if (std::regex_match(f, m, re)) found.emplace_back(!m[1].matched, std::stoll(m[2]), ent.path().string());
  }
  std::sort(found.rbegin(), found.rend());
  for (auto& [grpo, step, path] : found) out.emplace_back(step, std::move(path));
  return out;
}

}  // namespace

std::string save_checkpoint(const std::string& dir, const CheckpointMeta& meta, ZeroEngine& policy, ZeroEngine* ref,
                            int keep_last) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  char name[64];
  std::snprintf(name, sizeof(name), "%sstep_%08lld.h5", meta.phase == "sft" ? "sft_" : "",
                static_cast<long long>(meta.step));
  const std::string final_path = (fs::path(dir) / name).string(), tmp = final_path + ".tmp";
  if (rank == 0) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    CGRPO_CHECK(!ec, "cannot create checkpoint dir '", dir, "': ", ec.message(),
                hint("set checkpoint.dir to a writable directory (a parallel filesystem on clusters)"));
  }
  MPI_Barrier(MPI_COMM_WORLD);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  {
    H5Id file = open_file(tmp, true);
    CGRPO_CHECK(file.ok(), "cannot create checkpoint file '", tmp, "'", hint("check space and permissions"));
    write_attr_i64(file, "format_version", kCheckpointFormatVersion);
    write_attr_str(file, "writer", std::string("cgrpo ") + version_string() + " (" + git_describe() + ")");
    write_attr_i64(file, "step", meta.step);
    write_attr_i64(file, "tokens_seen", meta.tokens_seen);
    write_attr_i64(file, "lr_step", meta.lr_step);
    write_attr_i64(file, "data_epoch", meta.data_epoch);
    write_attr_i64(file, "data_index", meta.data_index);
    write_attr_i64(file, "data_batch", meta.data_batch);
    write_attr_i64(file, "data_position", meta.data_position);
    write_attr_str(file, "phase", meta.phase);
    write_attr_i64(file, "seed", meta.seed);
    write_attr_i64(file, "world_size", policy.comm().world_size());
    write_attr_i64(file, "zero_stage", policy.stage());
    write_attr_i64(file, "adam_step", policy.steps_taken());
    write_attr_str(file, "config", meta.config_ini);
    write_attr_str(file, "ref_model", ref ? "datasets" : meta.ref_model);
    std::vector<std::string> names;
    std::vector<uint64_t> partial;
    std::vector<hid_t> sets;
    write_engine(file, policy, "", names, partial, sets);
    if (ref) {
      H5Id g(H5Gcreate2(file, "/ref", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
      write_engine(file, *ref, "ref/", names, partial, sets);
    }
    const std::vector<uint64_t> total = sum_over_ranks(partial);
    for (size_t i = 0; i < sets.size(); ++i) {
      write_attr_u64(sets[i], "xsum64", total[i]);
      H5Dclose(sets[i]);
    }
    write_attr_i64(file, "complete", 1);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) {
    std::error_code ec;
    fsync_path(tmp);
    fs::rename(tmp, final_path, ec);
    CGRPO_CHECK(!ec, "cannot rename ", tmp, " to ", final_path, ": ", ec.message());
    fsync_path(dir);
    write_text_atomically((fs::path(dir) / "latest").string(), std::string(name) + "\n");
    const auto all = list_complete(dir);
    for (size_t i = size_t(std::max(keep_last, 1)); i < all.size(); ++i) fs::remove(all[i].second, ec);
    CGRPO_LOG(info) << "checkpoint " << final_path << " written";
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return final_path;
}

void mark_best_checkpoint(const std::string& dir, const std::string& path, int64_t step, double eval_reward) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) {
    const std::string best = (fs::path(dir) / "best.h5").string(), tmp = best + ".tmp";
    std::error_code ec;
    fs::remove(tmp, ec);
    fs::create_hard_link(path, tmp, ec);
    if (ec) {  // no hard links here (some object stores, cross-device): a full copy
      ec.clear();
      fs::copy_file(path, tmp, fs::copy_options::overwrite_existing, ec);
      CGRPO_CHECK(!ec, "cannot copy ", path, " to ", tmp, ": ", ec.message(), hint("check space in checkpoint.dir"));
    }
    fsync_path(tmp);
    fs::rename(tmp, best, ec);
    CGRPO_CHECK(!ec, "cannot rename ", tmp, " to ", best, ": ", ec.message());
    const nlohmann::json rec = {{"step", step}, {"eval_reward", eval_reward}, {"file", fs::path(path).filename().string()}};
    write_text_atomically((fs::path(dir) / "best.json").string(), rec.dump() + "\n");
    CGRPO_LOG(info) << "best checkpoint: step " << step << ", held-out reward " << eval_reward << " -> " << best;
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

BestCheckpoint read_best_checkpoint(const std::string& dir) {
  BestCheckpoint b;
  const std::string rec = (fs::path(dir) / "best.json").string();
  std::ifstream in(rec);
  if (!in) return b;
  try {
    const nlohmann::json j = nlohmann::json::parse(in);
    b.step = j.at("step").get<int64_t>();
    b.eval_reward = j.at("eval_reward").get<double>();
    b.file = j.at("file").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    CGRPO_FAIL("best-checkpoint record ", rec, " is damaged: ", e.what(),
               hint("delete it (and best.h5) to start the best-checkpoint tracking afresh"));
  }
  CGRPO_CHECK(b.step >= 0, "best-checkpoint record ", rec, " has step ", b.step, hint("delete it and best.h5"));
  return b;
}

CheckpointMeta load_checkpoint(const std::string& path, ZeroEngine& policy, ZeroEngine* ref) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  CheckpointMeta meta;
  const std::string err = try_load(path, policy, ref, meta);
  CGRPO_CHECK(err.empty(), "checkpoint ", path, " refused: ", err,
              hint("use another checkpoint (checkpoint.resume = auto picks the newest complete one)"));
  return meta;
}

bool resume_will_load(const std::string& dir, const std::string& resume) {
  if (resume == "none" || resume.empty()) return false;
  return resume != "auto" || !list_complete(dir).empty();
}

std::string resolve_resume(const std::string& dir, const std::string& resume, ZeroEngine& policy, ZeroEngine* ref,
                           CheckpointMeta* loaded) {
  if (resume == "none" || resume.empty()) return "";
  if (resume != "auto") {
    const CheckpointMeta m = load_checkpoint(resume, policy, ref);
    if (loaded) *loaded = m;
    return resume;
  }
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const auto all = list_complete(dir);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  for (const auto& [step, path] : all) {
    CheckpointMeta meta;
    const std::string err = try_load(path, policy, ref, meta);
    if (err.empty()) {
      if (loaded) *loaded = meta;
      return path;
    }
    if (rank == 0) CGRPO_LOG(warning) << "resume auto: skipping " << path << ": " << err;
  }
  CGRPO_CHECK(all.empty(), "resume auto: none of the ", all.size(), " checkpoints in ", dir, " is usable",
              hint("inspect them with `cgrpo inspect`, or start fresh with checkpoint.resume = none"));
  return "";
}

namespace {
// Serial (sec2) open; works without MPI_Init.
H5Id open_serial(const std::string& path) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  H5Id f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  CGRPO_CHECK(f.ok(), "cannot open checkpoint '", path, "' (missing, truncated or not HDF5)");
  return f;
}

herr_t collect_names(hid_t, const char* name, const H5L_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->push_back(name);
  return 0;
}
}  // namespace

std::vector<float> read_checkpoint_dataset(const std::string& path, const std::string& name) {
  H5Id f = open_serial(path);
  CGRPO_CHECK(H5Lexists(f, name.c_str(), H5P_DEFAULT) > 0, "checkpoint ", path, " has no dataset ", name);
  H5Id ds(H5Dopen2(f, name.c_str(), H5P_DEFAULT), H5Dclose);
  H5Id space(H5Dget_space(ds), H5Sclose);
  std::vector<float> v(size_t(H5Sget_simple_extent_npoints(space)));
  CGRPO_CHECK(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) >= 0, "checkpoint ", path,
              ": cannot read ", name, " (truncated or damaged)");
  return v;
}

CheckpointInfo inspect_checkpoint(const std::string& path, bool verify) {
  H5Id f = open_serial(path);
  CheckpointInfo info;
  CheckpointMeta& m = info.meta;
  try {
    m = read_meta(f, /*strict=*/false);
  } catch (const LoadError& e) {
    CGRPO_FAIL("checkpoint ", path, ": ", e.what);
  }
  for (const char* group : {"/params", "/exp_avg", "/exp_avg_sq", "/ref/params"}) {
    if (H5Lexists(f, "/ref", H5P_DEFAULT) <= 0 && std::string(group).rfind("/ref", 0) == 0) continue;
    if (H5Lexists(f, group, H5P_DEFAULT) <= 0) continue;
    std::vector<std::string> names;
    H5Id g(H5Gopen2(f, group, H5P_DEFAULT), H5Gclose);
    H5Literate(g, H5_INDEX_NAME, H5_ITER_NATIVE, nullptr, collect_names, &names);
    for (const std::string& n : names) {
      const std::string full = std::string(group) + "/" + n;
      H5Id ds(H5Dopen2(f, full.c_str(), H5P_DEFAULT), H5Dclose);
      H5Id space(H5Dget_space(ds), H5Sclose);
      std::vector<hsize_t> dims(size_t(std::max(0, H5Sget_simple_extent_ndims(space))));
      H5Sget_simple_extent_dims(space, dims.data(), nullptr);
      CheckpointInfo::Dataset d{full, std::vector<int64_t>(dims.begin(), dims.end()), true};
      if (verify) {
        std::vector<float> v(size_t(H5Sget_simple_extent_npoints(space)));
        const bool read = H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) >= 0;
        uint64_t stored = 0;
        try {
          stored = read_attr_u64(ds, "xsum64");
        } catch (const LoadError&) {
          d.checksum_ok = false;
        }
        d.checksum_ok = d.checksum_ok && read && tensor_checksum(v.data(), 0, int64_t(v.size())) == stored;
      }
      info.datasets.push_back(std::move(d));
    }
  }
  return info;
}

}  // namespace cgrpo
