//! An incremental Server-Sent-Events parser (the WHATWG `text/event-stream` rules).
//!
//! Small and our own rather than a dependency because every adapter and the fuzzer
//! drive it directly with arbitrary byte splits: feed bytes as they arrive, get whole
//! events out. Handles `\n`, `\r\n` and `\r` line ends, multi-line `data:`, comments
//! (`: ping`), a BOM, and UTF-8 sequences split across reads.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, or "" (which the spec calls `message`).
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The `id:` field, if any.
    pub id: Option<String>,
}

/// Incremental parser state.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
    id: Option<String>,
    started: bool,
    last_was_cr: bool,
    max_line: usize,
}

/// Lines longer than this are an error (a provider never sends one; a broken peer might).
pub const DEFAULT_MAX_LINE: usize = 16 * 1024 * 1024;

/// Why the byte stream is not valid SSE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line was longer than the limit.
    #[error("an SSE line is longer than {0} bytes")]
    LineTooLong(usize),
    /// A line is not UTF-8.
    #[error("an SSE line is not valid UTF-8")]
    NotUtf8,
}

impl SseParser {
    /// A parser with the default line limit.
    pub fn new() -> Self {
        SseParser {
            max_line: DEFAULT_MAX_LINE,
            ..Default::default()
        }
    }

    /// Feed bytes; returns the events completed by them.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut out = Vec::new();
        for &b in bytes {
            match b {
                b'\n' if self.last_was_cr => {
                    self.last_was_cr = false;
                }
                b'\n' | b'\r' => {
                    self.last_was_cr = b == b'\r';
                    let line = std::mem::take(&mut self.buf);
                    self.line(&line, &mut out)?;
                }
                _ => {
                    self.last_was_cr = false;
                    if self.buf.len() >= self.max_line {
                        return Err(SseError::LineTooLong(self.max_line));
                    }
                    self.buf.push(b);
                }
            }
        }
        Ok(out)
    }

    /// True when a partial line or event is buffered (the stream ended mid-event).
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || self.has_data || !self.event.is_empty()
    }

    /// At end of input: the spec discards an event not terminated by a blank line.
    /// We return it instead when it has data, so callers can decide (a provider that
    /// closes right after its last `data:` line without the blank line still counts).
    pub fn finish(&mut self) -> Result<Option<SseEvent>, SseError> {
        if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            let mut out = Vec::new();
            self.line(&line, &mut out)?;
            if let Some(ev) = out.pop() {
                return Ok(Some(ev));
            }
        }
        if self.has_data {
            return Ok(Some(self.take_event()));
        }
        Ok(None)
    }

    fn line(&mut self, raw: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut line = std::str::from_utf8(raw).map_err(|_| SseError::NotUtf8)?;
        if !self.started {
            self.started = true;
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        if line.is_empty() {
            if self.has_data {
                out.push(self.take_event());
            } else {
                self.event.clear();
            }
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {}
        }
        Ok(())
    }

    fn take_event(&mut self) -> SseEvent {
        self.has_data = false;
        SseEvent {
            event: std::mem::take(&mut self.event),
            data: std::mem::take(&mut self.data),
            id: self.id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut v = p.feed(input).unwrap();
        v.extend(p.finish().unwrap());
        v
    }

    #[test]
    fn parses_named_events_and_comments() {
        let evs = all(b": ping\n\nevent: message_start\ndata: {\"a\":1}\n\ndata: x\ndata: y\n\n");
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].event, "message_start");
        assert_eq!(evs[0].data, "{\"a\":1}");
        assert_eq!(evs[1].data, "x\ny");
    }

    #[test]
    fn any_split_gives_the_same_events() {
        let input =
            "\u{feff}data: héllo 世界\r\n\r\nevent: e\rdata:z\r\rdata: [DONE]\n\n".as_bytes();
        let whole = all(input);
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0].data, "héllo 世界");
        for cut in 0..input.len() {
            let mut p = SseParser::new();
            let mut v = p.feed(&input[..cut]).unwrap();
            v.extend(p.feed(&input[cut..]).unwrap());
            v.extend(p.finish().unwrap());
            assert_eq!(v, whole, "split at {cut}");
        }
    }

    #[test]
    fn unterminated_event_is_returned_by_finish() {
        let mut p = SseParser::new();
        assert!(p.feed(b"data: {\"x\":1}").unwrap().is_empty());
        assert!(p.has_partial());
        assert_eq!(p.finish().unwrap().unwrap().data, "{\"x\":1}");
    }
}
