// safetensors read/write: round trips (single file and sharded, F32 and BF16) are bit-identical, hand-made
// BF16/F16 files load to known values, and every kind of bad file is a cgrpo::Error naming file and tensor.
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>
#include <vector>

#include "cgrpo/io/model_weights.h"
#include "cgrpo/io/safetensors.h"
#include "cgrpo/model/dream_model.h"

using namespace cgrpo;
namespace fs = std::filesystem;

namespace {

ModelConfig cfg_layers(int64_t layers, int64_t inter = 20) {
  ModelConfig c = ModelConfig::preset("tiny");
  c.vocab_size = 37;
  c.hidden_size = 12;
  c.intermediate_size = inter;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 3;
  c.num_key_value_heads = 1;
  c.mask_token_id = 36;
  c.pad_token_id = c.bos_token_id = c.eos_token_id = 35;
  return c;
}

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    path = fs::temp_directory_path() / ("cgrpo_st_" + tag + "_" + std::to_string(getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& s) const { return (path / s).string(); }
};

std::vector<float> init(const ModelConfig& c) {
  ParamLayout lay(c);
  std::vector<float> p(lay.total());
  init_params(lay, p.data(), 3, 0.5f);
  return p;
}

std::string bytes_of(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void write_raw(const std::string& path, const std::string& header, const std::vector<uint8_t>& data) {
  std::ofstream f(path, std::ios::binary);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) f.put(char(n >> (8 * i)));
  f << header;
  f.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size()));
}

}  // namespace

TEST_CASE("safetensors: f32 single-file save -> load -> save is bit-identical", "[unit][io]") {
  TempDir d("f32");
  const ModelConfig c = cfg_layers(2);
  const auto p = init(c);
  save_model(d / "a", c, p.data(), DType::F32);
  REQUIRE(fs::exists(d / "a/config.json"));
  REQUIRE(ModelConfig::load(d / "a/config.json").to_json() == c.to_json());
  std::vector<float> q(p.size(), -1.0f);
  load_model_weights(d / "a", ParamLayout(c), q.data());
  REQUIRE(std::memcmp(p.data(), q.data(), p.size() * 4) == 0);
  save_model(d / "b", c, q.data(), DType::F32);
  REQUIRE(bytes_of(d / "a/model.safetensors") == bytes_of(d / "b/model.safetensors"));
  SafetensorsFile st(d / "a/model.safetensors");
  REQUIRE(st.tensors().size() == ParamLayout(c).params().size());
  REQUIRE(st.metadata().at("format") == "pt");
}

TEST_CASE("ModelWeights: any range of the flat layout reads what the whole load puts there", "[unit][io]") {
  // Ranges that start and end inside tensors, cross tensor, unit and shard-file boundaries, and are empty;
  // single file f32 and sharded bf16. The ranges a rank reads at ZeRO-3 are exactly such slices.
  TempDir d("range");
  const ModelConfig c = cfg_layers(3);
  const ParamLayout lay(c);
  const auto p = init(c);
  save_model(d / "f32", c, p.data(), DType::F32);
  save_model(d / "bf16", c, p.data(), DType::BF16, 1024);
  for (const char* dir : {"f32", "bf16"}) {
    std::vector<float> whole(p.size());
    load_model_weights(d / dir, lay, whole.data());
    const ModelWeights w(d / dir, lay);
    const int64_t T = lay.total();
    for (const auto& [first, count] : std::vector<std::pair<int64_t, int64_t>>{
             {0, T}, {0, 1}, {T - 1, 1}, {5, 0}, {7, 301}, {lay.units()[1].offset - 3, 17}, {T / 3, T / 3}}) {
      std::vector<float> got(size_t(count) + 1, -7.0f);  // one guard element past the range
      w.read(first, count, got.data());
      REQUIRE(std::memcmp(got.data(), whole.data() + first, size_t(count) * 4) == 0);
      REQUIRE(got[size_t(count)] == -7.0f);
    }
    std::vector<float> one(2);
    REQUIRE_THROWS_WITH(w.read(T - 1, 2, one.data()), Catch::Contains("outside the model's"));
  }
  // a tensor's own sub-range, and one past its end
  SafetensorsFile st(d / "f32/model.safetensors");
  const SafetensorsTensor& t = *st.find("model.embed_tokens.weight");
  std::vector<float> part(5);
  st.read_f32(t, part.data(), 100, 5);
  REQUIRE(std::memcmp(part.data(), p.data() + lay.embed() + 100, 20) == 0);
  REQUIRE_THROWS_WITH(st.read_f32(t, part.data(), t.numel - 2, 5), Catch::Contains("outside tensor model.embed_tokens.weight"));
}

