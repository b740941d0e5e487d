// Run by `npm version` (the package's "version" script): what is under "Unreleased" in
// CHANGELOG.md becomes the section of the version npm has just written into package.json.
import { readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const file = process.argv[2] ?? join(root, 'CHANGELOG.md')
const version = process.argv[3] ?? JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version
const date = new Date().toISOString().slice(0, 10)
let text = readFileSync(file, 'utf8')
if (text.includes(`## [${version}]`)) {
  console.error(`CHANGELOG.md already has a section for ${version}`)
  process.exit(1)
}
const previous = /^## \[(\d+\.\d+\.\d+[^\]]*)\]/m.exec(text.slice(text.indexOf('## [Unreleased]') + 1))?.[1]
text = text.replace('## [Unreleased]', `## [Unreleased]\n\n## [${version}] - ${date}`)
const base = 'https://github.com/helios-project/worker-runtime'
text = text.replace(/^\[Unreleased\]: .*$/m, `[Unreleased]: ${base}/compare/v${version}...HEAD\n[${version}]: ${base}/compare/v${previous}...v${version}`)
writeFileSync(file, text)
console.log(`CHANGELOG.md: Unreleased is now ${version} (${date})`)
