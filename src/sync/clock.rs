//! The platform's clock, as this machine keeps it: the clock "the later edit wins" compares on
//! (docs/semantics.md, "Edit times").
//!
//! An edit's time is taken when the edit is made, on the platform's clock as calibrated then, and
//! kept with the file (`Entry::edited_ms`): a wall clock stepped afterwards (NTP when the network
//! returns, a user correcting it) never moves it. Between calibrations (`GET status`) the
//! platform's clock is carried forward by the time since boot (`CLOCK_BOOTTIME`, which nothing
//! steps and which counts a suspend too), not by the wall clock: a step of the wall clock while
//! offline is not taken for time passing. The last calibration is kept in the index's meta, so a
//! restart in the same boot goes on from it; after a reboot, the wall clock plus the last
//! calibrated offset is the best there is.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use crate::cache::Index;

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

    /// Milliseconds since boot, suspend included; never stepped. macOS: `CLOCK_MONOTONIC`, which
    /// counts sleep there. Windows: `GetTickCount64`, which does too. (Neither has a boot id of
    /// ours, so a restart starts from the wall clock and the last offset, as after a reboot.)
    #[cfg(not(target_os = "linux"))]
    pub fn since_boot_ms(&self) -> i64 {
        #[cfg(windows)]
        {
            // SAFETY: no arguments; it can't fail.
            unsafe { windows_sys::Win32::System::SystemInformation::GetTickCount64() as i64 }
        }
        #[cfg(unix)]
        {
            let mut now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `now` is a valid timespec for the call to fill.
            if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
                return self.wall_ms();
            }
            now.tv_sec * 1000 + now.tv_nsec / 1_000_000
        }
    }

    /// Milliseconds since boot, suspend included; never stepped.
    #[cfg(target_os = "linux")]
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

/// The platform's time at one moment, pinned to the time since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Anchor {
    platform_ms: i64,
    boot_ms: i64,
}

/// The last calibration, as the index keeps it (`clock` in its meta).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Kept {
    boot_id: String,
    anchor: Anchor,
    /// The platform's clock minus the wall clock, then.
    offset_ms: i64,
}

const META_KEY: &str = "clock";

impl Kept {
    fn parse(value: &str) -> Option<Kept> {
        let mut words = value.split_whitespace();
        let boot_id = words.next()?.to_string();
        let mut number = || words.next()?.parse::<i64>().ok();
        let (platform_ms, boot_ms, offset_ms) = (number()?, number()?, number()?);
        Some(Kept {
            boot_id,
            anchor: Anchor {
                platform_ms,
                boot_ms,
            },
            offset_ms,
        })
    }

