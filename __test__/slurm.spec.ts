// helios-worker on a real Slurm cluster: one node on 127.0.0.1, started by
// scripts/slurm-cluster.sh for this file and stopped again at the end. The demo job runs as an
// array job (each task takes its chunk from SLURM_ARRAY_TASK_ID) followed by a merge job that
// depends on it, the way examples/slurm/ submits it. Needs root and Debian's slurmctld, slurmd,
// slurm-client and munge packages (.ci/run installs them); without them the file is skipped.
import { execFileSync, spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { delimiter, dirname, join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { alive, cleanup, sleep, tempDir } from './helpers'

const root = resolve(__dirname, '..')
const cli = join(root, 'bin', 'helios-worker.js')
const clusterScript = join(root, 'scripts', 'slurm-cluster.sh')
const demo = join(root, 'demo')

const BINARIES = ['munged', 'munge', 'unmunge', 'slurmctld', 'slurmd', 'sbatch', 'scontrol', 'sinfo', 'squeue', 'scancel']
const onPath = (name: string) =>
  (process.env.PATH ?? '')
    .split(delimiter)
    .concat(['/usr/sbin', '/sbin'])
    .some((dir) => dir !== '' && existsSync(join(dir, name)))

function skipReason(): string | undefined {
  if (process.platform !== 'linux') return 'the Slurm test runs on Linux only'
  if (process.getuid?.() !== 0) return 'the Slurm test needs root to start slurmctld, slurmd and munged'
  const missing = BINARIES.filter((name) => !onPath(name))
  if (missing.length > 0) {
    return `the Slurm test needs ${missing.join(', ')} (apt-get install slurmctld slurmd slurm-client munge)`
  }
  return undefined
}
const skip = skipReason()
if (skip) console.warn(`${skip}: skipped`)

/** Ends a job can reach; a job in any other state may still change. */
const FINAL = new Set(['COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT', 'NODE_FAIL', 'OUT_OF_MEMORY', 'PREEMPTED', 'BOOT_FAIL', 'DEADLINE'])

type Job = Record<string, string>

/** Quote for /bin/sh. */
const sh = (word: string) => `'${word.replaceAll("'", `'\\''`)}'`

describe.skipIf(skip !== undefined)('helios-worker on a one-node Slurm cluster', () => {
  let cluster = ''
  let shared = ''
  let env: NodeJS.ProcessEnv = {}
  let daemons: Array<[string, number]> = []
  /** What /dev/shm held before the cluster started: the cluster must leave nothing there. */
  const shm = () => (existsSync('/dev/shm') ? readdirSync('/dev/shm') : [])
  let shmBefore: string[] = []

  /** The environment of the Slurm commands, which sbatch hands on to the job (--export=ALL):
   * this one's, without any engine's index variable or Slurm variable of an enclosing job, with
   * the cluster's SLURM_CONF and this Node first on PATH (the chunks' commands run `node`). */
  function slurmEnv(conf: string): NodeJS.ProcessEnv {
    const clean: NodeJS.ProcessEnv = {}
    for (const [key, value] of Object.entries(process.env)) {
      if (/^(SLURM_|SBATCH_|SQUEUE_|SCONTROL_)/.test(key)) continue
      if (['JOB_COMPLETION_INDEX', 'AWS_BATCH_JOB_ARRAY_INDEX', 'CLOUD_RUN_TASK_INDEX', 'HELIOS_WORKSPACE_DIR'].includes(key)) continue
      clean[key] = value
    }
    clean.PATH = [dirname(process.execPath), process.env.PATH ?? '/usr/bin:/bin', '/usr/sbin', '/sbin'].join(delimiter)
    clean.SLURM_CONF = conf
    return clean
  }

  const slurm = (command: string, args: string[]) => execFileSync(command, args, { env, encoding: 'utf8', timeout: 30_000 }).trim()

  /** Every record `scontrol -o show job ID` prints: one per array task once they are split. */
  function jobs(id: string): Job[] {
    const r = spawnSync('scontrol', ['-o', 'show', 'job', id], { env, encoding: 'utf8', timeout: 30_000 })
    if (r.status !== 0) throw new Error(`scontrol -o show job ${id} failed (${r.status}): ${r.stderr}`)
    return r.stdout
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => Object.fromEntries([...line.matchAll(/(?:^|\s)([A-Za-z:/]+)=(\S*)/g)].map((m) => [m[1], m[2]])))
  }
  const showJob = (id: string) => spawnSync('scontrol', ['-o', 'show', 'job', id], { env, encoding: 'utf8' }).stdout
  const contents = (path: string) => (existsSync(path) ? readFileSync(path, 'utf8') : `(${path} does not exist)`)

  /** Poll until `check()` gives a value, or fail after `ms` with `explain()`. */
  async function until<T>(what: string, check: () => T | undefined, explain: () => string, ms = 120_000): Promise<T> {
    const deadline = Date.now() + ms
    for (;;) {
      const value = check()
      if (value !== undefined) return value
      if (Date.now() >= deadline) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}\n${explain()}`)
      await sleep(250)
    }
  }

  /** The array job's task records once every task in `indices` has ended, by task id. */
  function endedTasks(id: string, indices: number[]): Map<number, Job> | undefined {
    const byTask = new Map<number, Job>()
    for (const job of jobs(id)) {
      if (/^\d+$/.test(job.ArrayTaskId ?? '')) byTask.set(Number(job.ArrayTaskId), job)
    }
    const all = indices.every((i) => byTask.has(i) && FINAL.has(byTask.get(i)!.JobState))
    return all ? byTask : undefined
  }

  const sbatch = (args: string[]) => slurm('sbatch', ['--parsable', ...args]).split(';')[0]

  /** The shell line of a batch job: `exec` so that the job's exit code is helios-worker's. */
  const worker = (...args: string[]) => `exec ${[process.execPath, cli, ...args].map(sh).join(' ')}`

  /** A directory every task sees (one node: any directory; a real cluster: a shared file
   * system), holding the spec and a workspace with the render scripts. The CLI has no storage
   * adapter, so the spec is a copy without `assetsUrl` and the assets are copied in beforehand,
   * as a site would stage them on its shared file system. */
  function stage(name: string, spec: object, extraAssets: Record<string, string> = {}) {
    const dir = join(shared, name)
    const ws = join(dir, 'ws')
    mkdirSync(ws, { recursive: true })
    for (const file of readdirSync(join(demo, 'assets'))) copyFileSync(join(demo, 'assets', file), join(ws, file))
    for (const [file, text] of Object.entries(extraAssets)) writeFileSync(join(ws, file), text)
    const jobPath = join(dir, 'job.json')
    writeFileSync(jobPath, JSON.stringify(spec, null, 2))
    return { dir, ws, jobPath }
  }

  beforeAll(() => {
    cluster = join(tempDir('hwr-slurm-'), 'cluster')
    shared = tempDir('hwr-slurm-shared-')
    shmBefore = shm()
    const started = Date.now()
    const r = spawnSync(clusterScript, ['start', cluster], { encoding: 'utf8', timeout: 90_000 })
    if (r.status !== 0) throw new Error(`slurm-cluster.sh start failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`)
    const conf = /export SLURM_CONF=(\S+)/.exec(r.stdout)?.[1]
    if (!conf) throw new Error(`slurm-cluster.sh printed no SLURM_CONF:\n${r.stdout}`)
    env = slurmEnv(conf)
    daemons = ['munged', 'slurmctld', 'slurmd'].map((name) => [name, Number(readFileSync(join(cluster, 'run', `${name}.pid`), 'utf8'))])
    console.log(`Slurm ${slurm('scontrol', ['--version'])}: one node up in ${Date.now() - started} ms (${conf})`)
  }, 120_000)

  afterAll(async () => {
    try {
      if (!cluster) return
      const started = Date.now()
      const r = spawnSync(clusterScript, ['stop', cluster], { encoding: 'utf8', timeout: 120_000 })
      console.log(`slurm-cluster.sh stop: ${Date.now() - started} ms`)
      expect(r.status, `slurm-cluster.sh stop failed:\n${r.stdout}\n${r.stderr}`).toBe(0)
      const left = daemons.filter(([, pid]) => alive(pid))
      expect(left, 'no daemon of the cluster is left').toEqual([])
      expect(existsSync(cluster), 'the cluster directory is removed').toBe(false)
      const leftInShm = shm().filter((name) => !shmBefore.includes(name) && /slurm|munge/i.test(name))
      expect(leftInShm, 'nothing of the cluster is left in /dev/shm').toEqual([])
    } finally {
      cleanup()
    }
  }, 150_000)

  /** The chunks as one array job, and the merge as a job that waits for all of them; with a
   * description of both jobs and every output file, for a failure message. */
  function submitRender(dir: string, ws: string, jobPath: string, chunks: number) {
    const array = sbatch([`--array=0-${chunks - 1}`, `--chdir=${dir}`, `--output=${join(dir, 'task-%a.out')}`, '--wrap', worker(jobPath, '--workspace', ws)])
    const merge = sbatch([
      `--dependency=afterok:${array}`,
      `--chdir=${dir}`,
      `--output=${join(dir, 'merge.out')}`,
      '--wrap',
      worker('merge', jobPath, '--workspace', ws),
    ])
    const explain = () =>
      [
        `scontrol -o show job ${array}:\n${showJob(array)}`,
        `scontrol -o show job ${merge}:\n${showJob(merge)}`,
        ...Array.from({ length: chunks }, (_, i) => `task-${i}.out:\n${contents(join(dir, `task-${i}.out`))}`),
        `merge.out:\n${contents(join(dir, 'merge.out'))}`,
      ].join('\n')
    return { array, merge, explain }
  }

  it('renders the demo job as an array job, then merges it in a job that depends on the array', async () => {
    const spec = JSON.parse(readFileSync(join(demo, 'job.json'), 'utf8'))
    delete spec.assetsUrl
    const { dir, ws, jobPath } = stage('demo', spec)
    const chunks = spec.chunks.length as number
    const { width, height, totalFrames, fps } = spec.metadata as Record<string, number>

    const { array, merge, explain } = submitRender(dir, ws, jobPath, chunks)
    const indices = Array.from({ length: chunks }, (_, i) => i)
    const tasks = await until('the array tasks to end', () => endedTasks(array, indices), explain)
    const header = `YUV4MPEG2 W${width} H${height} F${fps}:1 Ip A1:1 C420jpeg\n`
    const frameBytes = 'FRAME\n'.length + (width * height * 3) / 2
    for (const chunk of spec.chunks as Array<{ id: number; frameCount: number; startFrame: number; outputFile: string }>) {
      const task = tasks.get(chunk.id)!
      const log = contents(join(dir, `task-${chunk.id}.out`))
      expect({ JobState: task.JobState, ExitCode: task.ExitCode }, `task ${chunk.id}\n${explain()}`).toEqual({
        JobState: 'COMPLETED',
        ExitCode: '0:0',
      })
      // The task took its chunk from SLURM_ARRAY_TASK_ID: it printed that chunk's frames.
      expect(log).toContain(`frame ${chunk.startFrame + 1}/${totalFrames}\n`)
      expect(log).toContain(`frame ${chunk.startFrame + chunk.frameCount}/${totalFrames}\n`)
      const output = join(ws, chunk.outputFile)
      expect(existsSync(output), `${output}\n${explain()}`).toBe(true)
      expect(statSync(output).size).toBe(header.length + chunk.frameCount * frameBytes)
    }

    const mergeJob = await until(
      'the merge job to end',
      () => {
        const [job] = jobs(merge)
        if (job && FINAL.has(job.JobState)) return job
        if (job?.Reason === 'DependencyNeverSatisfied') throw new Error(`the merge can never run\n${explain()}`)
        return undefined
      },
      explain,
    )

    expect({ JobState: mergeJob.JobState, ExitCode: mergeJob.ExitCode }, explain()).toEqual({ JobState: 'COMPLETED', ExitCode: '0:0' })
    const video = join(ws, 'helios-demo.y4m') // the mergeCommand's output
    expect(existsSync(video), explain()).toBe(true)
    const bytes = readFileSync(video)
    expect(bytes.subarray(0, header.length).toString('latin1')).toBe(header)
    expect(bytes.toString('latin1').split('FRAME\n').length - 1).toBe(totalFrames)
    expect(bytes.length).toBe(header.length + totalFrames * frameBytes)
    expect(contents(join(dir, 'merge.out'))).toContain(`helios-demo.y4m: ${totalFrames} frames from ${chunks} chunks`)
  }, 240_000)

  it('a chunk that exits 3 fails its task with ExitCode=3:0, and the merge that depends on it never runs', async () => {
    const spec = {
      id: 'helios-failing',
      chunks: [
        {
          id: 0,
          outputFile: 'chunk-0.y4m',
          command: 'node render-chunk.mjs --start 0 --count 2 --total 4 --width 32 --height 18 --out chunk-0.y4m',
        },
        { id: 1, command: 'node -e "process.exit(3)"' },
      ],
      mergeCommand: 'node merge.mjs merged.y4m chunk-0.y4m chunk-1.y4m',
    }
    const { dir, ws, jobPath } = stage('failing', spec)
    const { array, merge, explain } = submitRender(dir, ws, jobPath, 2)
    try {
      const tasks = await until('the array tasks to end', () => endedTasks(array, [0, 1]), explain)
      expect(tasks.get(0), explain()).toMatchObject({ JobState: 'COMPLETED', ExitCode: '0:0' })
      expect(tasks.get(1), explain()).toMatchObject({ JobState: 'FAILED', ExitCode: '3:0' })

      // Slurm keeps such a job PENDING with Reason=DependencyNeverSatisfied, unless the site
      // set SchedulerParameters=kill_invalid_depend, which cancels it instead.
      const mergeJob = await until(
        'the merge job to be found unrunnable',
        () => {
          const [job] = jobs(merge)
          return job && (job.JobState === 'CANCELLED' || job.Reason === 'DependencyNeverSatisfied') ? job : undefined
        },
        explain,
        60_000,
      )
      console.log(`Merge after a failed chunk: JobState=${mergeJob.JobState} Reason=${mergeJob.Reason}`)
      expect(['PENDING', 'CANCELLED']).toContain(mergeJob.JobState)
      expect(mergeJob.StartTime === 'Unknown' || mergeJob.JobState === 'CANCELLED', explain()).toBe(true)
      expect(existsSync(join(dir, 'merge.out')), 'the merge never ran').toBe(false)
      expect(existsSync(join(ws, 'merged.y4m'))).toBe(false)
      expect(existsSync(join(ws, 'chunk-0.y4m')), 'chunk 0 was rendered').toBe(true)
    } finally {
      spawnSync('scancel', [merge, array], { env })
    }
    const [cancelled] = await until(
      'the merge job to be cancelled',
      () => {
        const found = jobs(merge)
        return found[0]?.JobState === 'CANCELLED' ? found : undefined
      },
      explain,
      30_000,
    )
    expect(cancelled.JobState).toBe('CANCELLED')
  }, 180_000)

  it('scancel ends a running task: helios-worker, its chunk and the chunk’s child, and the task is CANCELLED', async () => {
    const sleeper = [
      "import { spawn } from 'node:child_process'",
      "import { renameSync, writeFileSync } from 'node:fs'",
      "const grandchild = spawn('sleep', ['300'], { stdio: 'ignore' })",
      'const file = process.argv[2]',
      'writeFileSync(`${file}.tmp`, JSON.stringify({ worker: process.ppid, chunk: process.pid, grandchild: grandchild.pid }))',
      'renameSync(`${file}.tmp`, file)',
      'setInterval(() => {}, 60_000)',
      '',
    ].join('\n')
    const pidsFile = join(shared, 'sleeper', 'pids.json')
    const spec = { id: 'helios-sleeper', chunks: [{ id: 0, command: `node sleeper.mjs ${pidsFile}` }] }
    const { dir, ws, jobPath } = stage('sleeper', spec, { 'sleeper.mjs': sleeper })
    const array = sbatch(['--array=0', `--chdir=${dir}`, `--output=${join(dir, 'task-%a.out')}`, '--wrap', worker(jobPath, '--workspace', ws)])
    const explain = () => `scontrol -o show job ${array}:\n${showJob(array)}\ntask-0.out:\n${contents(join(dir, 'task-0.out'))}`

    const pids = await until(
      'the chunk to write its pids',
      () => (existsSync(pidsFile) ? (JSON.parse(readFileSync(pidsFile, 'utf8')) as Record<string, number>) : undefined),
      explain,
      60_000,
    )
    for (const [name, pid] of Object.entries(pids)) expect(alive(pid), `${name} (${pid}) runs`).toBe(true)
    expect(jobs(array)[0].JobState).toBe('RUNNING')

    slurm('scancel', [array])
    await until(
      'every process of the task to be gone',
      () => (Object.values(pids).every((pid) => !alive(pid)) ? true : undefined),
      () => `still running: ${JSON.stringify(Object.entries(pids).filter(([, pid]) => alive(pid)))}\n${explain()}`,
      30_000,
    )
    const tasks = await until('the task to end', () => endedTasks(array, [0]), explain, 30_000)
    expect(tasks.get(0)!.JobState, explain()).toBe('CANCELLED')
  }, 180_000)
})
