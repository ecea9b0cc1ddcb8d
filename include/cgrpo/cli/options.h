// Shared command-line plumbing for subcommands: Boost.Program_options parsing with --help, and the
// `--config FILE` + `--section.key value` overrides every training-like subcommand accepts.
#pragma once

#include <boost/program_options.hpp>
#include <string>
#include <vector>

#include "cgrpo/config/config.h"

namespace cgrpo::cli {

namespace po = boost::program_options;

// Parses argv against `desc` (plus --help). Unregistered options that look like --section.key are collected
// into *overrides when overrides != nullptr; anything else unknown is an error. Returns false after printing
// help (the caller returns 0).
bool parse_args(int argc, char** argv, const char* usage, po::options_description& desc, po::variables_map& vm,
                std::vector<std::string>* overrides = nullptr,
                const po::positional_options_description* positional = nullptr);

// Config from --config FILE (may be empty) and the collected overrides.
Config load_config(const po::variables_map& vm, const std::vector<std::string>& overrides);

}  // namespace cgrpo::cli
