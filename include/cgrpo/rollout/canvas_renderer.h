// Draws the completions of a canvas filling in place on an ANSI terminal, one redraw per denoising step:
// the previous frame is erased (cursor up + clear to end of screen) and the canvas printed again, masked
// slots shown as a visible placeholder. Plug it into the sampler as a StepCallback:
//   CanvasRenderer r(detok, cfg.mask_id, std::cerr);
//   sampler.generate(model, prompts, ids, nullptr, [&](int64_t i, const Canvas& c) { r.draw(i, c); });
#pragma once

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>

#include "cgrpo/rollout/canvas.h"

namespace cgrpo {

class CanvasRenderer {
 public:
  using Detok = std::function<std::string(int32_t)>;

  CanvasRenderer(Detok detok, int32_t mask_id, std::ostream& out, std::string placeholder = "\xe2\x96\x91");  // ░

  // Row b's completion as text: detok(token) per slot, the placeholder per masked slot.
  std::string text(const Canvas& canvas, int64_t b) const;
  // Erase the previous frame and draw "step i: ..." plus every row's completion.
  void draw(int64_t step, const Canvas& canvas);
  // Leave the last frame on screen; the next draw() starts a new frame below it.
  void finish();

 private:
  Detok detok_;
  int32_t mask_id_;
  std::ostream& out_;
  std::string placeholder_;
  int64_t lines_ = 0;  // newlines printed by the current frame (terminal line wrapping is not counted)
  std::string frame_;  // reused buffer
};

}  // namespace cgrpo
