//! The chunk-window bookkeeping for output rails on a live stream.
//!
//! NeMo's rolling buffer: chunks are counted as they arrive; once the buffer
//! holds `chunk_size` chunks they are checked together (the oldest of them
//! being up to `context_size` chunks already checked as context), and the
//! buffer keeps its last `context_size` chunks. Whatever is left unchecked is
//! checked at the end. Because chunks join with no separator, a window is a
//! contiguous slice of the answer: only chunk end offsets are kept, and no
//! window is ever re-joined.

use std::ops::Range;

/// Tracks chunk boundaries and says when a window is due.
#[derive(Debug, Clone)]
pub struct Windows {
    chunk_size: usize,
    context_size: usize,
    /// End byte offset of every chunk so far.
    ends: Vec<usize>,
    /// Index of the first chunk in the buffer.
    start: usize,
    /// Chunks already covered by a checked window.
    checked: usize,
}

/// A window to check: the byte range of the answer, and the chunks in it
/// that no earlier window covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub bytes: Range<usize>,
    pub new_chunks: Range<usize>,
}

impl Windows {
    pub fn new(chunk_size: usize, context_size: usize) -> Self {
        Windows {
            chunk_size: chunk_size.max(1),
            context_size,
            ends: Vec::new(),
            start: 0,
            checked: 0,
        }
    }

    fn offset(&self, chunk: usize) -> usize {
        if chunk == 0 { 0 } else { self.ends[chunk - 1] }
    }

    fn take(&mut self) -> Window {
        let count = self.ends.len();
        let window = Window {
            bytes: self.offset(self.start)..self.offset(count),
            new_chunks: self.checked..count,
        };
        self.checked = count;
        // Keep the last `context_size` chunks, but always move forward.
        self.start = count.saturating_sub(self.context_size).max(self.start + 1);
        window
    }

    /// Records a chunk ending at byte `end`; returns the window to check when
    /// the buffer is full.
    pub fn push(&mut self, end: usize) -> Option<Window> {
        self.ends.push(end);
        (self.ends.len() - self.start >= self.chunk_size).then(|| self.take())
    }

    /// The last window at the end of the stream, if any chunk is unchecked.
    pub fn finish(&mut self) -> Option<Window> {
        (self.ends.len() > self.checked).then(|| self.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: usize, size: usize, context: usize) -> Vec<Window> {
        let mut w = Windows::new(size, context);
        let mut out: Vec<Window> = (1..=chunks).filter_map(|i| w.push(i)).collect();
        out.extend(w.finish());
        out
    }

    #[test]
    fn seventeen_chunks_of_four_with_two_context_make_eight_windows() {
        let windows = run(17, 4, 2);
        assert_eq!(windows.len(), 8);
        assert_eq!(windows[0].bytes, 0..4);
        assert_eq!(windows[1].bytes, 2..6);
        assert_eq!(windows[1].new_chunks, 4..6);
        assert_eq!(windows[7].bytes, 14..17);
        assert_eq!(windows[7].new_chunks, 16..17);
    }

    #[test]
    fn every_chunk_is_new_in_exactly_one_window() {
        for (n, size, ctx) in [(0, 3, 1), (1, 200, 50), (10, 1, 0), (10, 2, 5), (33, 5, 0)] {
            let windows = run(n, size, ctx);
            let covered: Vec<usize> = windows.iter().flat_map(|w| w.new_chunks.clone()).collect();
            assert_eq!(
                covered,
                (0..n).collect::<Vec<_>>(),
                "n={n} size={size} ctx={ctx}"
            );
        }
    }
}
