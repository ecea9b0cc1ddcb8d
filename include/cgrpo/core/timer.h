// Wall-clock timers (steady_clock) and per-phase accumulators.
#pragma once

#include <chrono>
#include <map>
#include <string>

namespace cgrpo {

class Timer {
 public:
  Timer() : t0_(std::chrono::steady_clock::now()) {}
  void reset() { t0_ = std::chrono::steady_clock::now(); }
  double elapsed_ms() const {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_).count();
  }
  double elapsed_s() const { return elapsed_ms() * 1e-3; }

 private:
  std::chrono::steady_clock::time_point t0_;
};

// Milliseconds accumulated per named phase ("rollout", "reward", "score", "train", "comm", "checkpoint").
class PhaseTimes {
 public:
  void add(const std::string& phase, double ms) { ms_[phase] += ms; }
  double get(const std::string& phase) const {
    auto it = ms_.find(phase);
    return it == ms_.end() ? 0.0 : it->second;
  }
  const std::map<std::string, double>& all() const { return ms_; }
  void clear() { ms_.clear(); }

 private:
  std::map<std::string, double> ms_;
};

// RAII: adds the scope's duration to a phase.
class ScopedPhase {
 public:
  ScopedPhase(PhaseTimes& p, std::string name) : p_(p), name_(std::move(name)) {}
  ~ScopedPhase() { p_.add(name_, t_.elapsed_ms()); }
  ScopedPhase(const ScopedPhase&) = delete;
  ScopedPhase& operator=(const ScopedPhase&) = delete;

 private:
  PhaseTimes& p_;
  std::string name_;
  Timer t_;
};

}  // namespace cgrpo
