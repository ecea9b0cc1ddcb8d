// Where cgrpo finds its shipped data (tokenizer, benchmark datasets), in one place for every caller.
//
// A data file is named relative to a data root, e.g. "tokenizer/diffucoder_tokenizer.json" or
// "datasets/HumanEval.jsonl.gz" (the layout of ../shared/data). The roots, searched in this order:
//   1. $CGRPO_DATA_DIR                         (a site's own copy; set by the modulefile or by hand)
//   2. <dir of the running binary>/../share/cgrpo/data   (an installed tree: `cmake --install`, relocatable)
//   3. CGRPO_SOURCE_DIR/../shared/data         (a build next to the shared data, as in CI)
//   4. CGRPO_SOURCE_DIR/data                   (the repo's own copies)
// A file found in none of them is fatal, naming every root tried.
#pragma once

#include <string>
#include <vector>

namespace cgrpo {

std::vector<std::string> data_roots();  // the existing roots, in search order, each without a trailing '/'

// The first root holding rel, as a path; fatal when none does (`what` names the file for the message).
std::string find_data_file(const std::string& rel, const std::string& what);

}  // namespace cgrpo
