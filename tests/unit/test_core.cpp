#include <catch2/catch.hpp>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cgrpo/core/buffer.h"
#include "cgrpo/core/data_paths.h"
#include "cgrpo/core/error.h"
#include "cgrpo/core/logging.h"
#include "cgrpo/core/tensor_view.h"
#include "cgrpo/core/timer.h"

using namespace cgrpo;

TEST_CASE("buffer: move-only ownership and per-category byte accounting", "[unit][core]") {
  const auto before = memory_stats();
  const int cpu = static_cast<int>(Device::CPU), moments = static_cast<int>(MemCategory::Moments);
  {
    Buffer a(1000, Device::CPU, MemCategory::Moments);
    REQUIRE(a.data() != nullptr);
    CHECK(reinterpret_cast<uintptr_t>(a.data()) % 64 == 0);
    CHECK(memory_stats().live_bytes[cpu][moments] - before.live_bytes[cpu][moments] == 1000);
    Buffer b = std::move(a);
    CHECK(a.empty());
    CHECK(b.bytes() == 1000);
    CHECK(memory_stats().live_bytes[cpu][moments] - before.live_bytes[cpu][moments] == 1000);
    Buffer c(24, Device::CPU, MemCategory::Moments);
    c = std::move(b);  // frees c's old 24 bytes
    CHECK(memory_stats().live_bytes[cpu][moments] - before.live_bytes[cpu][moments] == 1000);
    CHECK(memory_stats().peak_bytes[cpu][moments] >= before.live_bytes[cpu][moments] + 1024);
  }
  CHECK(memory_stats().live_bytes[cpu][moments] == before.live_bytes[cpu][moments]);
  CHECK_THROWS_WITH(Buffer(16, Device::CUDA, MemCategory::Params), Catch::Contains("no allocator installed"));
}

TEST_CASE("tensor view: shapes, strides, contiguity and flat slices", "[unit][core]") {
  float x[24];
  for (int i = 0; i < 24; ++i) x[i] = float(i);
  TensorView t = TensorView::of(x, {2, 3, 4});
  CHECK(t.numel() == 24);
  CHECK(t.bytes() == 96);
  CHECK(t.strides[0] == 12);
  CHECK(t.dim(-1) == 4);
  CHECK(t.contiguous());
  CHECK(t.str() == "f32[2,3,4]");
  TensorView s = t.slice_flat(5, 7);
  CHECK(s.as<float>()[0] == 5.0f);
  CHECK(s.numel() == 7);
  TensorView col = t;
  col.strides = {12, 1, 3};  // a transposed view
  CHECK_FALSE(col.contiguous());
  CHECK_THROWS_WITH(t.slice_flat(20, 5), Catch::Contains("out of range"));
  TensorView h(x, DType::BF16, {4});
  CHECK_THROWS_WITH(h.as<float>(), Catch::Contains("wrong element type"));
}

TEST_CASE("logging: per-rank file at the configured severity", "[unit][core]") {
  const auto dir = std::filesystem::temp_directory_path() / "cgrpo_test_logging";
  std::filesystem::remove_all(dir);
  init_logging(dir.string(), 3, "info");
  CGRPO_LOG(debug) << "hidden-debug-line";
  CGRPO_LOG(info) << "visible-info-line";
  CGRPO_LOG(warning) << "visible-warning-line";
  flush_logs();
  std::ifstream in(dir / "logs" / "rank_3.log");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  CHECK(text.find("visible-info-line") != std::string::npos);
  CHECK(text.find("[warning] visible-warning-line") != std::string::npos);
  CHECK(text.find("hidden-debug-line") == std::string::npos);
  init_logging("", 1, "error");  // detach the file sink again
  CHECK_THROWS_WITH(parse_severity("loud"), Catch::Contains("unknown log level 'loud'"));
}

TEST_CASE("timers accumulate per phase", "[unit][core]") {
  PhaseTimes p;
  {
    ScopedPhase s(p, "rollout");
  }
  p.add("reward", 2.5);
  p.add("reward", 1.5);
  CHECK(p.get("reward") == 4.0);
  CHECK(p.get("rollout") >= 0.0);
  CHECK(p.get("missing") == 0.0);
}

TEST_CASE("data paths: CGRPO_DATA_DIR first, then the installed tree and the checkout, a miss names every root",
          "[unit][core]") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("cgrpo_data_" + std::to_string(::getpid()));
  fs::create_directories(dir / "tokenizer");
  std::ofstream(dir / "tokenizer" / "diffucoder_tokenizer.json") << "{}";
  ::setenv("CGRPO_DATA_DIR", dir.c_str(), 1);
  // the site copy shadows the checkout's tokenizer (which exists in ../shared/data or data/)
  CHECK(find_data_file("tokenizer/diffucoder_tokenizer.json", "tokenizer") ==
        fs::weakly_canonical(dir).string() + "/tokenizer/diffucoder_tokenizer.json");
  const std::vector<std::string> roots = data_roots();
  REQUIRE(!roots.empty());
  CHECK(roots[0] == fs::weakly_canonical(dir).string());
  // a file only the checkout has is still found behind it
  CHECK_THAT(find_data_file("datasets/HumanEval.jsonl.gz", "dataset"), Catch::EndsWith("/datasets/HumanEval.jsonl.gz"));
  try {
    find_data_file("datasets/nope.jsonl.gz", "dataset nope");
    FAIL("a missing data file did not fail");
  } catch (const Error& e) {
    const std::string msg = e.what();
    CHECK_THAT(msg, Catch::Contains("no copy of the dataset nope (datasets/nope.jsonl.gz)"));
    CHECK_THAT(msg, Catch::Contains(fs::weakly_canonical(dir).string() + "/datasets/nope.jsonl.gz"));
    CHECK_THAT(msg, Catch::Contains("/share/cgrpo/data/datasets/nope.jsonl.gz"));  // the installed tree's root
    CHECK_THAT(msg, Catch::Contains("hint: set CGRPO_DATA_DIR"));
  }
  ::unsetenv("CGRPO_DATA_DIR");
  const std::vector<std::string> after = data_roots();
  CHECK((after.empty() || after[0] != fs::weakly_canonical(dir).string()));
  fs::remove_all(dir);
}
