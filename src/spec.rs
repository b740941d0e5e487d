//! The job spec: lenient validation and the one-chunk fast path.
//!
//! A spec for a long render holds tens of thousands of chunks, and a worker needs one. The
//! document is parsed once, in a single pass, with a visitor that keeps only what `run` uses
//! (`id`, `assetsUrl`, and the first chunk whose `id` matches): every other chunk is checked
//! for syntax and dropped. Strings stay borrowed from the input until the end. Like
//! `JSON.parse`, a key that appears twice takes its last value.
//!
//! Only the top-level shape and the chosen chunk are validated; real specs omit `metadata`,
//! `mergeCommand`, `startFrame`… and the TypeScript runtime never required them.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::error::Error;

/// What `run` needs from a spec, owned, with the parse buffer already released.
#[derive(Debug)]
pub struct JobPlan {
    /// The spec's `id`, as the storage adapter receives it (`None` when absent).
    pub job_id: Option<String>,
    /// A non-empty `assetsUrl`: the bundle to download before the command runs.
    pub assets_url: Option<String>,
    /// The chosen chunk's command, or why there is none. Checked after the assets step, so
    /// errors surface in the order of CONTRACT §2.
    pub command: Result<String, Error>,
}

/// Parse `bytes` (from `source_name`, used in messages) and plan the run of chunk `chunk_id`.
pub fn plan(bytes: &[u8], source_name: &str, chunk_id: i64) -> Result<JobPlan, Error> {
    // `Response.json()` strips a byte-order mark; do the same for files.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let top = TopSeed {
        wanted: chunk_id as f64,
    }
    .deserialize(&mut de)
    .and_then(|top| de.end().map(|()| top))
    .map_err(|e| json_error(&e, source_name))?;
    let top = top.ok_or(Error::MissingChunks)?;
    let search = top.chunks.ok_or(Error::MissingChunks)?;

    let job_id = match top.id {
        Some(Scalar::Str(id)) => Some(id.into_owned()),
        Some(Scalar::Num(n)) => Some(js_number(n)),
        _ => None,
    };
    let assets_url = match top.assets_url {
        None | Some(Scalar::Null) | Some(Scalar::Bool(false)) => None,
        Some(Scalar::Str(url)) if url.is_empty() => None,
        Some(Scalar::Str(url)) => Some(url.into_owned()),
        Some(other) => {
            return Err(Error::InvalidSpec(format!(
                "assetsUrl must be a string, found {}",
                other.describe()
            )))
        }
    };
    let command = match search.found {
        None => Err(Error::ChunkNotFound(chunk_id)),
        Some(found) => {
            let where_ = format!("chunk {chunk_id} (chunks[{}])", found.index);
            match found.command {
                Some(Scalar::Str(command)) => Ok(command.into_owned()),
                None => Err(Error::InvalidSpec(format!(
                    "{where_} has no command string"
                ))),
                Some(other) => Err(Error::InvalidSpec(format!(
                    "{where_} has a command that is not a string: found {}",
                    other.describe()
                ))),
            }
        }
    };
    Ok(JobPlan {
        job_id,
        assets_url,
        command,
    })
}

fn json_error(e: &serde_json::Error, source_name: &str) -> Error {
    let detail = e.to_string();
    // serde_json appends " at line L column C"; the variant says it once, in its own words.
    let detail = match detail.rfind(" at line ") {
        Some(at) => detail[..at].to_owned(),
        None => detail,
    };
    Error::InvalidJson {
        source_name: source_name.to_owned(),
        detail,
        line: e.line(),
        column: e.column(),
    }
}

/// A number as JavaScript prints it (`3`, not `3.0`).
fn js_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e21 {
        format!("{}", n as i128)
    } else {
        n.to_string()
    }
}

/// Any JSON value, kept only as far as the runtime looks at it: strings stay borrowed from
/// the input when they have no escapes; arrays and objects are checked and dropped.
#[derive(Debug)]
enum Scalar<'a> {
    Str(Cow<'a, str>),
    Num(f64),
    Bool(bool),
    Null,
    Array,
    Object,
}

impl Scalar<'_> {
    fn describe(&self) -> String {
        match self {
            Scalar::Str(_) => "a string".into(),
            Scalar::Num(n) => format!("a number ({})", js_number(*n)),
            Scalar::Bool(b) => format!("a boolean ({b})"),
            Scalar::Null => "null".into(),
            Scalar::Array => "an array".into(),
            Scalar::Object => "an object".into(),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                IgnoredAny.visit_seq(seq).map(|_| Scalar::Array)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                IgnoredAny.visit_map(map).map(|_| Scalar::Object)
            }
        }
        d.deserialize_any(ScalarVisitor)
    }
}

/// Generates the visitor methods for every non-container JSON value, all mapped to `$value`.
macro_rules! scalars_are {
    ($value:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// The top level when it is an object (anything else is `None`: no chunks array).
struct Top<'a> {
    id: Option<Scalar<'a>>,
    assets_url: Option<Scalar<'a>>,
    /// `None` when `chunks` is missing or not an array.
    chunks: Option<ChunkSearch<'a>>,
}

struct ChunkSearch<'a> {
    found: Option<FoundChunk<'a>>,
}

