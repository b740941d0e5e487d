//! The job spec (README.md, "Design"). Past JSON syntax, only the top level and the chosen chunk
//! are validated: real specs omit `metadata`, `startFrame`…

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::Error;

#[derive(Debug)]
pub struct JobPlan {
    /// `id` as JSON text, for the JavaScript side to `JSON.parse` (`1e400`, any depth).
    pub job_id: Option<String>,
    pub assets_url: Option<String>,
    /// The command, or why there is none (reported after the assets step, as TypeScript does).
    pub command: Result<String, Error>,
    pub output_file: Option<String>,
}

#[derive(Clone, Copy, Debug)]
pub enum Target {
    Chunk(i64),
    Merge,
}

pub fn plan(bytes: &[u8], source_name: &str, target: Target) -> Result<JobPlan, Error> {
    // `Response.json()` strips a byte-order mark; do the same for files.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    // Bad UTF-8 becomes U+FFFD, as Node decodes it; `from_utf8` first: 8x faster than lossy.
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    };
    match plan_text(&text, source_name, target) {
        Ok(plan) if plan.command.is_ok() => Ok(plan),
        // A lone surrogate (`"\ud800"`), which a String cannot hold: read again as U+FFFD, as Node.
        failed => match without_lone_surrogates(&text) {
            Some(text) => plan_text(&text, source_name, target),
            None => failed,
        },
    }
}

/// Each lone surrogate's `\u` escape made `\ufffd`: same length, so errors keep their columns.
pub(crate) fn without_lone_surrogates(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let unit = |at: usize| match (bytes.get(at..at + 2), text.get(at + 2..at + 6)) {
        (Some(b"\\u"), Some(hex)) if hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u16::from_str_radix(hex, 16).ok()
        }
        _ => None,
    };
    let (mut fixed, mut at) = (None::<Vec<u8>>, 0);
    // `str::find` uses memchr: a big spec is scanned in 1–2 ms, not 16 ms byte by byte.
    while let Some(found) = text.get(at..).and_then(|rest| rest.find('\\')) {
        at += found;
        match unit(at) {
            Some(0xD800..=0xDBFF) if matches!(unit(at + 6), Some(0xDC00..=0xDFFF)) => at += 12,
            Some(0xD800..=0xDFFF) => {
                let fixed = fixed.get_or_insert_with(|| bytes.to_vec());
                fixed[at + 2..at + 6].copy_from_slice(b"fffd");
                at += 6;
            }
            // Any other escape, `\\` too: the character after it cannot start one.
            _ => at += 2,
        }
    }
    fixed.and_then(|fixed| String::from_utf8(fixed).ok())
}

fn plan_text(text: &str, source_name: &str, target: Target) -> Result<JobPlan, Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    // NaN equals no id: a merge skips every chunk.
    let wanted = match target {
        Target::Chunk(id) => id as f64,
        Target::Merge => f64::NAN,
    };
    let top = Any(Top(wanted))
        .deserialize(&mut de)
        .and_then(|top| de.end().map(|()| top))
        .map_err(|e| {
            let message = e.to_string();
            let detail = message
                .rsplit_once(" at line ")
                .map_or(&*message, |(d, _)| d);
            Error::InvalidJson {
                source_name: source_name.to_owned(),
                detail: detail.to_owned(),
                line: e.line(),
                column: e.column(),
            }
        })?;
    let Field::Object(Some(top)) = top else {
        return Err(Error::MissingChunks);
    };
    let found = top.chunks.ok_or(Error::MissingChunks)?;
    // As `if (spec.assetsUrl)` reads it: a falsy value means no assets.
    let assets_url = match top.assets_url {
        None | Some(Field::Null | Field::Bool(false) | Field::Number(0.0)) => None,
        Some(Field::Str(url)) => Some(url).filter(|url| !url.is_empty()),
        Some(other) => {
            return Err(Error::InvalidSpec(format!(
                "assetsUrl must be a string, found {other}"
            )))
        }
    };
    let decode = |raw: Option<&RawValue>| raw.map(|raw| serde_json::from_str::<Field>(raw.get()));
    let (command, output_file) = match (target, found) {
        (Target::Merge, _) => match top.merge_command {
            Some(Field::Str(command)) => (Ok(command), None),
            None => (Err(Error::InvalidSpec("no mergeCommand".into())), None),
            Some(other) => (
                Err(Error::InvalidSpec(format!(
                    "mergeCommand must be a string, found {other}"
                ))),
                None,
            ),
        },
        (Target::Chunk(chunk_id), None) => (Err(Error::ChunkNotFound(chunk_id)), None),
        (Target::Chunk(chunk_id), Some((index, chunk))) => {
            let place = format!("chunk {chunk_id} (chunks[{index}])");
            let command = match decode(chunk.command) {
                Some(Ok(Field::Str(command))) => Ok(command),
                Some(Ok(other)) => Err(Error::InvalidSpec(format!(
                    "{place} has a command that is not a string: found {other}"
                ))),
                Some(Err(e)) => Err(Error::InvalidSpec(format!(
                    "{place} has a command that cannot be decoded: {e}"
                ))),
                None => Err(Error::InvalidSpec(format!("{place} has no command string"))),
            };
            let output_file = match decode(chunk.output_file) {
                Some(Ok(Field::Str(file))) => Some(file),
                _ => None,
            };
            (command, output_file)
        }
    };
    Ok(JobPlan {
        job_id: top.id.map(|raw| raw.get().to_owned()),
        assets_url,
        command,
        output_file,
    })
}

