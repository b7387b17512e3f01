//! hyperclay: the hyperclay.com platform mounted as a local folder.
//!
//! Layout (see docs/architecture.md): `protocol` is the wire contract shared by the client and the
//! bundled dev platform; `remote` is the only code that speaks HTTP to the platform; `platform` is
//! `hyperclay dev-platform`.

pub mod body;
pub mod cache;
pub mod config;
pub mod control;
pub mod credentials;
pub mod folder;
pub mod fs;
pub mod log;
pub mod os;
pub mod platform;
pub mod protocol;
pub mod remote;
pub mod serve;
pub mod sync;
