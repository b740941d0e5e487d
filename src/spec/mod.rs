//! The job spec: lenient validation and the one-chunk fast path.
//!
//! A spec for a long render holds tens of thousands of chunks, and a worker needs one. The
//! document is checked in full, in a single pass, by a scanner ([`scan`]) that locates values
//! without decoding them; only `id`, `assetsUrl` and the first chunk whose `id` matches are
//! decoded, and only as far as `run` needs. Like `JSON.parse`, a key that appears twice
//! takes its last value.
//!
//! Only the top-level shape and the chosen chunk are validated; real specs omit `metadata`,
//! `mergeCommand`, `startFrame`… and the TypeScript runtime never required them.

mod scan;

use std::borrow::Cow;

use crate::error::Error;
use scan::{Kind, ScanError, Scanner, Span};

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
    let mut scanner = Scanner::new(bytes);
    let top =
        read_top(&mut scanner, chunk_id as f64).map_err(|e| json_error(bytes, e, source_name))?;
    let top = top.ok_or(Error::MissingChunks)?;
    let search = top.chunks.ok_or(Error::MissingChunks)?;
    let s = &scanner;

    let job_id = match top.id.map(|span| scalar(s, span)) {
        Some(Scalar::Str(id)) => Some(id.into_owned()),
        Some(Scalar::Num(n)) => Some(js_number(n)),
        _ => None,
    };
    let assets_url = match top.assets_url.map(|span| scalar(s, span)) {
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
    let command = match search {
        None => Err(Error::ChunkNotFound(chunk_id)),
        Some((index, command)) => {
            let where_ = format!("chunk {chunk_id} (chunks[{index}])");
            match command.map(|span| scalar(s, span)) {
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

fn json_error(bytes: &[u8], e: ScanError, source_name: &str) -> Error {
    let (line, column) = scan::line_column(bytes, e.at);
    Error::InvalidJson {
        source_name: source_name.to_owned(),
        detail: e.what.to_owned(),
        line,
        column,
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

/// A value, decoded only as far as the runtime looks at it.
#[derive(Debug)]
enum Scalar<'a> {
    Str(Cow<'a, str>),
    Num(f64),
    Bool(bool),
    Null,
    Array,
    Object,
}

fn scalar<'a>(s: &Scanner<'a>, span: Span) -> Scalar<'a> {
    match span.kind {
        Kind::String => Scalar::Str(s.string_value(span)),
        Kind::Number => Scalar::Num(s.number_value(span)),
        Kind::Bool => Scalar::Bool(s.raw(span) == "true"),
        Kind::Null => Scalar::Null,
        Kind::Array => Scalar::Array,
        Kind::Object => Scalar::Object,
    }
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

/// The top level, when it is an object.
struct Top {
    id: Option<Span>,
    assets_url: Option<Span>,
    /// `None` when `chunks` is missing or not an array; inside, the index and the command (if
    /// any) of the first chunk whose `id` matches.
    chunks: Option<Option<(usize, Option<Span>)>>,
}

/// Each member of the object the scanner is at, after its `{`: `on_member(key, scanner)`
/// must consume the value.
fn members<'a>(
    s: &mut Scanner<'a>,
    mut on_member: impl FnMut(Span, &mut Scanner<'a>) -> Result<(), ScanError>,
) -> Result<(), ScanError> {
    let Some(mut key) = s.key(true)? else {
        return Ok(());
    };
    loop {
        s.expect(b':', "expected `:`")?;
        s.ws();
        on_member(key, s)?;
        if !s.next(b'}')? {
            return Ok(());
        }
        match s.key(false)? {
            Some(next) => key = next,
            None => return Ok(()),
        }
    }
}

fn read_top(s: &mut Scanner, wanted: f64) -> Result<Option<Top>, ScanError> {
    s.ws();
    let top = if s.peek() == Some(b'{') {
        s.i += 1;
        let mut top = Top {
            id: None,
            assets_url: None,
            chunks: None,
        };
        members(s, |key, s| {
            if s.string_is(key, "chunks") {
                top.chunks = if s.peek() == Some(b'[') {
                    Some(read_chunks(s, wanted)?)
                } else {
                    s.value()?;
                    None
                };
            } else if s.string_is(key, "id") {
                top.id = Some(s.value()?);
            } else if s.string_is(key, "assetsUrl") {
                top.assets_url = Some(s.value()?);
            } else {
                s.value()?;
            }
            Ok(())
        })?;
        Some(top)
    } else {
        s.value()?;
        None
    };
    s.ws();
    if !s.at_end() {
        return Err(ScanError {
            at: s.i,
            what: "trailing characters",
        });
    }
    Ok(top)
}

/// The `chunks` array: the first chunk whose `id` is `wanted`. Every element is checked; the
/// ones after the match only for syntax.
fn read_chunks(s: &mut Scanner, wanted: f64) -> Result<Option<(usize, Option<Span>)>, ScanError> {
    s.i += 1;
    s.ws();
    if s.peek() == Some(b']') {
        s.i += 1;
        return Ok(None);
    }
    let mut found = None;
    let mut index = 0;
    loop {
        s.ws();
        if found.is_none() && s.peek() == Some(b'{') {
            if let Some(command) = read_chunk(s, wanted)? {
                found = Some((index, command));
            }
        } else {
            s.value()?;
        }
        index += 1;
        if !s.next(b']')? {
            return Ok(found);
        }
        s.ws();
        if s.peek() == Some(b']') {
            return Err(ScanError {
                at: s.i,
                what: "trailing comma",
            });
        }
    }
}

/// One chunk object: `Some(command)` when its `id` (its last `id`, as in JavaScript) is the
/// number `wanted`; `None` otherwise. Anything but an object is a chunk without an id.
fn read_chunk(s: &mut Scanner, wanted: f64) -> Result<Option<Option<Span>>, ScanError> {
    s.i += 1;
    let mut matches = false;
    let mut command = None;
    members(s, |key, s| {
        if s.string_is(key, "id") {
            let id = s.value()?;
            matches = id.kind == Kind::Number && s.number_value(id) == wanted;
        } else if s.string_is(key, "command") {
            command = Some(s.value()?);
        } else {
            s.value()?;
        }
        Ok(())
    })?;
    Ok(matches.then_some(command))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(json: &str, chunk: i64) -> Result<JobPlan, Error> {
        plan(json.as_bytes(), "job.json", chunk)
    }

    /// Arbitrary JSON documents, as text.
    fn json_documents() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            (-1e6f64..1e6).prop_map(|n| serde_json::json!(n)),
            "\\PC{0,8}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map("[a-z]{0,4}", inner, 0..5)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
        .prop_map(|v| {
            if v.is_object() {
                serde_json::to_string_pretty(&v).unwrap()
            } else {
                v.to_string()
            }
        })
    }

    fn scanner_accepts(text: &str) -> bool {
        let mut s = scan::Scanner::new(text.as_bytes());
        s.value().is_ok() && {
            s.ws();
            s.at_end()
        }
    }

    proptest::proptest! {
        /// Every document serde_json writes is accepted; with one byte cut out, the scanner
        /// still agrees with serde_json on whether it is JSON.
        #[test]
        fn the_scanner_agrees_with_serde_json_on_real_documents(doc in json_documents(), cut in proptest::num::usize::ANY) {
            proptest::prop_assert!(scanner_accepts(&doc), "{}", doc);
            let mut bytes = doc.into_bytes();
            bytes.remove(cut % bytes.len());
            if let Ok(text) = String::from_utf8(bytes) {
                let theirs = serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok();
                proptest::prop_assert_eq!(scanner_accepts(&text), theirs, "{:?}", text);
            }
        }

        #[test]
        fn arbitrary_bytes_give_an_error_or_a_plan_never_a_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = plan(&bytes, "fuzz", 0);
        }

        #[test]
        fn json_like_text_gives_an_error_or_a_plan_never_a_panic(text in "[\\[\\]{}:,\" 0-9a-z.\\\\-]{0,80}") {
            let _ = plan(text.as_bytes(), "fuzz", 0);
        }

        /// The scanner accepts exactly the documents serde_json accepts (from an alphabet
        /// without `\\u`, whose lone surrogates JSON.parse takes and serde_json refuses).
        #[test]
        fn the_scanner_agrees_with_serde_json(text in "[\\[\\]{}:, \"0-9a.eE+\\-tfrnl\\\\]{0,40}") {
            let ours = scanner_accepts(&text);
            let theirs = serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok();
            proptest::prop_assert_eq!(ours, theirs, "{:?}", text);
        }
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
        let t = std::time::Instant::now();
        for _ in 0..10 {
            std::hint::black_box(
                std::str::from_utf8(std::hint::black_box(json.as_bytes())).is_ok(),
            );
        }
        println!("utf8 {:?}", t.elapsed() / 10);
        let t = std::time::Instant::now();
        for _ in 0..10 {
            let mut s = super::scan::Scanner::new(json.as_bytes());
            std::hint::black_box(s.value().unwrap());
        }
        println!("skip all {:?}", t.elapsed() / 10);
    }
}
