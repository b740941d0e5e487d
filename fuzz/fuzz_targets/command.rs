//! The command grammar: never panics, and whatever it accepts, quoting gives back.
#![no_main]

use helios_worker_runtime::command::{parse_command, quote_command};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(parsed) = parse_command(text) {
        let quoted = quote_command(&parsed.program, &parsed.args).expect("a parsed command can be quoted");
        assert_eq!(parse_command(&quoted).expect("a quoted command parses"), parsed);
    }
});
