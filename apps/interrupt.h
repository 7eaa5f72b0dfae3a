// Clean interrupts: SIGINT and SIGTERM (Ctrl-C, or a cluster's time limit) ask a training loop to
// stop after its current step, write its resume state atomically and exit 130 or 143, printing
// how to resume. A second signal ends the process at once (every file kdlab writes is written
// atomically, so only complete files are left).
#pragma once
#include <string>

#include "base/check.h"

namespace kd {
namespace apps {

// Installs the handlers (idempotent). Before this, the signals keep their default action.
void install_interrupt_handlers();
// The first signal received since the handlers were installed, or 0.
int pending_interrupt();

// Thrown by a loop that stopped for a signal; main prints it and exits 128 + signal.
struct Interrupted : Error {
  Interrupted(int signal_number, const std::string& what, const std::string& dir)
      : Error(what), signal(signal_number), run_dir(dir) {}
  int signal;
  std::string run_dir;  // where the resume state is; empty when the loop keeps none
};

std::string signal_name(int signal_number);  // "SIGINT", "SIGTERM"

}  // namespace apps
}  // namespace kd
