// Clean interrupts (see interrupt.h).
#include "apps/interrupt.h"

#include <atomic>
#include <csignal>

namespace kd {
namespace apps {
namespace {

std::atomic<int> g_pending{0};

extern "C" void on_interrupt(int signal_number) {
  int expected = 0;
  if (!g_pending.compare_exchange_strong(expected, signal_number)) {
    // The second signal: the default action, now.
    std::signal(signal_number, SIG_DFL);
    std::raise(signal_number);
  }
}

}  // namespace

void install_interrupt_handlers() {
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

int pending_interrupt() { return g_pending.load(); }

std::string signal_name(int signal_number) {
  return signal_number == SIGINT ? "SIGINT" : signal_number == SIGTERM ? "SIGTERM" : "signal " + std::to_string(signal_number);
}

}  // namespace apps
}  // namespace kd
