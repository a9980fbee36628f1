//! Server-sent events, read as the WHATWG spec reads them (lines ending in
//! `\n`, `\r\n` or `\r`; `data:` fields joined by `\n`; comments and other
//! fields skipped; a blank line ends an event), in time linear in the input
//! and with a cap on one event's size: a line that never ends cannot grow
//! memory or burn CPU without bound.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

/// The default cap on one event (its pending line plus its data).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 4 << 20;

/// Why an event stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an SSE event exceeds {0} bytes (the limit, --max-sse-event-bytes)")]
    TooLarge(usize),
    #[error("the stream broke off: {0}")]
    Transport(String),
}

/// Splits bytes into events' `data`.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    /// Where the search for the next line end resumes.
    scanned: usize,
    /// The data lines of the event being read.
    data: Vec<u8>,
    has_data: bool,
    /// The last line ended in `\r`: a `\n` right after it belongs to it.
    after_cr: bool,
    max: usize,
}

impl Decoder {
    pub fn new(max_event_bytes: usize) -> Self {
        Decoder {
            buf: BytesMut::new(),
            scanned: 0,
            data: Vec::new(),
            has_data: false,
            after_cr: false,
            max: max_event_bytes,
        }
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event's data, if one is complete.
    pub fn next_event(&mut self) -> Result<Option<String>, SseError> {
        loop {
            if self.after_cr && !self.buf.is_empty() {
                if self.buf[0] == b'\n' {
                    self.buf.advance(1);
                }
                self.after_cr = false;
            }
            let Some(end) = self.buf[self.scanned..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
                .map(|i| self.scanned + i)
            else {
                self.scanned = self.buf.len();
                if self.buf.len() + self.data.len() > self.max {
                    return Err(SseError::TooLarge(self.max));
                }
                return Ok(None);
            };
            let line = self.buf.split_to(end + 1);
            self.scanned = 0;
            self.after_cr = line[end] == b'\r';
            if let Some(event) = self.line(&line[..end])? {
                return Ok(Some(event));
            }
        }
    }

    /// Handles one line; returns the event a blank line completes.
    fn line(&mut self, line: &[u8]) -> Result<Option<String>, SseError> {
        if line.is_empty() {
            if !self.has_data {
                return Ok(None);
            }
            self.has_data = false;
            let data = std::mem::take(&mut self.data);
            return Ok(Some(String::from_utf8_lossy(&data).into_owned()));
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(0) => return Ok(None), // a comment
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &[][..]),
        };
        if field == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
            if self.data.len() > self.max {
                return Err(SseError::TooLarge(self.max));
            }
        }
        Ok(None)
    }
}

/// The events of a byte stream.
pub struct Events<S> {
    inner: S,
    decoder: Decoder,
    done: bool,
}

impl<S> Events<S> {
    pub fn new(inner: S, max_event_bytes: usize) -> Self {
        Events {
            inner,
            decoder: Decoder::new(max_event_bytes),
            done: false,
        }
    }
}

impl<S, E> Stream for Events<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<String, SseError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.decoder.next_event() {
                Ok(Some(event)) => return Poll::Ready(Some(Ok(event))),
                Ok(None) => {}
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            match std::task::ready!(this.inner.poll_next_unpin(cx)) {
                Some(Ok(bytes)) => this.decoder.push(&bytes),
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(SseError::Transport(e.to_string()))));
                }
                // An event left without its blank line is dropped, as the
                // spec says.
                None => {
                    this.done = true;
                    return Poll::Ready(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(parts: &[&str], max: usize) -> Vec<Result<String, SseError>> {
        let mut d = Decoder::new(max);
        let mut out = Vec::new();
        for p in parts {
            d.push(p.as_bytes());
            loop {
                match d.next_event() {
                    Ok(Some(e)) => out.push(Ok(e)),
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e));
                        return out;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn events_split_anywhere_with_any_line_end_are_read_whole() {
        let text = ": keep-alive\n\ndata: {\"a\":1}\n\nevent: x\ndata: one\ndata:two\r\n\r\ndata: last\r\rid: 7\n\n";
        let whole: Vec<String> = events(&[text], 1024)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(whole, ["{\"a\":1}", "one\ntwo", "last"]);
        // The same bytes, one at a time.
        let bytes: Vec<String> = text.chars().map(|c| c.to_string()).collect();
        let parts: Vec<&str> = bytes.iter().map(String::as_str).collect();
        let split: Vec<String> = events(&parts, 1024)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(split, whole);
    }

    #[test]
    fn an_event_over_the_cap_fails_however_it_arrives() {
        let line = format!("data: {}", "x".repeat(5000));
        assert_eq!(events(&[&line], 4096), [Err(SseError::TooLarge(4096))]);
        let lines = "data: aaaa\n".repeat(2000);
        assert_eq!(events(&[&lines], 4096), [Err(SseError::TooLarge(4096))]);
    }

    #[test]
    fn a_long_line_in_small_pieces_is_scanned_once() {
        // 8 MiB in 8 KiB pieces: linear, so this is quick even in debug builds.
        let mut d = Decoder::new(16 << 20);
        d.push(b"data: ");
        let piece = vec![b'y'; 8 << 10];
        for _ in 0..1024 {
            d.push(&piece);
            assert_eq!(d.next_event(), Ok(None));
        }
        d.push(b"\n\n");
        assert_eq!(d.next_event().unwrap().map(|e| e.len()), Some(8 << 20));
    }
}