/// A number as JavaScript prints it (`3`, not `3.0`).
pub(crate) fn js_number(n: f64) -> String {
    if n.is_infinite() {
        (if n > 0.0 { "Infinity" } else { "-Infinity" }).to_owned()
    } else if n.fract() == 0.0 && n.abs() < 1e21 {
        format!("{}", n as i128)
    } else if n.abs() >= 1e21 {
        format!("{n:e}").replace("e", "e+")
    } else {
        n.to_string()
    }
}

#[derive(serde::Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum Key {
    Id,
    AssetsUrl,
    Chunks,
    Command,
    MergeCommand,
    OutputFile,
    #[serde(other)]
    Other,
}

/// A value decoded only as far as looked at: a string kept, another scalar described for messages.
#[derive(Debug)]
enum Field<T = ()> {
    Str(String),
    Number(f64),
    Bool(bool),
    Null,
    Array(Option<T>),
    Object(Option<T>),
}

impl<T> fmt::Display for Field<T> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Field::Str(_) => f.write_str("a string"),
            Field::Number(n) => write!(f, "a number ({})", js_number(*n)),
            Field::Bool(b) => write!(f, "a boolean ({b})"),
            Field::Null => f.write_str("null"),
            Field::Array(_) => f.write_str("an array"),
            Field::Object(_) => f.write_str("an object"),
        }
    }
}

impl<'de> de::Deserialize<'de> for Field {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Any(Skip).deserialize(d)
    }
}

/// Reads a value's objects or arrays; by default skips them, without recursion.
trait Reader<'de>: Sized {
    type Out;
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Self::Out>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Self::Out>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

struct Skip;

impl Reader<'_> for Skip {
    type Out = ();
}

/// Deserializes any value as a [`Field`] whose containers the reader it holds reads.
struct Any<R>(R);

impl<'de, R: Reader<'de>> DeserializeSeed<'de> for Any<R> {
    type Value = Field<R::Out>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, R: Reader<'de>> Visitor<'de> for Any<R> {
    type Value = Field<R::Out>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Field::Str(v.to_owned()))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Field::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Field::Number(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Field::Number(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Field::Number(v))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.0.seq(seq).map(Field::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.map(map).map(Field::Object)
    }
}

#[derive(Default)]
struct TopFields<'de> {
    id: Option<&'de RawValue>,
    assets_url: Option<Field>,
    /// `None` when `chunks` is missing or not an array; inside, what `Chunks` found.
    chunks: Option<Option<(usize, ChunkFields<'de>)>>,
    merge_command: Option<Field>,
}

struct Top(f64);

impl<'de> Reader<'de> for Top {
    type Out = TopFields<'de>;
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Self::Out>, A::Error> {
        let mut top = TopFields::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Id => top.id = Some(map.next_value()?),
                Key::AssetsUrl => top.assets_url = Some(map.next_value()?),
                Key::Chunks => match map.next_value_seed(Any(Chunks(self.0)))? {
                    Field::Array(found) => top.chunks = Some(found),
                    _ => top.chunks = None,
                },
                Key::MergeCommand => top.merge_command = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(top))
    }
}

