// The Rust core stays lean: non-blank lines of `src/**/*.rs` before each file's first test
// module, comments included, within the budget the design set (the binding, `src/binding/`,
// within its own). A change past it makes room elsewhere first, or argues for a new budget.
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'

const src = resolve(__dirname, '..', 'src')
// 2,800 and 600 until `binding/environ.rs` (the main thread's process.env read under Node's own
// lock), for 82 lines: a run of `true` 7 % faster, 100 runs started at once 35 % sooner. 2,885
// and 630 until `binding/local.rs`, `binding/uv.rs` and `process/watched.rs` (a run polled on
// the JavaScript thread's own event loop), for 653 lines with its hostile review's fixes: a run
// of `true` 15-19 % faster. 3,540 until a big spec's chunks were first only checked as JSON
// and skipped by their text (`job.rs`), for 32 lines: its plan a third faster; 3,572 until a
// large spec file was read in two halves at once (`source.rs`), for 54: its read 35 % faster;
// 3,626 until a run past its timeout was refused before loading its spec (held back) and
// after (a spec read at once), never starting its command (`runtime.rs`): 11 lines. 3,637
// until a command's pipes were held open till it exits (`process/unix.rs`, 47 lines: its exit
// wakes the run once, not three times) and it was started by `posix_spawn` through nix
// (`process/spawn.rs`, 144 lines: the spawn a quarter shorter, no environment copied through a
// map, and signals 1-31 at their defaults as Node's own `spawn` gives them, also where the C
// library lacks `addchdir_np` and std forks); 3,834 until the command's `PATH` was borrowed,
// not copied, on every run. 4,048 since a command is started on Linux by `clone` with
// CLONE_VFORK (`process/vfork.rs`, 176 lines with its hostile review's fixes, and the `Exec`
// it shares with `posix_spawn`): no stack mapped and unmapped, no `getrlimit` per
// descriptor, its pidfd from the same call, a run of `true` 2-5 % faster.
const CORE_BUDGET = 4048
const BINDING_BUDGET = 1080

function rustFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return rustFiles(path)
    return entry.name.endsWith('.rs') ? [path] : []
  })
}

/** Non-blank lines before the first `#[cfg(...test...)]`. */
function coreLines(text: string): number {
  const lines = text.split('\n')
  const end = lines.findIndex((line) => /#\[cfg\(.*test/.test(line))
  return lines.slice(0, end === -1 ? undefined : end).filter((line) => line.trim() !== '').length
}

describe('the lean core', () => {
  const counts = new Map(rustFiles(src).map((file) => [relative(src, file), coreLines(readFileSync(file, 'utf8'))]))
  const total = (files: string[]) => files.reduce((sum, file) => sum + counts.get(file)!, 0)

  it('counts what it should: tests and blank lines are not code', () => {
    expect(coreLines('//! doc\n\nfn a() {}\n#[cfg(test)]\nmod tests {}\n')).toBe(2)
    expect(coreLines('fn a() {}\n#[cfg(all(test, unix))]\nmod tests {}\n')).toBe(1)
    expect(coreLines('fn a() {}\n')).toBe(1)
    expect(counts.size).toBeGreaterThan(10)
  })

  it(`holds at most ${CORE_BUDGET} lines of Rust, the binding at most ${BINDING_BUDGET}`, () => {
    const files = [...counts.keys()]
    const binding = files.filter((file) => file.split(/[\\/]/)[0] === 'binding')
    expect(binding.length).toBeGreaterThan(0)
    expect(total(files)).toBeLessThanOrEqual(CORE_BUDGET)
    expect(total(binding)).toBeLessThanOrEqual(BINDING_BUDGET)
  })
})
