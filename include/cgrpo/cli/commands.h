// Subcommand table and dispatch. Each subcommand lives in src/cli/cmd_<name>.cpp and parses its own
// flags with Boost.Program_options; every one answers --help.
#pragma once

#include <string>
#include <vector>

namespace cgrpo::cli {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(int argc, char** argv);  // argv[0] is the subcommand name
};

const std::vector<Command>& commands();
int dispatch(int argc, char** argv);

// Subcommands (declared here, defined in src/cli/cmd_*.cpp).
int cmd_selfcheck(int argc, char** argv);
int cmd_config(int argc, char** argv);
int cmd_plan(int argc, char** argv);
int cmd_train(int argc, char** argv);
int cmd_sft(int argc, char** argv);
int cmd_convert(int argc, char** argv);
int cmd_report(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_init(int argc, char** argv);
int cmd_inspect(int argc, char** argv);
int cmd_score(int argc, char** argv);
int cmd_generate(int argc, char** argv);
int cmd_reward(int argc, char** argv);
int cmd_eval(int argc, char** argv);

}  // namespace cgrpo::cli
