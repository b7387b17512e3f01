//! How an engine behaves where its defaults are not wanted: chosen once, when it is built, and
//! fixed for its life (tests and debugging set them; nothing changes them while it runs).

use std::time::Duration;

/// The engine's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Fetch platform content ahead of reads. Off only as a debugging aid
    /// (`HYPERCLAY_PREFETCH=0`): copies are then fetched on first read.
    pub prefetch: bool,
    /// How long a silent event stream is trusted before it is taken for dead
    /// (`HYPERCLAY_STREAM_SILENCE_SECS`; tests shorten it).
    pub stream_silence: Duration,
    /// How long a create's answer waits before it is settled: zero, except in tests, which
    /// widen the window where the stream's echo of the new node lands (`tests/model.rs`).
    pub settle_delay: Duration,
    /// The most nodes taken from one listing (`vet::MAX_LISTING_NODES`; tests lower it to
    /// reach the bound with a small listing).
    pub max_listing_nodes: usize,
    /// Which front door changes the mirror: only the engine (the FUSE mount), or any program
    /// (the plain folder, where the mirror is the user's folder itself).
    pub front_door: FrontDoor,
    /// The machine's clocks (`clock.rs`); tests step the wall clock.
    pub clock: super::clock::LocalClock,
    /// How long into an outage the platform is looked for every second before the waits grow
    /// (`follow.rs`, `FAST_CHECKS_FOR`). Tests that must tell a network change from a quiet
    /// check shorten it (`HYPERCLAY_FAST_CHECKS_SECS`; only ever lowered).
    pub fast_checks_for: Duration,
}

/// How local changes reach the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FrontDoor {
    /// The FUSE mount: every change passes through the engine, which sees it coming.
    #[default]
    Mount,
    /// A plain folder kept in sync: programs change the mirror directly and a watcher tells the
    /// engine afterwards (`src/folder/`). Whatever the engine writes over a file is checked
    /// against the disk first, and the file it replaces is looked at after (`Mirror::exchange`).
    Folder,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            prefetch: true,
            stream_silence: crate::remote::SILENCE_LIMIT,
            settle_delay: Duration::ZERO,
            max_listing_nodes: super::vet::MAX_LISTING_NODES,
            front_door: FrontDoor::Mount,
            clock: super::clock::LocalClock::default(),
            fast_checks_for: super::follow::FAST_CHECKS_FOR,
        }
    }
}

impl Settings {
    /// The defaults, with what the environment asks for (read in this one place).
    pub fn from_env() -> Settings {
        let mut settings = Settings::default();
        if std::env::var("HYPERCLAY_PREFETCH").as_deref() == Ok("0") {
            settings.prefetch = false;
        }
        if let Some(secs) = std::env::var("HYPERCLAY_STREAM_SILENCE_SECS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            settings.stream_silence = Duration::from_secs(secs.max(1));
        }
        if let Some(n) = std::env::var("HYPERCLAY_MAX_LISTING_NODES")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        {
            // Only ever lowered (tests reach the bound with a small listing).
            settings.max_listing_nodes = n.min(settings.max_listing_nodes);
        }
        if let Some(secs) = std::env::var("HYPERCLAY_FAST_CHECKS_SECS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            settings.fast_checks_for = Duration::from_secs(secs).min(settings.fast_checks_for);
        }
        settings
    }
}
