// The process-wide stop request: SIGTERM (Slurm's warning before a time limit, `kill`) and SIGUSR1
// (`scancel --signal=USR1`, a user's "checkpoint and stop") only set a flag, and long-running loops
// poll it at a point where stopping is safe. It is a utility of its own, outside training, so that
// every long-running part (the trainer today, the sweep runner later) shares one handler and one flag.
#pragma once

namespace ilf {

// Installs the SIGTERM and SIGUSR1 handlers (SA_RESTART) that record the signal; the signal's default
// action (ending the process) no longer happens. Call once, early in main().
void install_stop_signal_handlers();

// Whether a stop signal arrived since the handlers were installed.
bool stop_signal_received();

// The last stop signal received (SIGTERM or SIGUSR1), 0 when none.
int last_stop_signal();

}  // namespace ilf
