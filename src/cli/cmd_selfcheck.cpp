#include "cgrpo/cli/commands.h"
int cgrpo::cli::cmd_selfcheck(int, char**) { return 0; }
