use std::collections::VecDeque;

use super::OUTPUT_QUEUE_BYTES;

#[derive(Debug)]
pub struct TailBuffer {
    data: VecDeque<u8>,
    max: usize,
    truncated: bool,
}

impl TailBuffer {
    pub fn new(max: usize) -> Self {
        TailBuffer {
            data: VecDeque::new(),
            max,
            truncated: false,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        let kept = &bytes[bytes.len().saturating_sub(self.max)..];
        let overflow = (self.data.len() + kept.len()).saturating_sub(self.max);
        self.truncated |= overflow > 0 || kept.len() < bytes.len();
        self.data.drain(..overflow);
        // Grow by doubling, but never past `max`: memory stays within the bound.
        let needed = self.data.len() + kept.len();
        if needed > self.data.capacity() {
            let target = needed.max(self.data.capacity() * 2).max(4096).min(self.max);
            self.data.reserve_exact(target - self.data.len());
        }
        self.data.extend(kept);
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Decoded lossily; once older bytes were dropped, a character cut at the front goes too.
    pub fn into_string(self) -> String {
        let mut bytes = Vec::from(self.data);
        if self.truncated {
            let cut = bytes
                .iter()
                .take(3)
                .take_while(|&&b| b & 0xC0 == 0x80)
                .count();
            bytes.drain(..cut);
        }
        String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

/// Output bytes handed to a receiver and not delivered yet; ready at `OUTPUT_QUEUE_BYTES` or less.
#[derive(Default)]
pub struct Queued(tokio::sync::watch::Sender<usize>);

impl Queued {
    pub fn add(&self, len: usize) {
        self.0.send_modify(|bytes| *bytes += len);
    }

    pub fn delivered(&self, len: usize) {
        self.0.send_modify(|bytes| *bytes -= len);
    }

    pub fn is_ready(&self) -> bool {
        *self.0.borrow() <= OUTPUT_QUEUE_BYTES
    }

    pub async fn ready(&self) {
        let mut queued = self.0.subscribe();
        let _ = queued.wait_for(|&bytes| bytes <= OUTPUT_QUEUE_BYTES).await;
    }
}

/// Holds back an unfinished character, so that pieces join to exactly the whole's lossy decoding.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    pub fn decode(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        // A character not finished yet: at most three bytes that `from_utf8` calls incomplete.
        let tail = &self.pending[self.pending.len().saturating_sub(3)..];
        let last = tail.utf8_chunks().last().map_or(tail, |c| c.invalid());
        let keep = match std::str::from_utf8(last) {
            Err(e) if e.error_len().is_none() => last.len(),
            _ => 0,
        };
        let rest = self.pending.split_off(self.pending.len() - keep);
        let done = std::mem::replace(&mut self.pending, rest);
        String::from_utf8(done)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    pub fn finish(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(max: usize, pieces: &[&[u8]]) -> (String, bool) {
        let mut t = TailBuffer::new(max);
        for p in pieces {
            t.push(p);
        }
        let truncated = t.truncated();
        (t.into_string(), truncated)
    }

    #[test]
    fn keeps_everything_under_the_limit() {
        assert_eq!(tail(10, &[b"abc", b"def"]), ("abcdef".into(), false));
        assert_eq!(tail(6, &[b"abc", b"def"]), ("abcdef".into(), false));
    }

    #[test]
    fn keeps_the_most_recent_bytes() {
        assert_eq!(tail(4, &[b"abc", b"def"]), ("cdef".into(), true));
        assert_eq!(tail(4, &[b"abcdefgh"]), ("efgh".into(), true));
        assert_eq!(tail(4, &[b"ab", b"cdefghij", b"k"]), ("hijk".into(), true));
        assert_eq!(
            tail(5, &[b"12", b"34", b"56", b"78", b"9"]),
            ("56789".into(), true)
        );
    }

    #[test]
    fn zero_keeps_nothing() {
        assert_eq!(tail(0, &[b"abc"]), (String::new(), true));
        assert_eq!(tail(0, &[]), (String::new(), false));
    }

    #[test]
    fn matches_a_plain_tail_for_many_piece_sizes() {
        let stream: Vec<u8> = (0..5000u32).map(|i| b'a' + (i * 7 % 26) as u8).collect();
        for max in [1, 7, 64, 1000, 4999, 5000, 6000] {
            for piece in [1, 3, 64, 999, 5000] {
                let mut t = TailBuffer::new(max);
                stream.chunks(piece).for_each(|c| t.push(c));
                assert!(t.data.len() <= max, "memory stays within max");
                let keep = stream.len().min(max);
                assert_eq!(
                    t.into_string().as_bytes(),
                    &stream[stream.len() - keep..],
                    "max {max} piece {piece}"
                );
            }
        }
    }

    #[test]
    fn a_cut_character_at_the_front_is_dropped() {
        let (s, truncated) = tail(5, &["é".as_bytes(), "€abc".as_bytes()]);
        assert!(truncated);
        assert_eq!(s, "abc"); // the last 5 bytes are 0x82 0xAC a b c: a cut "€"
    }

    #[test]
    fn stream_never_splits_a_character() {
        let text = "a€𝄞b".repeat(50);
        let bytes = text.as_bytes();
        for size in 1..8 {
            let mut dec = Utf8Stream::default();
            let mut out = String::new();
            for piece in bytes.chunks(size) {
                let s = dec.decode(piece);
                out.push_str(&s);
            }
            out.push_str(&dec.finish());
            assert_eq!(out, text, "piece size {size}");
        }
    }

    #[test]
    fn stream_replaces_invalid_bytes_like_from_utf8_lossy() {
        let bytes = b"ok\xffthen\xe2\x82 and \xf0\x9d\x84";
        let expected = String::from_utf8_lossy(bytes).into_owned();
        for size in 1..6 {
            let mut dec = Utf8Stream::default();
            let mut out = String::new();
            for piece in bytes.chunks(size) {
                out.push_str(&dec.decode(piece));
            }
            out.push_str(&dec.finish());
            assert_eq!(out, expected, "piece size {size}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_in_any_pieces_decode_as_the_whole(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            cuts in proptest::collection::vec(1usize..6, 1..16),
        ) {
            // Weighted toward the bytes of multi-byte characters.
            let bytes: Vec<u8> = bytes.iter().map(|b| if b % 3 == 0 { 0x80 | (b & 0x3F) } else if b % 3 == 1 { 0xC0 | (b & 0x3F) } else { *b }).collect();
            let mut dec = Utf8Stream::default();
            let mut out = String::new();
            let mut rest = &bytes[..];
            for cut in cuts.iter().cycle() {
                if rest.is_empty() { break; }
                let (piece, tail) = rest.split_at((*cut).min(rest.len()));
                out.push_str(&dec.decode(piece));
                rest = tail;
            }
            out.push_str(&dec.finish());
            proptest::prop_assert_eq!(out, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
}
