#include "cgrpo/shard/model_units.h"

#include <algorithm>

namespace cgrpo {

std::vector<UnitSpec> units_from_layout(const ParamLayout& layout, const std::vector<std::string>& no_decay) {
  std::vector<UnitSpec> units;
  for (const ParamUnit& pu : layout.units()) {
    UnitSpec spec{pu.name, {}};
    std::vector<const ParamInfo*> ts;
    for (int i = pu.first; i < pu.first + pu.count; ++i) ts.push_back(&layout.params()[size_t(i)]);
    std::sort(ts.begin(), ts.end(), [](const ParamInfo* a, const ParamInfo* b) { return a->offset < b->offset; });
    int64_t off = pu.offset;
    for (const ParamInfo* p : ts) {
      CGRPO_CHECK(p->offset == off, "unit ", pu.name, " is not contiguous at ", p->name);
      const bool decay = std::none_of(no_decay.begin(), no_decay.end(),
                                      [&](const std::string& s) { return p->name.find(s) != std::string::npos; });
      spec.tensors.push_back({p->name, p->numel, decay, p->shape});
      off += p->numel;
    }
    CGRPO_CHECK(off == pu.offset + pu.numel, "unit ", pu.name, " tensors do not add up to the unit");
    units.push_back(std::move(spec));
  }
  return units;
}

void load_flat(ZeroEngine& e, const ParamLayout& layout, const float* flat) {
  for (int u = 0; u < e.num_units(); ++u) e.load_unit(u, flat + layout.units()[size_t(u)].offset);
}

void load_units(ZeroEngine& e, const ParamLayout& layout, const ParamFill& fill, ZeroEngine* also) {
  CGRPO_CHECK(also == nullptr || also->num_units() == e.num_units(), "load_units: the engines have ", e.num_units(),
              " and ", also ? also->num_units() : 0, " units");
  std::vector<float> values;  // [largest range]: one unit's values at a time
  for (int u = 0; u < e.num_units(); ++u) {
    const int64_t base = layout.units()[size_t(u)].offset;
    ShardRange filled{0, -1};
    for (ZeroEngine* x : {&e, also}) {
      if (x == nullptr) continue;
      const ShardRange r = x->load_range(u);
      if (r.offset != filled.offset || r.count != filled.count) {  // the reference usually reuses the policy's
        values.resize(size_t(r.count));
        if (r.count > 0) fill(base + r.offset, r.count, values.data());
        filled = r;
      }
      x->load_unit_range(u, values.data());
    }
  }
}

void read_flat(ZeroEngine& e, const ParamLayout& layout, float* flat) {
  for (int u = 0; u < e.num_units(); ++u) e.read_unit(u, flat + layout.units()[size_t(u)].offset);
}

}  // namespace cgrpo
