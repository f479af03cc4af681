// gatehouse: the command line.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <unistd.h>
#include <string>
#include <vector>

#include "app/app.hpp"
#include "app/bootstrap.hpp"
#include "app/cli.hpp"
#include "core/config.hpp"
#include "core/log.hpp"

namespace {
void usage() {
  std::fprintf(stderr,
               "usage: gatehouse [serve|check-config|migrate|apikey|users|groups|grants|keys|endpoints|--version|--help]\n"
               "  serve         run the gateway (default)\n"
               "  check-config  validate the environment and the servers file, then exit\n");
  gh::app::cli_usage();
  std::fprintf(stderr, "Settings come from the environment and ./.env; see README.md.\n");
}
}  // namespace

// Built with glibc's malloc (GATEHOUSE_MALLOC=system; the default is tcmalloc, see CMakeLists.txt): glibc
// keeps 7 freed blocks of each size per thread; the request path has more than that of several sizes in
// flight at 32 concurrent requests, and the overflow goes through the slower bins (about 8% of CPU per
// request, measured with bench/). The cache size is a tunable read only at process start, so `serve`
// re-executes itself once with it set, unless the operator set GLIBC_TUNABLES already.
static void tune_allocator([[maybe_unused]] char** argv) {
#ifdef GATEHOUSE_SYSTEM_MALLOC
  if (std::getenv("GLIBC_TUNABLES")) return;
  ::setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=128", 1);
  ::execv("/proc/self/exe", argv);
  ::unsetenv("GLIBC_TUNABLES");  // exec failed: run as we are
#endif
}

#ifndef GATEHOUSE_SYSTEM_MALLOC
extern "C" const char* tc_version(int* major, int* minor, const char** patch);  // gperftools' tcmalloc
#endif

static std::string allocator_name() {
#ifdef GATEHOUSE_SYSTEM_MALLOC
  return "glibc malloc";
#else
  return std::string("tcmalloc (") + tc_version(nullptr, nullptr, nullptr) + ")";
#endif
}

int main(int argc, char** argv) {
  std::string cmd = argc > 1 ? argv[1] : "serve";
  if (cmd == "serve") tune_allocator(argv);
  if (cmd == "--version" || cmd == "version") {
    std::printf("gatehouse 0.1.0\nallocator: %s\n", allocator_name().c_str());
    return 0;
  }
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    usage();
    return 0;
  }
  if (cmd != "serve" && cmd != "check-config" && !gh::app::is_cli_command(cmd)) {
    std::fprintf(stderr, "gatehouse: unknown command '%s'\n", cmd.c_str());
    usage();
    return 2;
  }
  try {
    auto env = gh::read_environment();
    auto settings = gh::load_settings(env);
    if (gh::app::is_cli_command(cmd)) {
      gh::log::set_level(gh::log::Level::warn);  // the CLI's output is its answer; logs only for trouble
      return gh::app::run_cli(cmd, std::vector<std::string>(argv + 2, argv + argc), settings, env);
    }
    if ((cmd == "serve" || cmd == "check-config") && argc > 2) {
      std::fprintf(stderr, "gatehouse: %s takes no arguments (settings come from the environment and .env; the servers "
                           "file is MCP_SERVERS_FILE)\n", cmd.c_str());
      return 2;
    }
    gh::app::check_settings(settings);
    if (cmd == "check-config") {
      auto servers = gh::load_servers_file(settings.servers_file, env);
      std::printf("config ok: %zu servers in %s\n", servers.size(), settings.servers_file.c_str());
      return 0;
    }
    return gh::app::serve(settings, env);
  } catch (const gh::ConfigError& e) {
    std::fprintf(stderr, "gatehouse: configuration error: %s\n", e.what());
    gh::log::error("configuration error", {{"setting", e.setting}, {"error", e.what()}});
    return 2;
  } catch (const std::exception& e) {
    gh::log::error("fatal", {{"error", e.what()}});
    return 1;
  }
}
