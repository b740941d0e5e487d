// Renders frames [start, start + count) of the demo animation as a YUV4MPEG2 video, a raw
// format that ffplay, mpv and VLC open directly. Progress goes to stdout, one line a frame.
import { writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    start: { type: 'string' },
    count: { type: 'string' },
    total: { type: 'string' },
    width: { type: 'string', default: '320' },
    height: { type: 'string', default: '180' },
    fps: { type: 'string', default: '24' },
    out: { type: 'string' },
  },
})
const start = Number(values.start)
const count = Number(values.count)
const total = Number(values.total)
const width = Number(values.width)
const height = Number(values.height)
const fps = Number(values.fps)
if (![start, count, total, width, height, fps].every(Number.isInteger) || !values.out) {
  console.error('usage: render-chunk --start N --count N --total N --out FILE [--width W --height H --fps F]')
  process.exit(2)
}

/** The colour of pixel (x, y) in frame `f`: a drifting gradient, a bouncing ball, and a
 * progress bar along the bottom. */
function pixel(x, y, f) {
  const t = f / total
  let r = 40 + 120 * (x / width) + 60 * Math.sin(2 * Math.PI * t)
  let g = 30 + 100 * (y / height)
  let b = 120 + 100 * Math.cos(2 * Math.PI * (t + x / width))
  const bx = width * (0.1 + 0.8 * Math.abs(((2 * t) % 2) - 1))
  const by = height * (0.2 + 0.6 * Math.abs(Math.sin(3 * Math.PI * t)))
  const radius = height / 8
  if ((x - bx) ** 2 + (y - by) ** 2 < radius ** 2) [r, g, b] = [250, 210, 60]
  if (y >= height - 8 && x < width * ((f + 1) / total)) [r, g, b] = [240, 240, 240]
  return [r, g, b]
}

const clamp = (v) => Math.max(0, Math.min(255, Math.round(v)))
const frameSize = (width * height * 3) / 2
const header = Buffer.from(`YUV4MPEG2 W${width} H${height} F${fps}:1 Ip A1:1 C420jpeg\n`)
const marker = Buffer.from('FRAME\n')
const out = Buffer.alloc(header.length + count * (marker.length + frameSize))
header.copy(out)
let at = header.length
for (let f = start; f < start + count; f++) {
  marker.copy(out, at)
  at += marker.length
  const yPlane = out.subarray(at, at + width * height)
  const uPlane = out.subarray(at + width * height, at + width * height * 1.25)
  const vPlane = out.subarray(at + width * height * 1.25, at + frameSize)
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const [r, g, b] = pixel(x, y, f)
      yPlane[y * width + x] = clamp(0.299 * r + 0.587 * g + 0.114 * b)
      if (x % 2 === 0 && y % 2 === 0) {
        const i = (y / 2) * (width / 2) + x / 2
        uPlane[i] = clamp(128 - 0.168736 * r - 0.331264 * g + 0.5 * b)
        vPlane[i] = clamp(128 + 0.5 * r - 0.418688 * g - 0.081312 * b)
      }
    }
  }
  at += frameSize
  console.log(`frame ${f + 1}/${total}`)
}
writeFileSync(values.out, out)
