//! The job spec parser: any bytes give a plan or an error, never a panic or a hang.
#![no_main]

use helios_worker_runtime::job::plan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = plan(data, "fuzz", 0);
    let _ = plan(data, "fuzz", 1);
});
