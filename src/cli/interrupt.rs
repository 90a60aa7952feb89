//! Ctrl-C handling: the first SIGINT/SIGTERM sets a flag that long-running commands poll, so they stop
//! between messages and finalise what they write (bags, checkpoints); a second one exits at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static FIRST: Mutex<Option<Instant>> = Mutex::new(None);

pub fn install() {
    let result = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            // the same signal often arrives twice (sent to the process and to its group): only a
            // second one a moment later means "abort"
            let first = FIRST.lock().ok().and_then(|f| *f);
            if first.is_some_and(|t| t.elapsed() > Duration::from_secs(1)) {
                eprintln!("kdseg: interrupted twice, exiting without cleanup");
                std::process::exit(130);
            }
            return;
        }
        if let Ok(mut f) = FIRST.lock() {
            *f = Some(Instant::now());
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