/// Index and raw fields of the first chunk with the wanted `id`; the later ones only skipped.
struct Chunks(f64);

#[derive(Default)]
struct ChunkFields<'de> {
    command: Option<&'de RawValue>,
    output_file: Option<&'de RawValue>,
}

impl<'de> Reader<'de> for Chunks {
    type Out = (usize, ChunkFields<'de>);
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Self::Out>, A::Error> {
        let key = memchr::memmem::Finder::new(b"\"id\"");
        let mut index = 0;
        // Each chunk is first only checked as JSON, in serde_json's own loop (visiting every
        // key of 100,000 chunks took twice as long), and kept as text; only an object may be
        // decoded (not 1e400, Infinity for `JSON.parse`, out of range for serde_json).
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            let text = raw.get();
            if text.starts_with('{') && !surely_another_id(text, self.0, &key) {
                let chunk = Any(Chunk(self.0))
                    .deserialize(&mut serde_json::Deserializer::from_str(text))
                    .map_err(de::Error::custom)?;
                if let Field::Object(Some(chunk)) = chunk {
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                    return Ok(Some((index, chunk)));
                }
            }
            index += 1;
        }
        Ok(None)
    }
}

/// Whether a chunk's text (valid JSON) surely has an id other than `wanted`, seen without
/// decoding it: it starts `{"id":<number>`, and no later key can be `id`, as JavaScript takes
/// the last one: no `"id"` further on, and no escape that could spell it (`"\u0069d"`).
/// Any other text is decoded.
fn surely_another_id(text: &str, wanted: f64, key: &memchr::memmem::Finder) -> bool {
    text.strip_prefix("{\"id\":").is_some_and(|rest| {
        let is_number = |b: u8| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E');
        // At an ASCII byte, or the end: a place where the text can be split.
        let end = rest.bytes().position(|b| !is_number(b));
        let (number, after) = rest.split_at(end.unwrap_or(rest.len()));
        json_number(number).is_some_and(|id| id != wanted)
            && memchr::memchr(b'\\', after.as_bytes()).is_none()
            && key.find(after.as_bytes()).is_none()
    })
}

/// A chunk's fields when it is an object whose (last, as in JavaScript) `id` is the wanted one.
struct Chunk(f64);

impl<'de> Reader<'de> for Chunk {
    type Out = ChunkFields<'de>;
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Self::Out>, A::Error> {
        let mut matches = false;
        let mut fields = ChunkFields::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Id => {
                    let id: &RawValue = map.next_value()?;
                    matches = json_number(id.get()) == Some(self.0);
                }
                Key::Command => fields.command = Some(map.next_value()?),
                Key::OutputFile => fields.output_file = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(matches.then_some(fields))
    }
}

