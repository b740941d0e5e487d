//! A validating JSON scanner that decodes nothing it is not asked for.
//!
//! The whole document is checked (grammar, escapes, UTF-8, nesting at any depth, trailing
//! characters), but values are only located, as byte spans; the caller decodes the few it
//! needs. Strings are searched eight bytes at a time for the bytes that end or escape them
//! (and for non-ASCII bytes, whose UTF-8 is then checked), which is what makes skipping
//! 100,000 chunks cheap.

use std::borrow::Cow;

/// Where and why a document is not JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    /// Byte offset of the problem.
    pub at: usize,
    pub what: &'static str,
}

type Result<T> = std::result::Result<T, ScanError>;

/// What a value is, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Number,
    Bool,
    Null,
    Array,
    Object,
}

/// A located value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
    /// For strings: whether it holds a backslash escape.
    pub escaped: bool,
}

pub struct Scanner<'a> {
    b: &'a [u8],
    pub i: usize,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// A mask with the high bit set in each byte of `w` equal to `byte` (exact for the lowest).
#[inline]
fn bytes_equal(w: u64, byte: u8) -> u64 {
    let x = w ^ (ONES * byte as u64);
    x.wrapping_sub(ONES) & !x & HIGHS
}

impl<'a> Scanner<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Scanner { b: bytes, i: 0 }
    }

    fn fail<T>(&self, what: &'static str) -> Result<T> {
        Err(ScanError { at: self.i, what })
    }

    #[inline]
    pub fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    #[inline]
    pub fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    pub fn at_end(&self) -> bool {
        self.i >= self.b.len()
    }

    /// Consume `byte` (after whitespace) or fail with `what`.
    pub fn expect(&mut self, byte: u8, what: &'static str) -> Result<()> {
        self.ws();
        if self.peek() == Some(byte) {
            self.i += 1;
            Ok(())
        } else if self.at_end() {
            self.fail("EOF while parsing a value")
        } else {
            self.fail(what)
        }
    }

    /// After `{` or `,` in an object: the next key, or `None` at the closing `}` (only valid
    /// right after `{`).
    pub fn key(&mut self, first: bool) -> Result<Option<Span>> {
        self.ws();
        match self.peek() {
            Some(b'"') => Ok(Some(self.string()?)),
            Some(b'}') if first => {
                self.i += 1;
                Ok(None)
            }
            Some(b'}') => self.fail("trailing comma"),
            None => self.fail("EOF while parsing an object"),
            _ => self.fail("key must be a string"),
        }
    }

    /// After a member or element: `true` for `,`, `false` for the closing `close`.
    pub fn next(&mut self, close: u8) -> Result<bool> {
        self.ws();
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                Ok(true)
            }
            Some(c) if c == close => {
                self.i += 1;
                Ok(false)
            }
            None => self.fail(if close == b'}' {
                "EOF while parsing an object"
            } else {
                "EOF while parsing a list"
            }),
            _ => self.fail(if close == b'}' {
                "expected `,` or `}`"
            } else {
                "expected `,` or `]`"
            }),
        }
    }

    /// The string starting at the current `"`.
    #[inline]
    pub fn string(&mut self) -> Result<Span> {
        let start = self.i;
        self.i += 1;
        let mut escaped = false;
        let mut non_ascii = false;
        loop {
            // Eight bytes at a time, to the next quote, backslash, control or non-ASCII byte.
            while let Some(chunk) = self.b.get(self.i..self.i + 8) {
                let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
                let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
                let hits = bytes_equal(w, b'"') | bytes_equal(w, b'\\') | control | (w & HIGHS);
                if hits != 0 {
                    self.i += (hits.trailing_zeros() / 8) as usize;
                    break;
                }
                self.i += 8;
            }
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    if non_ascii {
                        if let Err(e) = std::str::from_utf8(&self.b[start..self.i]) {
                            return Err(ScanError {
                                at: start + e.valid_up_to(),
                                what: "invalid UTF-8",
                            });
                        }
                    }
                    return Ok(Span {
                        start,
                        end: self.i,
                        kind: Kind::String,
                        escaped,
                    });
                }
                Some(b'\\') => {
                    escaped = true;
                    self.i += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            self.i += 1;
                            for _ in 0..4 {
                                match self.peek() {
                                    Some(c) if c.is_ascii_hexdigit() => self.i += 1,
                                    None => return self.fail("EOF while parsing a string"),
                                    _ => return self.fail("invalid \\u escape"),
                                }
                            }
                        }
                        None => return self.fail("EOF while parsing a string"),
                        _ => return self.fail("invalid escape"),
                    }
                }
                Some(c) if c < 0x20 => {
                    return self
                        .fail("control character (\\u0000-\\u001F) found while parsing a string")
                }
                Some(c) => {
                    non_ascii |= c >= 0x80;
                    self.i += 1;
                }
                None => return self.fail("EOF while parsing a string"),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let from = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - from
    }

    fn number(&mut self) -> Result<Span> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return self.fail("invalid number"),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return self.fail("invalid number");
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return self.fail("invalid number");
            }
        }
        Ok(Span {
            start,
            end: self.i,
            kind: Kind::Number,
            escaped: false,
        })
    }

    fn literal(&mut self, word: &'static [u8], kind: Kind) -> Result<Span> {
        let start = self.i;
        for &expected in word {
            match self.peek() {
                Some(c) if c == expected => self.i += 1,
                None => return self.fail("EOF while parsing a value"),
                _ => return self.fail("expected value"),
            }
        }
        Ok(Span {
            start,
            end: self.i,
            kind,
            escaped: false,
        })
    }

    /// Skip (and check) the value that starts here, however deeply nested, without
    /// recursion; return where it was.
    pub fn value(&mut self) -> Result<Span> {
        self.ws();
        let start = self.i;
        let kind = match self.peek() {
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            _ => return self.value_leaf(),
        };
        // Open containers, innermost last: `true` for an object.
        let mut open: Vec<bool> = Vec::new();
        'value: loop {
            // A value starts here.
            self.ws();
            match self.peek() {
                Some(b'{') => {
                    self.i += 1;
                    if self.key(true)?.is_some() {
                        self.expect(b':', "expected `:`")?;
                        open.push(true);
                        continue 'value;
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                    } else {
                        open.push(false);
                        continue 'value;
                    }
                }
                _ => {
                    self.value_leaf()?;
                }
            }
            // A value is complete: close containers, or go on to the next member.
            loop {
                let Some(&is_object) = open.last() else {
                    return Ok(Span {
                        start,
                        end: self.i,
                        kind,
                        escaped: false,
                    });
                };
                if self.next(if is_object { b'}' } else { b']' })? {
                    if is_object {
                        self.key(false)?;
                        self.expect(b':', "expected `:`")?;
                    } else {
                        self.ws();
                        if self.peek() == Some(b']') {
                            return self.fail("trailing comma");
                        }
                    }
                    continue 'value;
                }
                open.pop();
            }
        }
    }

    /// A value that is not a container.
    fn value_leaf(&mut self) -> Result<Span> {
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true", Kind::Bool),
            Some(b'f') => self.literal(b"false", Kind::Bool),
            Some(b'n') => self.literal(b"null", Kind::Null),
            Some(b']' | b'}') => self.fail("expected value"),
            None => self.fail("EOF while parsing a value"),
            _ => self.fail("expected value"),
        }
    }

    /// The raw text of a span (strings were checked to be UTF-8; the rest is ASCII).
    pub fn raw(&self, span: Span) -> &'a str {
        std::str::from_utf8(&self.b[span.start..span.end]).unwrap_or_default()
    }

    /// Whether the string at `span` is exactly `word` (escapes decoded).
    pub fn string_is(&self, span: Span, word: &str) -> bool {
        if span.escaped {
            self.string_value(span) == word
        } else {
            &self.b[span.start + 1..span.end - 1] == word.as_bytes()
        }
    }

    /// The decoded text of the string at `span` (borrowed when it has no escapes). A lone
    /// surrogate escape, which Rust strings cannot hold, becomes U+FFFD, as it would when
    /// Node encodes it for a child process.
    pub fn string_value(&self, span: Span) -> Cow<'a, str> {
        let inner = std::str::from_utf8(&self.b[span.start + 1..span.end - 1]).unwrap_or_default();
        if !span.escaped {
            return Cow::Borrowed(inner);
        }
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        let hex = |chars: &mut std::str::Chars| -> u32 {
            (0..4).fold(0, |acc, _| {
                acc * 16 + chars.next().and_then(|c| c.to_digit(16)).unwrap_or(0)
            })
        };
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('b') => out.push('\u{8}'),
                Some('f') => out.push('\u{c}'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some('u') => {
                    let unit = hex(&mut chars);
                    if (0xD800..0xDC00).contains(&unit) {
                        let mut ahead = chars.clone();
                        if ahead.next() == Some('\\') && ahead.next() == Some('u') {
                            let low = hex(&mut ahead);
                            if (0xDC00..0xE000).contains(&low) {
                                let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                                out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
                                chars = ahead;
                                continue;
                            }
                        }
                    }
                    out.push(char::from_u32(unit).unwrap_or('\u{FFFD}'));
                }
                Some(other) => out.push(other),
                None => {}
            }
        }
        Cow::Owned(out)
    }

    /// The value of the number at `span`, as JavaScript reads it.
    pub fn number_value(&self, span: Span) -> f64 {
        let digits = &self.b[span.start..span.end];
        let (negative, magnitude) = match digits.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, digits),
        };
        // Chunk ids are small integers: read those directly, exactly (f64 holds every
        // integer of up to 15 digits), and leave the general case to the float parser.
        if magnitude.len() <= 15 && magnitude.iter().all(u8::is_ascii_digit) {
            let n = magnitude
                .iter()
                .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')) as f64;
            return if negative { -n } else { n };
        }
        self.raw(span).parse().unwrap_or(f64::NAN)
    }
}

