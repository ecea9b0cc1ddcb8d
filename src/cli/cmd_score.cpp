// cgrpo score: log-probabilities of labelled tokens under a model (spec §1.5 shift: raw logits at position
// i predict token i+1, so label j is scored from position j-1; label 0 and labels of -100 are not scored).
#include "cgrpo/cli/options.h"
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <memory>
#include <numeric>
#include <vector>

#include "cgrpo/backend/backend.h"
#include "cgrpo/cli/commands.h"
#include "cgrpo/core/buffer.h"
#include "cgrpo/core/error.h"
#include "cgrpo/io/model_weights.h"
#include "cgrpo/model/dream_model.h"
#include "cgrpo/model/flat_params.h"


namespace cgrpo::cli {

namespace {
std::vector<int32_t> int_array(const nlohmann::json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  CGRPO_CHECK(it != j.end() && it->is_array(), where, ": missing array \"", key, "\"",
              hint("each line is {\"input_ids\": [...], \"labels\": [...]}"));
  std::vector<int32_t> v;
  for (const auto& x : *it) {
    CGRPO_CHECK(x.is_number_integer(), where, ": \"", key, "\" holds a non-integer ", x.dump());
    v.push_back(x.get<int32_t>());
  }
  return v;
}
}  // namespace

int cmd_score(int argc, char** argv) {
  std::string model_dir, input, output, backend_kind;
  int64_t dump_k = 0, chunk = 4096;
  po::options_description desc("options");
  desc.add_options()                                                                                         //
      ("model", po::value(&model_dir), "model directory (config.json + safetensors)")                      //
      ("input", po::value(&input), "JSONL, one {\"input_ids\": [...], \"labels\": [...]} per line")         //
      ("output", po::value(&output), "JSONL, one {\"logprobs\", \"sum_logprob\", \"num_scored\"} per line")  //
      ("dump-logits", po::value(&dump_k)->default_value(0), "also write the top K raw logits of each scored position")
      ("vocab-chunk", po::value(&chunk)->default_value(4096), "vocabulary columns per log-softmax chunk")  //
      ("backend", po::value(&backend_kind)->default_value("cpu"), "cpu, or cuda (this node's first GPU)");
  po::variables_map vm;
  if (!parse_args(argc, argv,
                  "cgrpo score --model DIR --input in.jsonl --output out.jsonl\n\n"
                  "Score labelled sequences: logprobs[j] = log p(labels[j] | input_ids) from the raw logits at "
                  "position j-1 (Dream's shift).\nlabels = -100 and position 0 give null.",
                  desc, vm))
    return 0;
  CGRPO_CHECK(!model_dir.empty() && !input.empty() && !output.empty(),
              "cgrpo score: --model, --input and --output are required");
  CGRPO_CHECK(dump_k >= 0, "cgrpo score: --dump-logits must be >= 0");
  const ModelConfig cfg = ModelConfig::load((std::filesystem::path(model_dir) / "config.json").string());
  const std::unique_ptr<Backend> be = make_backend(backend_kind);
  DreamModel model(cfg, *be);
  const ModelWeights weights(model_dir, model.layout());
  Buffer params = upload_params(*be, model.layout().total(), DType::F32, weights.fill());
  model.bind(params.as<float>(), nullptr);
  model.set_vocab_chunk(chunk);
  const int64_t V = cfg.vocab_size, K = std::min(dump_k, V);

  std::ifstream in(input);
  CGRPO_CHECK(in.good(), "cannot open ", input);
  std::ofstream out(output);
  CGRPO_CHECK(out.good(), "cannot write ", output);
  std::string line;
  int64_t lineno = 0, n_lines = 0, n_tokens = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = input + ":" + std::to_string(lineno);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      CGRPO_FAIL(where, ": not valid JSON: ", e.what());
    }
    const auto ids = int_array(j, "input_ids", where), labels = int_array(j, "labels", where);
    const int64_t L = int64_t(ids.size());
    CGRPO_CHECK(L > 0 && labels.size() == ids.size(), where, ": input_ids (", L, ") and labels (", labels.size(),
                ") must be non-empty and of equal length");
    CGRPO_CHECK(L <= cfg.max_position_embeddings, where, ": length ", L, " exceeds max_position_embeddings ",
                cfg.max_position_embeddings);
    std::vector<int32_t> rows, targets;
    for (int64_t p = 0; p < L; ++p) {
      CGRPO_CHECK(ids[p] >= 0 && ids[p] < V, where, ": input id ", ids[p], " at position ", p,
                  " is outside the vocabulary [0, ", V, ")");
      CGRPO_CHECK(labels[p] == -100 || (labels[p] >= 0 && labels[p] < V), where, ": label ", labels[p],
                  " at position ", p, " is neither -100 nor a token id in [0, ", V, ")");
      if (p > 0 && labels[p] != -100) rows.push_back(int32_t(p - 1)), targets.push_back(labels[p]);
    }
    const int64_t R = int64_t(rows.size());
    nlohmann::json o;
    o["logprobs"] = nlohmann::json::array();
    double sum = 0;
    std::vector<float> lp(R);
    if (R > 0) {
      model.forward({1, L, ids.data()}, false);
      model.logprobs(R, rows.data(), targets.data(), lp.data());
    }
    for (int64_t p = 0, r = 0; p < L; ++p) {
      if (r < R && rows[r] == p - 1) {
        o["logprobs"].push_back(lp[r]);
        sum += lp[r++];
      } else {
        o["logprobs"].push_back(nullptr);
      }
    }
    o["sum_logprob"] = sum;
    o["num_scored"] = R;
    if (K > 0 && R > 0) {
      std::vector<float> logits(size_t(R * V));
      model.logits(R, rows.data(), logits.data());
      nlohmann::json top = nlohmann::json::array();
      std::vector<int32_t> idx(V);
      for (int64_t r = 0; r < R; ++r) {
        const float* z = logits.data() + r * V;
        std::iota(idx.begin(), idx.end(), 0);
        std::partial_sort(idx.begin(), idx.begin() + K, idx.end(), [&](int32_t a, int32_t b) {
          return z[a] > z[b] || (z[a] == z[b] && a < b);
        });
        nlohmann::json t = nlohmann::json::array();
        for (int64_t k = 0; k < K; ++k) t.push_back({idx[k], z[idx[k]]});
        top.push_back({{"position", rows[r] + 1}, {"top", t}});
      }
      o["top_logits"] = top;
    }
    out << o.dump() << "\n";
    ++n_lines;
    n_tokens += R;
  }
  out.close();
  CGRPO_CHECK(!out.fail(), "write to ", output, " failed");
  std::printf("scored %lld tokens in %lld sequences -> %s\n", (long long)n_tokens, (long long)n_lines, output.c_str());
  return 0;
}

}  // namespace cgrpo::cli
