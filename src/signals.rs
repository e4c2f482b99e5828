//! SIGTERM, SIGINT and SIGHUP during a pass: noted, so the pass stops its entry point and
//! records why instead of dying with nothing written.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// The same news as a flag, in the form gix's long loops (checkout, pack writing) poll.
static INTERRUPT: AtomicBool = AtomicBool::new(false);

extern "C" fn note(signal: i32) {
    // Only atomic stores: the one thing a signal handler may safely do here.
    RECEIVED.store(signal, Ordering::SeqCst);
    INTERRUPT.store(true, Ordering::SeqCst);
}

/// Catch the signals that systemd (stop, shutdown, TimeoutStartSec) and a terminal (Ctrl-C)
/// send. Without SA_RESTART, so a blocked read returns and the pass can look.
pub fn install() {
    let action = SigAction::new(SigHandler::Handler(note), SaFlags::empty(), SigSet::empty());
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // SAFETY: the handler only stores into atomics.
        let _ = unsafe { sigaction(signal, &action) };
    }
}

/// The signal received since `install`, if any.
pub fn received() -> Option<Signal> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        n => Signal::try_from(n).ok(),
    }
}

/// Set once a signal arrived: hand it to gix as its `should_interrupt`.
pub fn interrupt_flag() -> &'static AtomicBool {
    &INTERRUPT
}
