//! The machine's clocks, as the engine reads them (tests step the wall clock).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// The machine's two clocks: the wall clock, which may be stepped, and the time since boot,
/// which may not. Tests step the wall clock ([`LocalClock::step`]), as NTP or a user would.
#[derive(Debug, Clone, Default)]
pub struct LocalClock {
    /// Added to the wall clock (tests; zero otherwise).
    step_ms: Arc<AtomicI64>,
}

impl LocalClock {
    /// The wall clock, in milliseconds since the epoch.
    pub fn wall_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis() + self.step_ms.load(Ordering::Relaxed)
    }

    /// Milliseconds since boot, suspend included; never stepped.
    pub fn since_boot_ms(&self) -> i64 {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid timespec for the call to fill; CLOCK_BOOTTIME exists on every
        // Linux since 2.6.39 (it can't fail with a valid pointer and clock id).
        let failed = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) } != 0;
        if failed {
            // Not reached on Linux; the wall clock is the next best thing.
            return self.wall_ms();
        }
        now.tv_sec * 1000 + now.tv_nsec / 1_000_000
    }

    /// Steps the wall clock by `ms` (tests: a clock set wrong, then corrected).
    pub fn step(&self, ms: i64) {
        self.step_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// Two settings are equal when they read the same clocks.
impl PartialEq for LocalClock {
    fn eq(&self, other: &LocalClock) -> bool {
        Arc::ptr_eq(&self.step_ms, &other.step_ms)
    }
}

impl Eq for LocalClock {}
