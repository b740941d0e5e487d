import { spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'

import { alive, cleanup, eventually, existsSync, sleep, specOf, tempDir, writeSpec } from './helpers'

afterAll(cleanup)

const addon = resolve(__dirname, '..', 'index.js')

describe.skipIf(process.platform !== 'linux')('no process outlives the Node process that started it', () => {
  it('when Node is killed with SIGKILL mid-run, neither the child nor the grandchild survives', async () => {
    const dir = tempDir()
    const marker = join(dir, 'grandchild-marker')
    writeFileSync(
      join(dir, 'tree.sh'),
      [
        `echo $$ > child.pid`,
        `(trap '' TERM HUP INT; sleep 2; touch '${marker}') &`,
        `echo $! > grandchild.pid`,
        `echo ready`,
        `sleep 60`,
      ].join('\n'),
    )
    const spec = writeSpec(dir, specOf('sh tree.sh'))
    const driver = join(dir, 'driver.js')
    writeFileSync(
      driver,
      `const { WorkerRuntime } = require(${JSON.stringify(addon)});
       new WorkerRuntime({ workspaceDir: ${JSON.stringify(dir)} }).run(${JSON.stringify(spec)}, 0, {
         onStdout: (s) => { if (s.includes('ready')) process.stdout.write('ready\\n') },
       });
       setInterval(() => {}, 60000);`,
    )
    const node = spawn(process.execPath, [driver], { stdio: ['ignore', 'pipe', 'inherit'] })
    await new Promise<void>((resolveReady, reject) => {
      node.stdout.on('data', (d) => String(d).includes('ready') && resolveReady())
      node.on('exit', (code) => reject(new Error(`driver exited early (${code})`)))
    })
    const child = Number(readFileSync(join(dir, 'child.pid'), 'utf8'))
    const grandchild = Number(readFileSync(join(dir, 'grandchild.pid'), 'utf8'))
    expect(alive(child)).toBe(true)
    expect(alive(grandchild)).toBe(true)
    node.kill('SIGKILL')
    expect(await eventually(() => !alive(child) && !alive(grandchild), 5000)).toBe(true)
    await sleep(2500)
    expect(existsSync(marker)).toBe(false)
  })
})
