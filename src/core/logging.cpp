#include "cgrpo/core/logging.h"

#include <boost/log/core.hpp>
#include <boost/log/expressions.hpp>
#include <boost/log/support/date_time.hpp>
#include <boost/log/utility/setup/common_attributes.hpp>
#include <boost/log/utility/setup/console.hpp>
#include <boost/log/utility/setup/file.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "cgrpo/core/error.h"
#include "cgrpo/core/log_warning.h"

namespace cgrpo {
namespace logging = boost::log;
namespace expr = boost::log::expressions;

namespace {
std::string g_rank_log;  // this rank's log file, for the fatal hook

// fatal()'s message, appended to the rank's log file directly (the console already gets it on stderr)
void log_fatal(const std::string& message) {
  logging::core::get()->flush();
  std::ofstream(g_rank_log, std::ios::app) << "[fatal] " << message << "\n";
}
}  // namespace

logging::trivial::severity_level parse_severity(const std::string& s) {
  using logging::trivial::severity_level;
  if (s == "trace") return severity_level::trace;
  if (s == "debug") return severity_level::debug;
  if (s == "info") return severity_level::info;
  if (s == "warning" || s == "warn") return severity_level::warning;
  if (s == "error") return severity_level::error;
  if (s == "fatal") return severity_level::fatal;
  CGRPO_FAIL("unknown log level '", s, "'", hint("use trace, debug, info, warning, error or fatal"));
}

void init_logging(const std::string& run_dir, int rank, const std::string& severity) {
  const auto sev = parse_severity(severity);
  auto core = logging::core::get();
  core->remove_all_sinks();
  logging::add_common_attributes();
  if (rank == 0) {
    auto console = logging::add_console_log(
        std::cout, logging::keywords::format = (expr::stream << "[" << logging::trivial::severity << "] " << expr::smessage));
    console->set_filter(logging::trivial::severity >= sev);
    console->locked_backend()->auto_flush(true);
  }
  if (!run_dir.empty()) {
    std::error_code ec;
    const auto dir = std::filesystem::path(run_dir) / "logs";
    std::filesystem::create_directories(dir, ec);
    CGRPO_CHECK(!ec, "cannot create log directory ", dir.string(), ": ", ec.message(),
                hint("set run.dir to a writable directory"));
    g_rank_log = (dir / ("rank_" + std::to_string(rank) + ".log")).string();
    set_fatal_hook(log_fatal);
    auto file = logging::add_file_log(
        logging::keywords::file_name = g_rank_log,
        logging::keywords::open_mode = std::ios_base::app,
        logging::keywords::auto_flush = true,
        logging::keywords::format =
            (expr::stream << expr::format_date_time<boost::posix_time::ptime>("TimeStamp", "%Y-%m-%d %H:%M:%S.%f")
                          << " [" << logging::trivial::severity << "] " << expr::smessage));
    file->set_filter(logging::trivial::severity >= sev);
  }
  if (rank != 0 && run_dir.empty()) core->set_filter(logging::trivial::severity >= logging::trivial::error);
}

void flush_logs() { logging::core::get()->flush(); }


void log_warning(const std::string& text) { CGRPO_LOG(warning) << text; }

}  // namespace cgrpo
