//! The name rules never panic, and what they accept is safe as one path segment.
#![no_main]
use hyperclay::protocol::{names, NodeKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else { return };
    for kind in [NodeKind::Site, NodeKind::Upload, NodeKind::Folder] {
        if names::check(kind, name).is_ok() {
            assert!(!name.is_empty() && name.len() <= 255);
            assert!(!name.contains('/') && !name.contains('\\') && !name.contains('\0'));
            assert!(name != "." && name != "..");
            if kind == NodeKind::Site {
                assert_eq!(NodeKind::of_file_name(name), NodeKind::Site);
            }
        }
    }
});
