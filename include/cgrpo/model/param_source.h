// ParamSource: where the model gets each unit's parameters and gradient accumulators (torchtitan's rule:
// the model never communicates; the sharding layer decides when a unit is materialised and freed).
// Units are ParamLayout::units(): 0 = embedding, 1..n_layers = layers, n_layers + 1 = final norm + head.
//
// Call order inside DreamModel:
//   forward:  acquire(0) release(0), acquire(1+l) release(1+l) for each layer, acquire(head) ... kept
//             through logprobs()/logits() and backward's head part (like FSDP's root unit, which is not
//             resharded after forward), released there or by the next forward / release_held().
//   backward: grads(head) ... release(head) grads_done(head); for l = last..0: acquire(1+l), grads(1+l),
//             release(1+l), grads_done(1+l); then grads(0), grads_done(0) (the embedding backward needs no
//             parameters). A tied head also holds unit 0 from logprobs() to the end of backward.
//   prefetch(v) is called right after acquire(u) for the unit v the model will acquire next (forward: u + 1;
//   backward: the previous layer), never for a unit it will not acquire.
#pragma once

namespace cgrpo {

class ParamSource {
 public:
  virtual ~ParamSource() = default;
  // Parameters of unit u laid out as in the flat ParamLayout buffer, starting at the unit's first element,
  // in the source's parameter dtype (DreamModel::set_param_dtype; fp32 unless set), in the backend's memory.
  virtual const void* acquire(int unit) = 0;
  virtual void release(int unit) = 0;
  // Gradient accumulator of unit u, same layout; the model adds (+=) into it.
  virtual float* grads(int unit) = 0;
  // Backward has finished adding into unit u's gradients for this micro-batch.
  virtual void grads_done(int unit) = 0;
  // Hint: acquire(unit) comes next, after the current unit's compute (ZeRO-3 starts the gather now).
  virtual void prefetch(int /*unit*/) {}
};

}  // namespace cgrpo
