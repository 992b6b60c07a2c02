// The stop-signal handlers and their flag (see include/ilf/util/stop_signal.h). The handler only
// stores to a lock-free atomic, which is async-signal-safe.
#include "ilf/util/stop_signal.h"

#include <atomic>
#include <csignal>

namespace ilf {
namespace {

std::atomic<int> g_stop_signal{0};

extern "C" void handle_stop_signal(int signal) { g_stop_signal.store(signal); }

}  // namespace

void install_stop_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = handle_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGUSR1, &action, nullptr);
}

bool stop_signal_received() { return g_stop_signal.load() != 0; }
int last_stop_signal() { return g_stop_signal.load(); }

}  // namespace ilf
