//! The local server's path decoding never lets a `..`, a separator or a dotfile through.
#![no_main]
use hyperclay::serve::resolve::segments;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else { return };
    if let Ok(segs) = segments(path) {
        for s in segs {
            assert!(s != ".." && s != "." && !s.is_empty());
            assert!(!s.contains('/') && !s.contains('\\') && !s.contains('\0'));
            assert!(!s.starts_with('.'));
        }
    }
});
