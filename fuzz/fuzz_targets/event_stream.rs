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
    let mut b = parts.feed(&bytes[..cut]);
    b.extend(parts.feed(&bytes[cut..]));
    assert_eq!(a, b);
    assert_eq!(whole.take_dropped(), parts.take_dropped());
    for frame in a {
        let _ = serde_json::from_str::<Event>(&frame.data);
    }
});