TEST_CASE("safetensors: save_model from a ParamFill writes the bytes the flat buffer writes", "[unit][io]") {
  // cgrpo init draws and convert reads a checkpoint chunk by chunk through this path; the files must not differ
  TempDir d("fill");
  const ModelConfig c = cfg_layers(3);
  const ParamLayout lay(c);
  const auto p = init(c);  // init_params(seed 3, std 0.5)
  int64_t asked = 0, largest = 0;
  const ParamFill fill = [&](int64_t first, int64_t count, float* out) {
    asked += count;
    largest = std::max(largest, count);
    init_params_range(lay, first, count, out, 3, 0.5f);
  };
  for (DType dt : {DType::F32, DType::BF16}) {
    for (uint64_t shard : {uint64_t(0), uint64_t(1024)}) {
      asked = 0;
      fs::remove_all(d.path / "flat");
      fs::remove_all(d.path / "fill");
      save_model(d / "flat", c, p.data(), dt, shard);
      save_model(d / "fill", c, fill, dt, shard);
      REQUIRE(asked == lay.total());  // every value once
      for (const auto& e : fs::directory_iterator(d.path / "flat"))
        REQUIRE(bytes_of(e.path().string()) == bytes_of((d.path / "fill" / e.path().filename()).string()));
    }
  }
  int64_t max_tensor = 0;
  for (const ParamInfo& q : lay.params()) max_tensor = std::max(max_tensor, q.numel);
  REQUIRE(largest == max_tensor);  // chunks stay inside one tensor (16 MiB chunks; these tensors are smaller)
}

TEST_CASE("safetensors: bf16 sharded save with index.json, load -> save -> load is bit-identical", "[unit][io]") {
  TempDir d("bf16");
  const ModelConfig c = cfg_layers(3);
  const auto p = init(c);
  save_model(d / "a", c, p.data(), DType::BF16, 1024);
  REQUIRE(fs::exists(d / "a/model.safetensors.index.json"));
  REQUIRE(!fs::exists(d / "a/model.safetensors"));
  int shards = 0;
  for (const auto& e : fs::directory_iterator(d.path / "a")) shards += e.path().extension() == ".safetensors";
  REQUIRE(shards >= 4);  // 1024-byte shards; the embedding alone is 888 B, gate+up of a layer 960 B
  char first[64];
  std::snprintf(first, sizeof first, "a/model-00001-of-%05d.safetensors", shards);
  REQUIRE(fs::exists(d / first));
  std::vector<float> q(p.size()), r(p.size());
  load_model_weights(d / "a", ParamLayout(c), q.data());
  for (size_t i = 0; i < p.size(); ++i) REQUIRE(q[i] == bf16_to_f32(f32_to_bf16(p[i])));
  save_model(d / "b", c, q.data(), DType::BF16, 1024);
  load_model_weights(d / "b", ParamLayout(c), r.data());
  REQUIRE(std::memcmp(q.data(), r.data(), q.size() * 4) == 0);
  REQUIRE(bytes_of(d / "a/model.safetensors.index.json") == bytes_of(d / "b/model.safetensors.index.json"));
  for (const auto& e : fs::directory_iterator(d.path / "a"))
    REQUIRE(bytes_of(e.path().string()) == bytes_of((d.path / "b" / e.path().filename()).string()));
}

TEST_CASE("safetensors: hand-made BF16 and F16 tensors load to the expected values", "[unit][io]") {
  TempDir d("known");
  // BF16: 1.0 = 0x3F80, -2.0 = 0xC000, 0.15625 = 0x3E20, 3.140625 = 0x4049; little-endian bytes.
  // F16:  1.0 = 0x3C00, -2.0 = 0xC000, 0.000061035156 = 0x0400 (smallest normal), 65504 = 0x7BFF.
  const std::string header =
      R"({"a":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[4],"data_offsets":[8,16]}})";
  write_raw(d / "k.safetensors", header,
            {0x80, 0x3F, 0x00, 0xC0, 0x20, 0x3E, 0x49, 0x40, 0x00, 0x3C, 0x00, 0xC0, 0x00, 0x04, 0xFF, 0x7B});
  SafetensorsFile st(d / "k.safetensors");
  float a[4], b[4];
  st.read_f32(*st.find("a"), a);
  st.read_f32(*st.find("b"), b);
  CHECK(a[0] == 1.0f);
  CHECK(a[1] == -2.0f);
  CHECK(a[2] == 0.15625f);
  CHECK(a[3] == 3.140625f);
  CHECK(b[0] == 1.0f);
  CHECK(b[1] == -2.0f);
  CHECK(b[2] == 6.103515625e-05f);
  CHECK(b[3] == 65504.0f);
  REQUIRE(st.find("a")->shape == std::vector<int64_t>{2, 2});
}