    fn format(&self) -> String {
        format!(
            "{} {} {} {}",
            self.boot_id, self.anchor.platform_ms, self.anchor.boot_ms, self.offset_ms
        )
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`): a time since boot means nothing in
/// another boot, and a power cut is a stop in an earlier boot (`power_cut.rs`).
pub(super) fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty() && !id.contains(char::is_whitespace)).then(|| id.to_string())
}

/// The platform's clock as this machine keeps it.
pub struct PlatformClock {
    local: LocalClock,
    /// Leaf lock.
    anchor: Mutex<Anchor>,
    boot_id: Option<String>,
}

impl PlatformClock {
    /// The clock as the index last kept it: in this boot, its calibration holds as it was (a
    /// wall clock stepped since does not matter); after a reboot, or never calibrated, the wall
    /// clock plus the last offset (zero) until the next calibration.
    pub fn load(index: &Index, local: LocalClock) -> PlatformClock {
        let boot_id = boot_id();
        let kept = index
            .meta(META_KEY)
            .ok()
            .flatten()
            .and_then(|v| Kept::parse(&v));
        let now_boot = local.since_boot_ms();
        let anchor = match kept {
            Some(k) if boot_id.as_ref() == Some(&k.boot_id) && k.anchor.boot_ms <= now_boot => {
                k.anchor
            }
            other => Anchor {
                platform_ms: local.wall_ms() + other.map_or(0, |k| k.offset_ms),
                boot_ms: now_boot,
            },
        };
        PlatformClock {
            local,
            anchor: Mutex::new(anchor),
            boot_id,
        }
    }

    fn anchor(&self) -> Anchor {
        *self.anchor.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The platform's time now, in milliseconds since the epoch.
    pub fn now_ms(&self) -> i64 {
        let anchor = self.anchor();
        anchor.platform_ms + (self.local.since_boot_ms() - anchor.boot_ms)
    }

    /// The platform's clock minus the wall clock now (a wall-clock time plus this is the
    /// platform's), steps of the wall clock since the last calibration included.
    pub fn offset_ms(&self) -> i64 {
        self.now_ms() - self.local.wall_ms()
    }

    /// The machine's clocks.
    pub fn local(&self) -> &LocalClock {
        &self.local
    }

    /// A calibration: the platform said `platform_ms` at `boot_ms` (the middle of the request,
    /// by the time since boot), when the wall clock read `wall_ms`. Kept in the index.
    pub fn calibrated(&self, index: &Index, platform_ms: i64, boot_ms: i64, wall_ms: i64) {
        let anchor = Anchor {
            platform_ms,
            boot_ms,
        };
        let drift = {
            let mut held = self.anchor.lock().unwrap_or_else(|p| p.into_inner());
            let carried = held.platform_ms + (boot_ms - held.boot_ms);
            *held = anchor;
            platform_ms - carried
        };
        if drift.abs() >= 2_000 {
            tracing::info!(
                drift_ms = drift,
                offset_ms = platform_ms - wall_ms,
                "the platform's clock as kept here was off; calibrated again"
            );
        }
        let Some(boot_id) = self.boot_id.clone() else {
            return;
        };
        let kept = Kept {
            boot_id,
            anchor,
            offset_ms: platform_ms - wall_ms,
        };
        if let Err(e) = index.set_meta(META_KEY, &kept.format()) {
            tracing::warn!(error = %e, "could not keep the clock's calibration in the index");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> (tempfile::TempDir, Index) {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.db")).unwrap();
        (dir, index)
    }

    #[test]
    fn a_wall_clock_step_does_not_move_the_platforms_clock() {
        let (_dir, index) = index();
        let local = LocalClock::default();
        let clock = PlatformClock::load(&index, local.clone());
        let wall = local.wall_ms();
        // The platform is 5 s ahead.
        clock.calibrated(&index, wall + 5_000, local.since_boot_ms(), wall);
        assert!((clock.offset_ms() - 5_000).abs() < 100);
        let before = clock.now_ms();
        local.step(3_600_000);
        assert!(
            (clock.now_ms() - before).abs() < 100,
            "the step is not time"
        );
        assert!((clock.offset_ms() - (5_000 - 3_600_000)).abs() < 100);
        local.step(-3_600_000);
        assert!((clock.offset_ms() - 5_000).abs() < 100);
    }

    #[test]
    fn a_calibration_survives_a_restart_in_the_same_boot_and_its_offset_a_reboot() {
        let (_dir, index) = index();
        let local = LocalClock::default();
        let clock = PlatformClock::load(&index, local.clone());
        let wall = local.wall_ms();
        clock.calibrated(&index, wall - 7_000, local.since_boot_ms(), wall);
        // Stepped while no engine ran: the kept calibration still holds.
        local.step(-3_600_000);
        let again = PlatformClock::load(&index, local.clone());
        assert!((again.now_ms() - (local.wall_ms() + 3_600_000 - 7_000)).abs() < 100);
        // Another boot: the time since boot means nothing; the offset is what is left.
        let mut kept = Kept::parse(&index.meta(META_KEY).unwrap().unwrap()).unwrap();
        kept.boot_id = "another-boot".into();
        index.set_meta(META_KEY, &kept.format()).unwrap();
        let rebooted = PlatformClock::load(&index, local.clone());
        assert!((rebooted.offset_ms() + 7_000).abs() < 100);
    }

    #[test]
    fn what_the_index_keeps_reads_back() {
        let kept = Kept {
            boot_id: "b0a1".into(),
            anchor: Anchor {
                platform_ms: 1_700_000_000_000,
                boot_ms: 12_345,
            },
            offset_ms: -3_600_000,
        };
        assert_eq!(Kept::parse(&kept.format()), Some(kept));
        assert_eq!(Kept::parse("b0a1 1 2"), None);
        assert_eq!(Kept::parse("garbage"), None);
    }
}
