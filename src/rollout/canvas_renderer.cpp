#include "cgrpo/rollout/canvas_renderer.h"

#include <algorithm>

namespace cgrpo {

CanvasRenderer::CanvasRenderer(Detok detok, int32_t mask_id, std::ostream& out, std::string placeholder)
    : detok_(std::move(detok)), mask_id_(mask_id), out_(out), placeholder_(std::move(placeholder)) {}

std::string CanvasRenderer::text(const Canvas& canvas, int64_t b) const {
  std::string s;
  const int32_t* x = canvas.completion(b);
  for (int64_t o = 0; o < canvas.new_tokens; ++o) s += x[o] == mask_id_ ? placeholder_ : detok_(x[o]);
  return s;
}

void CanvasRenderer::draw(int64_t step, const Canvas& canvas) {
  frame_.clear();
  if (lines_ > 0) frame_.append("\x1b[").append(std::to_string(lines_)).append("A");  // up to the frame's top
  frame_.append("\r\x1b[J");                                                          // column 0, clear below
  frame_.append("step ").append(std::to_string(step)).append("\n");
  for (int64_t b = 0; b < canvas.batch; ++b) {
    if (canvas.batch > 1) frame_.append("[").append(std::to_string(b)).append("] ");
    frame_ += text(canvas, b);
    frame_ += "\n";
  }
  const size_t first = frame_.find("step ");
  lines_ = std::count(frame_.begin() + static_cast<std::ptrdiff_t>(first), frame_.end(), '\n');
  out_ << frame_ << std::flush;
}

void CanvasRenderer::finish() { lines_ = 0; }

}  // namespace cgrpo
