//! Ctrl-C handling: the first SIGINT/SIGTERM sets a flag that long-running commands poll, so they stop
//! between messages and finalise what they write (bags, checkpoints); a second one exits at once.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn install() {
    let result = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            eprintln!("kdseg: interrupted twice, exiting without cleanup");
            std::process::exit(130);
        }
        eprintln!("kdseg: interrupted, finishing what is being written (Ctrl-C again to abort)");
    });
    if let Err(e) = result {
        log::warn!("cannot install the Ctrl-C handler: {e}");
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
