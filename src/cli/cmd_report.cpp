// cgrpo report: a run's metrics.jsonl as one self-contained HTML page with an SVG line plot per metric
// (ARCHITECTURE.md §3.9). Usage: cgrpo report RUN_DIR [--out FILE]   (default RUN_DIR/report.html)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cgrpo/cli/commands.h"
#include "cgrpo/cli/options.h"
#include "cgrpo/core/error.h"

namespace cgrpo::cli {

namespace {
struct Series {
  std::vector<std::pair<double, double>> pts;  // (step, value)
};

std::string svg_plot(const std::string& title, const Series& s) {
  const double W = 420, H = 180, pad = 36;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (auto [x, y] : s.pts) {
    x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
  }
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= y0) y1 = y0 + (y0 == 0 ? 1 : std::fabs(y0) * 0.1);
  std::ostringstream o;
  o << "<figure><svg width='" << W << "' height='" << H << "' viewBox='0 0 " << W << " " << H << "'>"
    << "<rect x='" << pad << "' y='8' width='" << W - pad - 8 << "' height='" << H - pad - 8
    << "' fill='none' stroke='#ccc'/><polyline fill='none' stroke='#1f6feb' stroke-width='1.5' points='";
  for (auto [x, y] : s.pts)
    o << pad + (x - x0) / (x1 - x0) * (W - pad - 8) << "," << 8 + (1 - (y - y0) / (y1 - y0)) * (H - pad - 8) << " ";
  char lab[160];
  std::snprintf(lab, sizeof(lab), "<text x='2' y='16' font-size='10'>%.4g</text><text x='2' y='%g' font-size='10'>%.4g</text>",
                y1, H - pad, y0);
  o << "'/>" << lab << "<text x='" << pad << "' y='" << H - 10 << "' font-size='10'>step " << x0 << "</text>"
    << "<text x='" << W - 60 << "' y='" << H - 10 << "' font-size='10'>" << x1 << "</text></svg><figcaption>" << title
    << " (" << s.pts.size() << " points)</figcaption></figure>\n";
  return o.str();
}
}  // namespace

int cmd_report(int argc, char** argv) {
  po::options_description desc("cgrpo report options");
  std::string dir, out;
  desc.add_options()("run", po::value(&dir), "run directory (holds metrics.jsonl)")
                    ("out", po::value(&out), "HTML file (default RUN_DIR/report.html)");
  po::positional_options_description pos;
  pos.add("run", 1);
  po::variables_map vm;
  if (!parse_args(argc, argv, "cgrpo report RUN_DIR [--out FILE]", desc, vm, nullptr, &pos)) return 0;
  CGRPO_CHECK(!dir.empty(), "cgrpo report needs a run directory", hint("cgrpo report runs/quickstart"));
  const std::string path = dir + "/metrics.jsonl";
  std::ifstream in(path);
  CGRPO_CHECK(in.good(), "cannot read ", path, hint("pass the run.dir of a cgrpo train/sft run"));
  if (out.empty()) out = dir + "/report.html";
  std::map<std::string, std::map<std::string, Series>> by_phase;  // phase -> metric -> series
  std::string line, summary;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const std::exception& e) {
      CGRPO_FAIL(path, ":", n, ": not JSON (", e.what(), ")", hint("metrics.jsonl holds one JSON object per line"));
    }
    const std::string phase = j.value("phase", std::string("?"));
    if (phase == "summary") {
      summary = j.dump(1);
      continue;
    }
    if (!j.contains("step") || !j["step"].is_number()) continue;
    const double step = j["step"].get<double>();
    for (auto& [k, v] : j.items())
      if (k != "step" && v.is_number()) by_phase[phase][k].pts.emplace_back(step, v.get<double>());
  }
  std::ofstream html(out);
  html << "<!doctype html><meta charset='utf-8'><title>cgrpo report: " << dir << "</title>"
       << "<style>body{font-family:sans-serif;margin:20px}figure{display:inline-block;margin:6px}"
       << "figcaption{font-size:12px;text-align:center}</style><h1>cgrpo run " << dir << "</h1>\n";
  if (!summary.empty()) html << "<h2>summary</h2><pre>" << summary << "</pre>\n";
  int plots = 0;
  for (const auto& [phase, metrics] : by_phase) {
    html << "<h2>" << phase << "</h2>\n";
    for (const auto& [name, s] : metrics) {
      html << svg_plot(name, s);
      ++plots;
    }
  }
  CGRPO_CHECK(html.good(), "cannot write ", out);
  std::printf("wrote %s: %d plots\n", out.c_str(), plots);
  return 0;
}

}  // namespace cgrpo::cli
