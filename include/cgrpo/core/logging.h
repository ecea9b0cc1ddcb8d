// Boost.Log set up per rank: rank 0 logs to the console at the configured severity, every rank logs
// everything at >= that severity to run_dir/logs/rank_N.log. Use CGRPO_LOG(info) << "...".
#pragma once

#include <boost/log/trivial.hpp>
#include <string>

namespace cgrpo {

// severity: trace|debug|info|warning|error|fatal. An empty run_dir means console only.
void init_logging(const std::string& run_dir, int rank, const std::string& severity);
boost::log::trivial::severity_level parse_severity(const std::string& s);
void flush_logs();

}  // namespace cgrpo

#define CGRPO_LOG(sev) BOOST_LOG_TRIVIAL(sev)
