#include "cgrpo/cli/options.h"

#include <iostream>

#include "cgrpo/core/error.h"

namespace cgrpo::cli {

bool parse_args(int argc, char** argv, const char* usage, po::options_description& desc, po::variables_map& vm,
                std::vector<std::string>* overrides, const po::positional_options_description* positional) {
  desc.add_options()("help,h", "show this help");
  po::parsed_options parsed = [&] {
    try {
      auto p = po::command_line_parser(argc, argv).options(desc);  // argv[0] (the subcommand) is skipped
      if (positional) p.positional(*positional);
      if (overrides) p.allow_unregistered();
      return p.run();
    } catch (const po::error& e) {
      CGRPO_FAIL("cgrpo ", argv[0], ": ", e.what(), hint(std::string("see `cgrpo ") + argv[0] + " --help`"));
    }
  }();
  try {
    po::store(parsed, vm);
    po::notify(vm);
  } catch (const po::error& e) {
    if (!vm.count("help")) CGRPO_FAIL("cgrpo ", argv[0], ": ", e.what(), hint(std::string("see `cgrpo ") + argv[0] + " --help`"));
  }
  if (vm.count("help")) {
    std::cout << "usage: " << usage << "\n\n" << desc << "\n";
    if (overrides) std::cout << "Any config key can be overridden as --section.key VALUE (see `cgrpo config --reference`).\n";
    return false;
  }
  if (overrides) {
    // validated (pairs of --section.key VALUE) by Config::load
    for (const std::string& tok : po::collect_unrecognized(parsed.options, po::include_positional))
      overrides->push_back(tok);
  }
  return true;
}

Config load_config(const po::variables_map& vm, const std::vector<std::string>& overrides) {
  const std::string file = vm.count("config") ? vm["config"].as<std::string>() : std::string();
  return Config::load(file, overrides);
}

}  // namespace cgrpo::cli
