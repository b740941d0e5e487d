// Joins chunk videos (YUV4MPEG2) into one: the first header, then every chunk's frames.
import { readFileSync, writeFileSync } from 'node:fs'

const [output, ...inputs] = process.argv.slice(2)
if (!output || inputs.length === 0) {
  console.error('usage: merge OUTPUT CHUNK...')
  process.exit(2)
}
let header
const bodies = []
let frames = 0
for (const input of inputs) {
  const bytes = readFileSync(input)
  const end = bytes.indexOf(0x0a) + 1
  const own = bytes.subarray(0, end).toString()
  if (!own.startsWith('YUV4MPEG2 ')) throw new Error(`${input} is not a YUV4MPEG2 file`)
  if (header && own !== header) throw new Error(`${input} has a different format: ${own.trim()}`)
  header = own
  bodies.push(bytes.subarray(end))
  frames += bytes.subarray(end).toString('latin1').split('FRAME\n').length - 1
}
writeFileSync(output, Buffer.concat([Buffer.from(header), ...bodies]))
console.log(`${output}: ${frames} frames from ${inputs.length} chunks`)