/// A number as `JSON.parse` reads it (past a double's range, ±Infinity); `None` for another
/// value. Plain integers, nearly every chunk's id, without the float parser: 100,000 ids cost
/// a big spec a millisecond that way.
fn json_number(text: &str) -> Option<f64> {
    match text.len() <= 15 && text.bytes().all(|b| b.is_ascii_digit()) {
        // At most 15 digits: exact as a double.
        true => text.parse::<u64>().ok().map(|n| n as f64),
        false => text.parse::<f64>().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(json: &str, chunk: i64) -> Result<JobPlan, Error> {
        plan(json.as_bytes(), "job.json", Target::Chunk(chunk))
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_give_an_error_or_a_plan_never_a_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = plan(&bytes, "fuzz", Target::Chunk(0));
        }

        #[test]
        fn json_like_text_gives_an_error_or_a_plan_never_a_panic(text in "[\\[\\]{}:,\" 0-9a-z.\\\\-]{0,80}") {
            let _ = plan(text.as_bytes(), "fuzz", Target::Merge);
        }

    }

    #[test]
    fn the_id_reaches_storage_as_its_json_text() {
        let id = |json: &str| plan_of(json, 0).unwrap().job_id;
        assert_eq!(id(r#"{"id":42,"chunks":[]}"#).as_deref(), Some("42"));
        assert_eq!(
            id(r#"{"id":"j","id":"k","chunks":[]}"#).as_deref(),
            Some(r#""k""#)
        );
        assert_eq!(id(r#"{"chunks":[]}"#), None);
        let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
        assert_eq!(id(&format!(r#"{{"id":{deep},"chunks":[]}}"#)), Some(deep));
    }

    #[test]
    fn numbers_past_a_doubles_range_are_infinity_as_json_parse_reads_them() {
        let spec = r#"{"id":1e400,"chunks":[{"id":1e400,"command":"a"},{"id":-1e999},{"id":0,"command":"b"}]}"#;
        let p = plan_of(spec, 0).unwrap();
        assert_eq!(p.command.unwrap(), "b");
        assert_eq!(p.job_id.unwrap().parse::<f64>().ok(), Some(f64::INFINITY));
        assert_eq!(js_number(f64::NEG_INFINITY), "-Infinity");
        let big = format!(
            r#"{{"chunks":[{{"id":1{},"command":"a"}}]}}"#,
            "0".repeat(400)
        );
        let not_found = plan_of(&big, 0).unwrap().command.unwrap_err();
        assert!(matches!(not_found, Error::ChunkNotFound(0)));
    }

    #[test]
    fn a_merge_plans_the_merge_command_and_skips_every_chunk() {
        let json = r#"{"mergeCommand":"cat a","chunks":[{"id":0,"command":"x"}]}"#;
        let p = plan(json.as_bytes(), "j", Target::Merge).unwrap();
        assert_eq!(p.command.unwrap(), "cat a");
        assert_eq!(p.output_file, None);
        let err = plan(br#"{"chunks":[]}"#, "j", Target::Merge)
            .unwrap()
            .command;
        assert_eq!(
            err.unwrap_err().to_string(),
            "Invalid JobSpec: no mergeCommand"
        );
        let err = plan(br#"{"mergeCommand":1,"chunks":[]}"#, "j", Target::Merge);
        assert_eq!(
            err.unwrap().command.unwrap_err().to_string(),
            "Invalid JobSpec: mergeCommand must be a string, found a number (1)"
        );
    }

    #[test]
    fn the_chosen_chunks_output_file_is_kept_when_it_is_a_string() {
        let json = r#"{"chunks":[{"id":0,"outputFile":"a.mp4","command":"x"},{"id":1,"outputFile":7,"command":"y"}]}"#;
        assert_eq!(
            plan_of(json, 0).unwrap().output_file.as_deref(),
            Some("a.mp4")
        );
        assert_eq!(plan_of(json, 1).unwrap().output_file, None);
    }

    #[test]
    fn a_chunk_whose_command_comes_before_its_id_is_found() {
        let p = plan_of(
            r#"{"chunks":[{"command":"a","id":1},{"command":"b","id":0}]}"#,
            0,
        );
        assert_eq!(p.unwrap().command.unwrap(), "b");
    }

    #[test]
    fn lean_spec_finds_the_chunk() {
        let p = plan_of(
            r#"{"id":"job-1","chunks":[{"id":0,"command":"echo a"},{"id":1,"command":"echo b"}]}"#,
            1,
        )
        .unwrap();
        assert_eq!(p.job_id.as_deref(), Some(r#""job-1""#));
        assert_eq!(p.assets_url, None);
        assert_eq!(p.command.unwrap(), "echo b");
    }

    #[test]
    fn every_non_object_or_chunkless_top_level_is_missing_chunks() {
        for json in [
            "{}",
            "null",
            "[]",
            r#"{"chunks":{}}"#,
            "42",
            r#""x""#,
            r#"{"chunks":null}"#,
            "true",
        ] {
            let err = plan_of(json, 0).unwrap_err();
            assert_eq!(
                err.to_string(),
                "Invalid JobSpec: missing chunks array",
                "{json}"
            );
            assert_eq!(err.code(), "ERR_INVALID_JOB_SPEC");
        }
    }

    #[test]
    fn invalid_json_names_source_line_and_column() {
        let err = plan_of("{\n  \"chunks\": [\n    {\"id\": 0,}\n  ]\n}", 0).unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.code(), "ERR_INVALID_JOB_SPEC");
        assert!(
            msg.starts_with("Invalid JobSpec: job.json is not valid JSON"),
            "{msg}"
        );
        assert!(msg.contains("line 3 column"), "{msg}");
    }

    #[test]
    fn a_broken_byte_after_the_chosen_chunk_is_still_an_error() {
        let err = plan_of(
            r#"{"chunks":[{"id":0,"command":"x"},{"id":1,"command":"y"}"#,
            0,
        )
        .unwrap_err();
        assert!(matches!(err, Error::InvalidJson { .. }), "{err}");
        let err = plan_of(r#"{"chunks":[{"id":0,"command":"x"}]} trailing"#, 0).unwrap_err();
        assert!(matches!(err, Error::InvalidJson { .. }), "{err}");
    }

    #[test]
    fn first_duplicate_chunk_wins() {
        let p = plan_of(
            r#"{"chunks":[{"id":2,"command":"first"},{"id":2,"command":"second"}]}"#,
            2,
        )
        .unwrap();
        assert_eq!(p.command.unwrap(), "first");
    }

    #[test]
    fn duplicate_keys_take_the_last_value_like_json_parse() {
        let p = plan_of(
            r#"{"chunks":[],"chunks":[{"id":0,"command":"x","command":"y"}]}"#,
            0,
        )
        .unwrap();
        assert_eq!(p.command.unwrap(), "y");
    }

    #[test]
    fn ids_compare_as_javascript_numbers() {
        let json = r#"{"chunks":[{"id":"3","command":"string"},{"id":3.0,"command":"number"}]}"#;
        assert_eq!(plan_of(json, 3).unwrap().command.unwrap(), "number");
        let json = r#"{"chunks":[{"id":-1,"command":"neg"}]}"#;
        assert_eq!(plan_of(json, -1).unwrap().command.unwrap(), "neg");
    }

    #[test]
    fn a_chunks_last_id_is_its_id_however_it_is_written() {
        let find = |chunks: &str, id| {
            let json = format!(r#"{{"chunks":[{chunks}]}}"#);
            plan_of(&json, id).unwrap().command.ok()
        };
        let later = r#"{"id":5,"command":"a","id":7}"#;
        assert_eq!(find(later, 7).as_deref(), Some("a"));
        assert_eq!(find(later, 5), None);
        let escaped = r#"{"id":5,"\u0069d":7,"command":"b"}"#;
        assert_eq!(find(escaped, 7).as_deref(), Some("b"));
        assert_eq!(find(escaped, 5), None);
        let nested = r#"{"id":5,"x":{"id":7},"command":"c"}"#;
        assert_eq!(find(nested, 7), None);
        assert_eq!(find(nested, 5).as_deref(), Some("c"));
        assert_eq!(find(r#"{"id":7.0,"command":"d"}"#, 7).as_deref(), Some("d"));
        assert_eq!(
            find(r#"{"id":70e-1,"command":"e"}"#, 7).as_deref(),
            Some("e")
        );
        assert_eq!(find(r#"{"id":-0,"command":"f"}"#, 0).as_deref(), Some("f"));
        assert_eq!(find(r#"{"id" : 7,"command":"g"}"#, 7).as_deref(), Some("g"));
        assert_eq!(find(r#"{"id":"7","command":"h"}"#, 7), None);
        assert_eq!(
            find(r#"[7],{"id":7,"command":"i"}"#, 7).as_deref(),
            Some("i")
        );
        // Elements that are not objects are skipped, whatever they are (Infinity for JSON.parse).
        let numbers = "{\"id\":0},\n1e400,\n-1e400,\n{\"id\":7,\"command\":\"j\"}";
        assert_eq!(find(numbers, 7).as_deref(), Some("j"));
        let spec = r#"{"chunks":[1e400],"mergeCommand":"m"}"#;
        let merge = plan(spec.as_bytes(), "f", Target::Merge).unwrap();
        assert_eq!(merge.command.unwrap(), "m");
    }

    #[test]
    fn ids_read_as_json_parse_reads_them_with_or_without_the_integer_shortcut() {
        assert_eq!(json_number("99999"), Some(99_999.0));
        assert_eq!(json_number("999999999999999"), Some(999_999_999_999_999.0));
        // 16 digits and more: rounded as a double, as JavaScript does.
        assert_eq!(
            json_number("9007199254740993"),
            Some(9_007_199_254_740_992.0)
        );
        assert_eq!(json_number("-0"), Some(0.0));
        assert_eq!(json_number("1e400"), Some(f64::INFINITY));
        assert_eq!(json_number("\"3\""), None);
        assert_eq!(json_number("null"), None);
    }

    #[test]
    fn a_byte_that_is_not_utf8_in_a_skipped_string_is_read_as_node_would() {
        let spec = b"{\"title\":\"caf\xe9\",\"chunks\":[{\"id\":0,\"note\":\"\xff\",\"command\":\"echo ok\"}]}";
        assert_eq!(
            plan(spec, "f", Target::Chunk(0)).unwrap().command.unwrap(),
            "echo ok"
        );
        // Outside a string, it is a syntax error, placed as in the text Node decodes.
        let err = plan(b"{\"chunks\":[] \xff}", "f", Target::Chunk(0)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidJson {
                    line: 1,
                    column: 14,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn chunk_not_found_is_deferred_to_after_assets() {
        let p = plan_of(
            r#"{"id":"j","assetsUrl":"s3://b/a.zip","chunks":[{"id":0,"command":"x"}]}"#,
            9,
        )
        .unwrap();
        assert_eq!(p.assets_url.as_deref(), Some("s3://b/a.zip"));
        let err = p.command.unwrap_err();
        assert_eq!(err.to_string(), "Chunk with ID 9 not found in job spec");
        assert_eq!(err.code(), "ERR_CHUNK_NOT_FOUND");
    }

    #[test]
    fn chunk_without_a_string_command_is_named() {
        let err = plan_of(r#"{"chunks":[{"id":5}]}"#, 5)
            .unwrap()
            .command
            .unwrap_err();
        assert_eq!(err.code(), "ERR_INVALID_JOB_SPEC");
        assert!(
            err.to_string()
                .contains("chunk 5 (chunks[0]) has no command"),
            "{err}"
        );
        let err = plan_of(r#"{"chunks":[1,null,{"id":5,"command":["a"]}]}"#, 5)
            .unwrap()
            .command
            .unwrap_err();
        assert!(err
            .to_string()
            .contains("chunk 5 (chunks[2]) has a command that is not a string: found an array"));
    }

    #[test]
    fn escaped_strings_and_keys_are_decoded() {
        let p = plan_of(
            r#"{"\u0063hunks":[{"id":0,"command":"echo \"a\\tb\" \u00e9"}]}"#,
            0,
        )
        .unwrap();
        assert_eq!(p.command.unwrap(), "echo \"a\\tb\" é");
    }

    #[test]
    fn empty_assets_url_means_none_and_a_non_string_is_refused() {
        assert_eq!(
            plan_of(r#"{"assetsUrl":"","chunks":[]}"#, 0)
                .unwrap()
                .assets_url,
            None
        );
        let err = plan_of(r#"{"assetsUrl":42,"chunks":[]}"#, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid JobSpec: assetsUrl must be a string, found a number (42)"
        );
    }

    #[test]
    fn a_byte_order_mark_is_accepted() {
        let p = plan(
            "\u{feff}{\"chunks\":[{\"id\":0,\"command\":\"x\"}]}".as_bytes(),
            "f",
            Target::Chunk(0),
        )
        .unwrap();
        assert_eq!(p.command.unwrap(), "x");
    }

    #[test]
    fn deep_nesting_neither_overflows_nor_is_mistaken_for_a_spec() {
        // Valid JSON (JSON.parse accepts it too): an ignored field may be deep.
        let deep = format!(
            "{{\"x\":{}{},\"chunks\":[{{\"id\":0,\"command\":\"c\"}}]}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(plan_of(&deep, 0).unwrap().command.unwrap(), "c");
        let top = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            plan_of(&top, 0).unwrap_err().to_string(),
            "Invalid JobSpec: missing chunks array"
        );
        let unclosed = "[".repeat(100_000);
        assert!(matches!(
            plan_of(&unclosed, 0).unwrap_err(),
            Error::InvalidJson { .. }
        ));
    }

    #[test]
    fn lone_surrogates_which_json_parse_keeps_become_replacement_characters() {
        let spec = r#"{"id":"\udc00j","mergeCommand":"m \ud800","chunks":[{"id":0,"command":"echo \ud800\\ud800 \ud83d\ude00","outputFile":"o\udfff"}]}"#;
        let p = plan(spec.as_bytes(), "f", Target::Chunk(0)).unwrap();
        assert_eq!(p.job_id.as_deref(), Some(r#""\ufffdj""#));
        assert_eq!(p.command.unwrap(), "echo \u{FFFD}\\ud800 \u{1F600}");
        assert_eq!(p.output_file.as_deref(), Some("o\u{FFFD}"));
        let merge = plan(spec.as_bytes(), "f", Target::Merge).unwrap();
        assert_eq!(merge.command.unwrap(), "m \u{FFFD}");
        // A spec that is invalid for another reason keeps its own error, at its own place.
        let err = plan(br#"{"id":"\ud800","chunks":[}"#, "f", Target::Chunk(0)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidJson {
                    line: 1,
                    column: 26,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(without_lone_surrogates(r"a\\ud800 \"), None);
    }

    #[test]
    fn bytes_that_are_not_utf8_become_replacement_characters_as_node_decodes_them() {
        let p = plan(
            b"{\"title\":\"caf\xe9\",\"chunks\":[{\"id\":0,\"command\":\"echo \xff\"}]}",
            "f",
            Target::Chunk(0),
        );
        assert_eq!(p.unwrap().command.unwrap(), "echo \u{FFFD}");
    }

    #[test]
    fn large_integer_ids_are_javascript_numbers_and_a_zero_assets_url_is_none() {
        let p = plan_of(
            r#"{"id":12345678901234567890,"assetsUrl":0,"chunks":[]}"#,
            0,
        )
        .unwrap();
        assert_eq!(
            p.job_id.unwrap().parse::<f64>().ok(),
            Some(12345678901234567890.0)
        );
        assert_eq!(p.assets_url, None);
    }

    #[test]
    fn an_empty_document_is_invalid_json() {
        let err = plan(b"", "f", Target::Chunk(0)).unwrap_err();
        assert!(err.to_string().contains("EOF while parsing"), "{err}");
    }

    #[test]
    fn many_chunks_last_one_found() {
        let chunks: Vec<String> = (0..20_000)
            .map(|i| format!(r#"{{"id":{i},"startFrame":{i},"command":"render {i}"}}"#))
            .collect();
        let json = format!(r#"{{"id":"big","chunks":[{}]}}"#, chunks.join(","));
        assert_eq!(
            plan_of(&json, 19_999).unwrap().command.unwrap(),
            "render 19999"
        );
    }
}

#[cfg(test)]
mod timing {
    /// `cargo test --release job::timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn time_a_100k_chunk_spec() {
        let chunks: Vec<String> = (0..100_000)
            .map(|i| format!(r#"{{"id":{i},"startFrame":{},"frameCount":30,"outputFile":"s3://helios-renders/job-big/chunks/chunk-{i:06}.mp4","command":"ffmpeg -y -loglevel error -ss {i} -t 1 -i input.mp4 -c:v libx264 -preset veryfast chunk-{i}.mp4"}}"#, i * 30))
            .collect();
        let json = format!(
            r#"{{"id":"big","chunks":[{}],"mergeCommand":"x"}}"#,
            chunks.join(",")
        );
        // Interleaved, minimum and median of each: this host's speed changes over seconds.
        let time = |f: &dyn Fn()| {
            let start = std::time::Instant::now();
            f();
            start.elapsed()
        };
        let cases: [(&str, &dyn Fn()); 3] = [
            ("plan", &|| {
                let p = super::plan(json.as_bytes(), "big", super::Target::Chunk(99_999));
                assert!(p.unwrap().command.is_ok());
            }),
            ("UTF-8 check", &|| {
                assert!(std::str::from_utf8(std::hint::black_box(json.as_bytes())).is_ok())
            }),
            ("serde_json skipping everything", &|| {
                serde_json::from_slice::<serde::de::IgnoredAny>(std::hint::black_box(
                    json.as_bytes(),
                ))
                .unwrap();
            }),
        ];
        let mut times = vec![Vec::new(); cases.len()];
        for _ in 0..21 {
            for (case, (_, f)) in cases.iter().enumerate() {
                times[case].push(time(*f));
            }
        }
        println!("{} MB:", json.len() / 1_000_000);
        for ((name, _), mut t) in cases.iter().zip(times) {
            t.sort();
            println!("  {name}: min {:?}, median {:?}", t[0], t[10]);
        }
    }
}
