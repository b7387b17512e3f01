//! A Server-Sent Events parser: bytes in, frames out, no I/O, so it can be fuzzed. Follows the
//! WHATWG event-stream rules for `data`, `id`, `event` and comments; lines end in `\n` or `\r\n`
//! (a lone `\r` is not treated as a line end: no platform sends it). A frame larger than
//! `MAX_FRAME` is dropped (its bytes are not kept; the parser skips to the frame's end and counts
//! it), so a hostile server cannot grow memory without bound, and the stream goes on: the
//! consumer compares a listing for what the dropped frame said.

/// The largest frame kept: a site's change carries its HTML inline, and sites larger than this
/// once JSON-escaped come down by a fetch instead (the consumer resyncs on a dropped frame).
pub const MAX_FRAME: usize = 32 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseFrame {
    /// The `id:` of this frame, if it had one.
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseParser {
    pending: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    id: Option<String>,
    event: Option<String>,
    /// Skipping the rest of a frame that grew over MAX_FRAME.
    discarding: bool,
    /// Frames dropped for their size since the last `take_dropped`.
    dropped: usize,
}

impl SseParser {
    /// Feeds a chunk; answers the frames it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseFrame> {
        let mut frames = Vec::new();
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let (line_part, after) = rest.split_at(end);
            rest = &after[1..];
            let line = if self.pending.is_empty() {
                line_part.to_vec()
            } else {
                let mut l = std::mem::take(&mut self.pending);
                l.extend_from_slice(line_part);
                l
            };
            let line = line.strip_suffix(b"\r").unwrap_or(&line);
            if self.discarding {
                if line.is_empty() {
                    self.discarding = false;
                    self.id = None;
                    self.event = None;
                }
                continue;
            }
            if let Some(frame) = self.line(line) {
                frames.push(frame);
            }
            if self.data.len() > MAX_FRAME {
                self.drop_frame();
            }
        }
        if self.discarding {
            // The rest of an overlong line: not kept.
            self.pending.clear();
        } else {
            self.pending.extend_from_slice(rest);
            if self.pending.len() + self.data.len() > MAX_FRAME {
                self.pending.clear();
                self.drop_frame();
            }
        }
        frames
    }

    fn drop_frame(&mut self) {
        self.data = Vec::new();
        self.has_data = false;
        self.discarding = true;
        self.dropped += 1;
    }

    /// How many frames were dropped for their size since the last call.
    pub fn take_dropped(&mut self) -> usize {
        std::mem::take(&mut self.dropped)
    }

    fn line(&mut self, line: &[u8]) -> Option<SseFrame> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            return None;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"id" if !value.contains(&0) => {
                self.id = Some(String::from_utf8_lossy(value).into_owned())
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseFrame> {
        let id = self.id.take();
        let event = self.event.take();
        if !self.has_data {
            return None;
        }
        self.has_data = false;
        let data = String::from_utf8_lossy(&std::mem::take(&mut self.data)).into_owned();
        Some(SseFrame { id, event, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_chunks_and_crlf() {
        let mut p = SseParser::default();
        assert!(p.feed(b"id: 4\r\nda").is_empty());
        let frames = p.feed(b"ta: {\"a\":1}\r\n\r\n: ping\n\ndata: x\ndata: y\n\n");
        assert_eq!(
            frames,
            vec![
                SseFrame {
                    id: Some("4".into()),
                    event: None,
                    data: "{\"a\":1}".into()
                },
                SseFrame {
                    id: None,
                    event: None,
                    data: "x\ny".into()
                },
            ]
        );
    }

    #[test]
    fn a_comment_alone_dispatches_nothing() {
        let mut p = SseParser::default();
        assert!(p.feed(b": ping\n\n").is_empty());
    }

    #[test]
    fn an_oversized_frame_is_dropped_and_the_stream_goes_on() {
        let mut p = SseParser::default();
        let chunk = vec![b'x'; 1024 * 1024];
        assert!(p.feed(b"data: ").is_empty());
        for _ in 0..40 {
            assert!(p.feed(&chunk).is_empty());
        }
        assert!(p.pending.capacity() <= 2 * MAX_FRAME + chunk.len());
        assert!(p.feed(b"\nid: 9\n\ndata: next\n\n")[0].data == "next");
        assert_eq!(p.take_dropped(), 1);
        assert_eq!(p.take_dropped(), 0);
    }
}
