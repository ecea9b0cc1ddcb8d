// cgrpo: subcommand dispatch only.
#include "cgrpo/cli/commands.h"

int main(int argc, char** argv) { return cgrpo::cli::dispatch(argc, argv); }
