#include "cgrpo/cli/gen_common.h"

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "cgrpo/core/error.h"
#include "cgrpo/io/model_weights.h"

namespace cgrpo::cli {

std::string model_dir_of(const std::string& flag, const Config& cfg) {
  const std::string dir = flag.empty() ? cfg.model.path : flag;
  CGRPO_CHECK(!dir.empty(), "no model given", hint("pass --model DIR (a directory written by `cgrpo init` or an HF "
                                                   "checkpoint) or set model.path"));
  CGRPO_CHECK(std::filesystem::exists(std::filesystem::path(dir) / "config.json"), "model directory '", dir,
              "' has no config.json", hint("pass a directory written by `cgrpo init --out DIR`"));
  return dir;
}

Generator::Generator(const std::string& model_dir, const Config& cfg, int local_rank)
    : mcfg_(ModelConfig::load((std::filesystem::path(model_dir) / "config.json").string())),
      be_(make_backend(cfg.parallel.backend, local_rank, int(cfg.parallel.threads))),
      system_prompt_(cfg.data.system_prompt),
      batch_size_(cfg.rollout.batch_size) {
  CGRPO_CHECK(batch_size_ >= 1, "rollout.batch_size = ", batch_size_, " must be >= 1");
  be_->allow_tf32(cfg.parallel.tf32);
  model_ = std::make_unique<DreamModel>(mcfg_, *be_);
  const DType pd = parse_dtype(cfg.parallel.param_dtype), cd = parse_dtype(cfg.parallel.compute_dtype);
  const ModelWeights weights(model_dir, model_->layout());
  params_ = upload_params(*be_, model_->layout().total(), pd, weights.fill());
  source_ = std::make_unique<FlatParams>(model_->layout(), params_.data(), pd);
  model_->set_param_dtype(pd);
  model_->set_compute_dtype(cd);
  model_->bind(source_.get(), false);
  denoiser_ = std::make_unique<ModelDenoiser>(*model_);
  const int32_t mask = int32_t(cfg.model.mask_token_id >= 0 ? cfg.model.mask_token_id : mcfg_.mask_token_id);
  codec_ = make_codec(mcfg_.vocab_size, mask, int32_t(mcfg_.eos_token_id), cfg.model.tokenizer, model_dir);
  sampler_ = std::make_unique<Sampler>(
      SamplerConfig::from_rollout(cfg.rollout, codec_->mask_id, int32_t(mcfg_.pad_token_id), uint64_t(cfg.run.seed)));
}

std::vector<int32_t> Generator::prompt_ids(const std::string& text, bool chat, const std::string& where) const {
  std::vector<int32_t> ids = chat ? codec_->prompt_ids(text, system_prompt_) : codec_->encode(text);
  CGRPO_CHECK(!ids.empty(), where, ": the prompt is empty", hint("give a non-empty prompt, or use --chat"));
  const int64_t len = int64_t(ids.size()) + sampler_->config().max_new_tokens;
  CGRPO_CHECK(len <= mcfg_.max_position_embeddings, where, ": prompt (", ids.size(), " tokens) + max_new_tokens (",
              sampler_->config().max_new_tokens, ") = ", len, " exceeds the model's max_position_embeddings ",
              mcfg_.max_position_embeddings, hint("shorten the prompt or lower --rollout.max_new_tokens"));
  return ids;
}

std::vector<std::vector<int32_t>> Generator::generate(const std::vector<std::vector<int32_t>>& prompts,
                                                      const std::vector<uint32_t>& ids, const StepCallback& on_step) {
  CGRPO_CHECK(prompts.size() == ids.size(), "generate: ", prompts.size(), " prompts but ", ids.size(), " sample ids");
  std::vector<std::vector<int32_t>> out;
  out.reserve(prompts.size());
  for (size_t b0 = 0; b0 < prompts.size(); b0 += size_t(batch_size_)) {
    const size_t b1 = std::min(prompts.size(), b0 + size_t(batch_size_));
    const std::vector<std::vector<int32_t>> batch(prompts.begin() + b0, prompts.begin() + b1);
    const std::vector<uint32_t> batch_ids(ids.begin() + b0, ids.begin() + b1);
    const Canvas c = sampler_->generate(*denoiser_, batch, batch_ids, nullptr, on_step);
    for (int64_t b = 0; b < c.batch; ++b) out.push_back(c.completion_tokens(b));
  }
  return out;
}

std::vector<int32_t> Generator::until_end(const std::vector<int32_t>& completion) const {
  return {completion.begin(), std::find(completion.begin(), completion.end(), codec_->end_id)};
}

std::vector<int64_t> rank_items(int64_t n, int rank, int world) {
  std::vector<int64_t> v;
  for (int64_t i = rank; i < n; i += world) v.push_back(i);
  return v;
}

std::vector<std::string> interleave_rank_lines(const std::vector<std::vector<std::string>>& per_rank, int64_t n) {
  const int64_t world = int64_t(per_rank.size());
  std::vector<std::string> all;
  all.reserve(size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    const auto& lines = per_rank[size_t(i % world)];
    CGRPO_CHECK(size_t(i / world) < lines.size(), "rank ", i % world, " returned ", lines.size(),
                " lines, fewer than its share of ", n, " items");
    all.push_back(lines[size_t(i / world)]);
  }
  for (int64_t r = 0; r < world; ++r)
    CGRPO_CHECK(int64_t(per_rank[size_t(r)].size()) == int64_t(rank_items(n, int(r), int(world)).size()), "rank ", r,
                " returned ", per_rank[size_t(r)].size(), " lines for ", rank_items(n, int(r), int(world)).size(),
                " items");
  return all;
}

std::vector<std::string> gather_lines(const std::vector<std::string>& mine, int64_t n, int rank, int world) {
  if (world == 1) return interleave_rank_lines({mine}, n);
  std::string blob;
  for (const std::string& l : mine) {
    CGRPO_CHECK(l.find('\n') == std::string::npos, "gather_lines: a line holds a newline");
    blob.append(l).push_back('\n');
  }
  const long long mine_bytes = (long long)blob.size();
  std::vector<long long> bytes(static_cast<size_t>(world));
  MPI_Gather(&mine_bytes, 1, MPI_LONG_LONG, bytes.data(), 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
  std::vector<int> counts(static_cast<size_t>(world)), displs(static_cast<size_t>(world));
  long long total = 0;
  for (int r = 0; r < world; ++r) {
    CGRPO_CHECK(total + bytes[size_t(r)] < (1ll << 31), "gather_lines: more than 2 GiB of output");
    counts[size_t(r)] = int(bytes[size_t(r)]);
    displs[size_t(r)] = int(total);
    total += bytes[size_t(r)];
  }
  std::string all(size_t(rank == 0 ? total : 0), '\0');
  MPI_Gatherv(blob.data(), int(mine_bytes), MPI_CHAR, all.data(), counts.data(), displs.data(), MPI_CHAR, 0,
              MPI_COMM_WORLD);
  if (rank != 0) return {};
  std::vector<std::vector<std::string>> per_rank(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) {
    size_t p = size_t(displs[size_t(r)]);
    const size_t end = p + size_t(counts[size_t(r)]);
    while (p < end) {
      const size_t nl = all.find('\n', p);
      per_rank[size_t(r)].push_back(all.substr(p, nl - p));
      p = nl + 1;
    }
  }
  return interleave_rank_lines(per_rank, n);
}

Dataset load_dataset(const Config& cfg, const std::string& name, int64_t limit) {
  DataSection d = cfg.data;
  if (name != d.dataset) d.path.clear();
  d.dataset = name;
  d.max_samples = limit;
  return Dataset::from_config(d, uint64_t(cfg.run.seed));
}

double pass_at_k(int64_t n, int64_t c, int64_t k) {
  CGRPO_CHECK(0 <= c && c <= n && 1 <= k && k <= n, "pass_at_k: need 0 <= c <= n and 1 <= k <= n (n ", n, ", c ", c,
              ", k ", k, ")");
  if (n - c < k) return 1.0;
  double fail = 1.0;  // C(n-c, k) / C(n, k) = prod_{i = n-c+1}^{n} (1 - k / i)
  for (int64_t i = n - c + 1; i <= n; ++i) fail *= 1.0 - double(k) / double(i);
  return 1.0 - fail;
}

}  // namespace cgrpo::cli
