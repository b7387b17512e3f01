//! The platform's JSON bodies (what the dev platform parses and the client reads) never panic the
//! parsers, whatever arrives.
#![no_main]
use hyperclay::protocol::{Change, CreateNodeRequest, ErrorBody, MoveRequest, NodesResponse, PutContentRequest, RenameRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<CreateNodeRequest>(data);
    let _ = serde_json::from_slice::<PutContentRequest>(data);
    let _ = serde_json::from_slice::<RenameRequest>(data);
    let _ = serde_json::from_slice::<MoveRequest>(data);
    let _ = serde_json::from_slice::<NodesResponse>(data);
    let _ = serde_json::from_slice::<Change>(data);
    if let Ok(e) = serde_json::from_slice::<ErrorBody>(data) {
        let _ = e.text();
    }
});