TEST_CASE("safetensors: bad files give clear errors naming the file and the tensor", "[unit][io]") {
  TempDir d("bad");
  const ModelConfig c = cfg_layers(2);
  const auto p = init(c);
  std::vector<float> q(p.size());
  save_model(d / "m", c, p.data(), DType::F32);
  const std::string file = d / "m/model.safetensors";
  const std::string good = bytes_of(file);

  SECTION("truncated file") {
    fs::resize_file(file, good.size() - 10);
    REQUIRE_THROWS_WITH(load_model_weights(d / "m", ParamLayout(c), q.data()),
                        Catch::Contains(file) && Catch::Contains("tensor lm_head.weight") &&
                            Catch::Contains("truncated or corrupt"));
    fs::resize_file(file, 5);
    REQUIRE_THROWS_WITH(SafetensorsFile(file), Catch::Contains("too short"));
  }
  SECTION("header that lies about offsets or its length") {
    write_raw(d / "lie.safetensors", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,64]}})",
              std::vector<uint8_t>(16));
    REQUIRE_THROWS_WITH(SafetensorsFile(d / "lie.safetensors"),
                        Catch::Contains("lie.safetensors: tensor w: data_offsets [0, 64] lie outside the 16-byte"));
    write_raw(d / "size.safetensors", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})",
              std::vector<uint8_t>(16));
    REQUIRE_THROWS_WITH(SafetensorsFile(d / "size.safetensors"),
                        Catch::Contains("tensor w: data_offsets [0, 16] hold 16 bytes but F32[3] needs 12"));
    write_raw(d / "overlap.safetensors",
              R"({"u":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
              std::vector<uint8_t>(12));
    REQUIRE_THROWS_WITH(SafetensorsFile(d / "overlap.safetensors"), Catch::Contains("tensors u and v overlap"));
    std::string bad = good;
    bad[0] = char(0xFF), bad[1] = char(0xFF), bad[2] = char(0xFF);  // header length way beyond the file
    std::ofstream(file, std::ios::binary) << bad;
    REQUIRE_THROWS_WITH(SafetensorsFile(file), Catch::Contains("exceeds the file size"));
  }
  SECTION("unknown dtype") {
    write_raw(d / "i64.safetensors", R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})",
              std::vector<uint8_t>(16));
    REQUIRE_THROWS_WITH(SafetensorsFile(d / "i64.safetensors"),
                        Catch::Contains("i64.safetensors: tensor ids has dtype I64"));
  }
  SECTION("missing tensor: config has more layers than the weights") {
    REQUIRE_THROWS_WITH(load_model_weights(d / "m", ParamLayout(cfg_layers(3)), q.data()),
                        Catch::Contains("tensor model.layers.2.input_layernorm.weight [12] is missing"));
  }
  SECTION("config/weights mismatch: weights have a layer the config lacks") {
    std::vector<float> q1(ParamLayout(cfg_layers(1)).total());
    REQUIRE_THROWS_WITH(load_model_weights(d / "m", ParamLayout(cfg_layers(1)), q1.data()),
                        Catch::Contains(file) && Catch::Contains("model.layers.1.") &&
                            Catch::Contains("is not part of the model described by config.json"));
  }
  SECTION("wrong shape") {
    const ModelConfig c24 = cfg_layers(2, 24);
    std::vector<float> q24(ParamLayout(c24).total());
    REQUIRE_THROWS_WITH(load_model_weights(d / "m", ParamLayout(c24), q24.data()),
                        Catch::Contains("tensor model.layers.0.mlp.gate_proj.weight has shape [20,12] but config.json "
                                        "implies [24,12]"));
  }
  SECTION("no weights at all") {
    REQUIRE_THROWS_WITH(load_model_weights(d / "nothing", ParamLayout(c), q.data()),
                        Catch::Contains("neither model.safetensors nor model.safetensors.index.json"));
  }
}
