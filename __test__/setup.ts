// Says which native binary the suite tests. `npm test` builds a debug one in the package's
// folder; `npm run build` puts a release one in the same place; `npm run package` and
// `npm run bench` build and use a release binary of their own, whatever is here.
import { readdirSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'

export default function (): void {
  const root = resolve(__dirname, '..')
  for (const name of readdirSync(root).filter((f) => f.endsWith('.node'))) {
    const size = statSync(join(root, name)).size
    // A release build is a few MiB; a debug one, with its symbols, tens.
    const kind = size > 20 * 2 ** 20 ? 'a debug build' : 'a release build'
    console.log(`Testing ${name}: ${kind}, ${(size / 2 ** 20).toFixed(1)} MiB`)
  }
}
