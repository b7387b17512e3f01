//! The event-stream parser takes any bytes in any chunking without panicking, and the frames it
//! returns do not depend on how the bytes were split.
#![no_main]
use hyperclay::protocol::Event;
use hyperclay::remote::sse::SseParser;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else { return };
    let mut whole = SseParser::default();
    let a = whole.feed(bytes);
    let cut = (split as usize).min(bytes.len());
    let mut parts = SseParser::default();
    let b1 = parts.feed(&bytes[..cut]);
    let b2 = parts.feed(&bytes[cut..]);
    if let (Ok(a), Ok(mut b1), Ok(b2)) = (a, b1, b2) {
        b1.extend(b2);
        assert_eq!(a, b1);
        for frame in a {
            let _ = serde_json::from_str::<Event>(&frame.data);
        }
    }
});
