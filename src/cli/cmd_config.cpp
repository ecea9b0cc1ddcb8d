#include "cgrpo/cli/commands.h"
int cgrpo::cli::cmd_config(int, char**) { return 0; }
