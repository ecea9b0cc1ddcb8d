// Toy tasks: distributions and scorers are documented in include/cgrpo/data/toy_task.h.
#include "cgrpo/data/toy_task.h"

#include <algorithm>

#include "cgrpo/core/error.h"
#include "cgrpo/core/philox.h"

namespace cgrpo {
namespace {

std::string_view trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

// Fraction of positions where a and b agree, aligned at the left (or right) end, over the longer length.
float position_match(std::string_view got, std::string_view want, bool right_aligned) {
  const size_t n = std::max(got.size(), want.size());
  if (n == 0) return 1.0f;
  const size_t m = std::min(got.size(), want.size());
  size_t hits = 0;
  for (size_t i = 0; i < m; ++i)
    hits += right_aligned ? got[got.size() - 1 - i] == want[want.size() - 1 - i] : got[i] == want[i];
  return static_cast<float>(hits) / static_cast<float>(n);
}

class ToyBase : public ToyTask {
 public:
  ToyBase(const char* name, uint32_t id) : name_(name), id_(id) {}
  std::string name() const override { return name_; }

  Prompt generate(uint64_t seed, int64_t index) const override {
    CGRPO_CHECK(index >= 0 && index <= int64_t{UINT32_MAX}, name_, ": index ", index, " out of range",
                hint("toy task indices are 0 .. 2^32-1"));
    const RngStream rng(seed, RngPurpose::Toy, id_, static_cast<uint32_t>(index));
    Prompt p;
    p.id = name_ + "/" + std::to_string(index);
    p.kind = name_;
    make(rng, p.text, p.meta["answer"]);
    return p;
  }

  float score(const Prompt& p, std::string_view completion) const override {
    CGRPO_CHECK(p.kind == name_, "prompt ", p.id, " of kind ", p.kind, " scored by ", name_,
                hint("pick the scorer with make_toy_task(prompt.kind)"));
    return score_answer(trim(completion), p.meta_at("answer"));
  }

 protected:
  // uniform integer in [0, n) from word i of the stream
  static uint32_t below(const RngStream& rng, uint64_t i, uint32_t n) {
    return static_cast<uint32_t>((uint64_t{rng.u32(i)} * n) >> 32);
  }
  virtual void make(const RngStream& rng, std::string& text, std::string& answer) const = 0;
  virtual float score_answer(std::string_view got, const std::string& want) const = 0;

 private:
  std::string name_;
  uint32_t id_;
};

class ToyArith final : public ToyBase {
 public:
  ToyArith() : ToyBase("toy:arith", 1) {}

 private:
  void make(const RngStream& rng, std::string& text, std::string& answer) const override {
    const bool minus = below(rng, 0, 2) == 1;
    uint32_t a = below(rng, 1, 100), b = below(rng, 2, 100);
    if (minus && a < b) std::swap(a, b);
    text = "Compute " + std::to_string(a) + (minus ? "-" : "+") + std::to_string(b) +
           ". Answer with the number only.";
    answer = std::to_string(minus ? a - b : a + b);
  }
  float score_answer(std::string_view got, const std::string& want) const override {
    // exact integer (leading zeros allowed) scores 1
    const size_t nz = got.find_first_not_of('0');
    const bool digits = !got.empty() && got.find_first_not_of("0123456789") == std::string_view::npos;
    if (digits && (nz == std::string_view::npos ? std::string_view("0") : got.substr(nz)) == want) return 1.0f;
    return position_match(got, want, /*right_aligned=*/true);
  }
};

class ToyReverse final : public ToyBase {
 public:
  ToyReverse() : ToyBase("toy:reverse", 2) {}

 private:
  void make(const RngStream& rng, std::string& text, std::string& answer) const override {
    const uint32_t len = 3 + below(rng, 0, 2);
    std::string s;
    for (uint32_t i = 0; i < len; ++i) s += static_cast<char>('a' + below(rng, 1 + i, 26));
    text = "Reverse the string " + s + ". Answer with the string only.";
    answer.assign(s.rbegin(), s.rend());
  }
  float score_answer(std::string_view got, const std::string& want) const override {
    return position_match(got, want, false);
  }
};

class ToySort final : public ToyBase {
 public:
  ToySort() : ToyBase("toy:sort", 3) {}

 private:
  void make(const RngStream& rng, std::string& text, std::string& answer) const override {
    const uint32_t len = 3 + below(rng, 0, 2);
    std::string d, spaced;
    for (uint32_t i = 0; i < len; ++i) {
      d += static_cast<char>('0' + below(rng, 1 + i, 10));
      if (i) spaced += ' ';
      spaced += d.back();
    }
    text = "Sort the digits " + spaced + " in ascending order. Answer with the digits only.";
    std::sort(d.begin(), d.end());
    answer = d;
  }
  float score_answer(std::string_view got, const std::string& want) const override {
    return position_match(got, want, false);
  }
};

}  // namespace

std::vector<std::string> toy_task_names() { return {"toy:arith", "toy:reverse", "toy:sort"}; }

std::unique_ptr<ToyTask> make_toy_task(std::string_view name) {
  const std::string_view n = name.substr(0, 4) == "toy:" ? name.substr(4) : name;
  if (n == "arith") return std::make_unique<ToyArith>();
  if (n == "reverse") return std::make_unique<ToyReverse>();
  if (n == "sort") return std::make_unique<ToySort>();
  CGRPO_FAIL("unknown toy task '", name, "'", hint("use toy:arith, toy:reverse or toy:sort"));
}

}  // namespace cgrpo