/// 1-based line and column (in characters) of byte `at` in `text`.
pub fn line_column(text: &[u8], at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = &text[..at];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let column = 1 + String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count();
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Span> {
        let mut s = Scanner::new(text.as_bytes());
        let span = s.value()?;
        s.ws();
        if !s.at_end() {
            return s.fail("trailing characters");
        }
        Ok(span)
    }

    #[test]
    fn agrees_with_serde_json_on_valid_and_invalid_documents() {
        let cases = [
            "0",
            "-0",
            "1.5e10",
            "-12.75E-3",
            "1.",
            ".5",
            "01",
            "-",
            "1e",
            "1e+",
            "+1",
            "true",
            "tru",
            "false",
            "nul",
            "null",
            "\"\"",
            "\"a\\\"b\"",
            "\"\\u00e9\"",
            "\"\\x\"",
            "\"\\u12\"",
            "\"tab\there\"",
            "\"unterminated",
            "[]",
            "[1,2]",
            "[1,]",
            "[,1]",
            "[1 2]",
            "{}",
            "{\"a\":1}",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{a:1}",
            "{\"a\":}",
            "[{\"a\":[{}, [], {\"b\": [null]}]}]",
            "[[[[]]]]",
            "[[[[]]]",
            "{\"a\":{\"b\":{\"c\":[1,2,{\"d\":\"e\"}]}}}",
            "  [ 1 , 2 ]  ",
            "[1] x",
            "",
            "   ",
            "{\"a\":1 \"b\":2}",
            "[\"a\",\"b\",]",
            "{\"a\":[1,2,],\"b\":1}",
            "\"0123456789abcdef\\n0123456789\"",
            "\"long string without escapes that spans several words of eight bytes\"",
        ];
        for text in cases {
            let ours = check(text).is_ok();
            let theirs = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
            assert_eq!(ours, theirs, "{text:?}: ours {:?}", check(text));
        }
    }

    #[test]
    fn spans_locate_values() {
        let text = r#"{"a": [1, {"b": "x"}], "c": "d\"e"}"#;
        let mut s = Scanner::new(text.as_bytes());
        s.expect(b'{', "expected `{`").unwrap();
        let key = s.key(true).unwrap().unwrap();
        assert!(s.string_is(key, "a"));
        s.expect(b':', "").unwrap();
        let v = s.value().unwrap();
        assert_eq!((s.raw(v), v.kind), (r#"[1, {"b": "x"}]"#, Kind::Array));
        assert!(s.next(b'}').unwrap());
        let key = s.key(false).unwrap().unwrap();
        s.expect(b':', "").unwrap();
        let v = s.value().unwrap();
        assert!(s.string_is(key, "c"));
        assert_eq!(s.string_value(v), "d\"e");
        assert!(!s.next(b'}').unwrap());
    }

    #[test]
    fn numbers_read_like_javascript() {
        for text in [
            "0",
            "-0",
            "7",
            "-42",
            "123456789012345",
            "1234567890123456789",
            "1.5",
            "-2.5e3",
            "1E2",
        ] {
            let mut s = Scanner::new(text.as_bytes());
            let span = s.value().unwrap();
            assert_eq!(s.number_value(span), text.parse::<f64>().unwrap(), "{text}");
        }
    }

    #[test]
    fn escapes_decode_like_json_parse() {
        let text = r#""a\u00e9\ud83c\udfac\n\t\/\\ \ud800!""#;
        let mut s = Scanner::new(text.as_bytes());
        let v = s.value().unwrap();
        assert_eq!(s.string_value(v), "aé🎬\n\t/\\ \u{FFFD}!");
    }

    #[test]
    fn any_depth_without_recursion() {
        let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        assert!(check(&deep).is_ok());
        let objects = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
        assert!(check(&objects).is_ok());
        assert!(check(&"[".repeat(100_000)).is_err());
    }

    #[test]
    fn utf8_is_checked_inside_strings() {
        let mut s = Scanner::new(b"[\"ok \xc3\xa9\", \"bad \xff here\"]");
        assert_eq!(
            s.value().unwrap_err(),
            ScanError {
                at: 15,
                what: "invalid UTF-8"
            }
        );
        let mut s = Scanner::new("[\"日本語 and more than eight bytes 🎬\"]".as_bytes());
        assert!(s.value().is_ok());
    }

    #[test]
    fn errors_point_at_the_problem() {
        let err = check("[1,\n 2,\n x]").unwrap_err();
        assert_eq!(
            (err.what, line_column(b"[1,\n 2,\n x]", err.at)),
            ("expected value", (3, 2))
        );
        let err = check("{\"a\":1,}").unwrap_err();
        assert_eq!(err.what, "trailing comma");
        assert_eq!(line_column("é\"x".as_bytes(), 2), (1, 2));
    }
}
