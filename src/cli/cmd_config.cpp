// cgrpo config: print the resolved config, or the reference of every key.
#include <iostream>

#include "cgrpo/cli/commands.h"
#include "cgrpo/cli/options.h"

namespace cgrpo::cli {

int cmd_config(int argc, char** argv) {
  po::options_description desc("cgrpo config options");
  desc.add_options()("config,c", po::value<std::string>(), "INI file to resolve")
                    ("reference", "print every key with its default, type and meaning");
  po::variables_map vm;
  std::vector<std::string> overrides;
  if (!parse_args(argc, argv, "cgrpo config [--config FILE] [--section.key VALUE ...] | --reference", desc, vm,
                  &overrides))
    return 0;
  if (vm.count("reference")) {
    std::cout << Config::reference();
    return 0;
  }
  std::cout << load_config(vm, overrides).to_ini();
  return 0;
}

}  // namespace cgrpo::cli