struct FoundChunk<'a> {
    index: usize,
    command: Option<Scalar<'a>>,
}

struct TopSeed {
    wanted: f64,
}

impl<'de> DeserializeSeed<'de> for TopSeed {
    type Value = Option<Top<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopSeed {
    type Value = Option<Top<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a job spec")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut top = Top {
            id: None,
            assets_url: None,
            chunks: None,
        };
        while let Some(key) = map.next_key::<Field>()? {
            match key {
                Field::Id => top.id = Some(map.next_value()?),
                Field::AssetsUrl => top.assets_url = Some(map.next_value()?),
                Field::Chunks => {
                    top.chunks = map.next_value_seed(ChunksSeed {
                        wanted: self.wanted,
                    })?;
                }
                Field::Command | Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(top))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| None)
    }

    scalars_are!(None);
}

struct ChunksSeed {
    wanted: f64,
}

impl<'de> DeserializeSeed<'de> for ChunksSeed {
    type Value = Option<ChunkSearch<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ChunksSeed {
    type Value = Option<ChunkSearch<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of chunks")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut index = 0;
        let seed = ChunkSeed {
            wanted: self.wanted,
        };
        while let Some(chunk) = seq.next_element::<&'de serde_json::value::RawValue>()? {
            let chunk = match quick_id(chunk.get()) {
                Some(id) if id != self.wanted => None,
                _ => seed
                    .deserialize(&mut serde_json::Deserializer::from_str(chunk.get()))
                    .map_err(de::Error::custom)?,
            };
            if let Some(command) = chunk {
                // The rest is only checked for syntax: a broken byte anywhere is still an error.
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                return Ok(Some(ChunkSearch {
                    found: Some(FoundChunk { index, command }),
                }));
            }
            index += 1;
        }
        Ok(Some(ChunkSearch { found: None }))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_map(map).map(|_| None)
    }

    scalars_are!(None);
}

/// The id of a chunk written the usual way, `{"id":<number>,…` with no other `"id"` in it;
/// `None` means "look properly".
fn quick_id(text: &str) -> Option<f64> {
    let rest = text.strip_prefix("{\"id\":")?;
    let end = rest.find([',', '}'])?;
    let id = rest[..end].trim().parse::<f64>().ok()?;
    (!rest[end..].contains("\"id\"")).then_some(id)
}

/// One element of `chunks`: `Some(command)` when its `id` is the wanted one (the command
/// itself may be missing), `None` otherwise. Anything but an object is a chunk without an id.
#[derive(Clone, Copy)]
struct ChunkSeed {
    wanted: f64,
}

impl<'de> DeserializeSeed<'de> for ChunkSeed {
    type Value = Option<Option<Scalar<'de>>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ChunkSeed {
    type Value = Option<Option<Scalar<'de>>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a chunk")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // `chunk.id === wanted` in JavaScript: only a JSON number can match. Once the id is
        // known not to match, the command is skipped instead of decoded.
        let mut matches: Option<bool> = None;
        let mut command = None;
        while let Some(key) = map.next_key::<Field>()? {
            match key {
                Field::Id => {
                    let id: Scalar = map.next_value()?;
                    matches = Some(matches!(id, Scalar::Num(n) if n == self.wanted));
                }
                Field::Command if matches != Some(false) => command = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((matches == Some(true)).then_some(command))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| None)
    }

    scalars_are!(None);
}

/// The keys the visitors look for; keys may be escaped in the JSON, so they are compared
/// after decoding.
enum Field {
    Id,
    AssetsUrl,
    Chunks,
    Command,
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Field, E> {
                Ok(match key {
                    "id" => Field::Id,
                    "assetsUrl" => Field::AssetsUrl,
                    "chunks" => Field::Chunks,
                    "command" => Field::Command,
                    _ => Field::Other,
                })
            }
        }
        d.deserialize_identifier(FieldVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(json: &str, chunk: i64) -> Result<JobPlan, Error> {
        plan(json.as_bytes(), "job.json", chunk)
    }

    #[test]
    fn lean_spec_finds_the_chunk() {
        let p = plan_of(
            r#"{"id":"job-1","chunks":[{"id":0,"command":"echo a"},{"id":1,"command":"echo b"}]}"#,
            1,
        )
        .unwrap();
        assert_eq!(p.job_id.as_deref(), Some("job-1"));
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
            0,
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
    fn invalid_utf8_is_an_error() {
        let err = plan(b"{\"chunks\":[{\"id\":0,\"command\":\"\xff\"}]}", "f", 0).unwrap_err();
        assert!(matches!(err, Error::InvalidJson { .. }), "{err}");
    }

    #[test]
    fn an_empty_document_is_invalid_json() {
        let err = plan(b"", "f", 0).unwrap_err();
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
    /// `cargo test --release spec::timing -- --ignored --nocapture`
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
        let mut times = Vec::new();
        for _ in 0..15 {
            let t = std::time::Instant::now();
            let p = super::plan(json.as_bytes(), "big", 99_999).unwrap();
            times.push(t.elapsed());
            assert!(p.command.is_ok());
        }
        times.sort();
        println!("{} MB: median {:?}", json.len() / 1_000_000, times[7]);
    }
}
