// The engines' manifests in examples/, parsed (YAML, JSON) and checked for what makes a render
// work end to end: each copy of the container gets its chunk from the engine's index variable,
// the number of copies is the number of chunks, the workspace is persistent storage mounted
// where helios-worker works, and the merge runs after the chunks on that same storage.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'

import { parseCommand } from '@helios-project/worker-runtime'

const examples = join(__dirname, '..', 'examples')
type Doc = any
const yaml = (path: string): Doc => parse(readFileSync(join(examples, path), 'utf8'))
const json = (path: string): Doc => JSON.parse(readFileSync(join(examples, path), 'utf8'))

/** The spec every manifest renders: what https://orchestrator.example/jobs/42.json serves. */
const JOB_URL = 'https://orchestrator.example/jobs/42.json'
const spec = json('job-42.json') as { id: string; chunks: Array<{ id: number; command: string; outputFile: string }>; mergeCommand: string }
const CHUNKS = spec.chunks.length

const INDEX_VARIABLES = ['JOB_COMPLETION_INDEX', 'AWS_BATCH_JOB_ARRAY_INDEX', 'CLOUD_RUN_TASK_INDEX', 'SLURM_ARRAY_TASK_ID']

/** A helios-worker command line read as the CLI reads it (see `helios-worker --help`). */
function cli(args: string[], env: Record<string, string> = {}) {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      workspace: { type: 'string' },
      'per-job': { type: 'boolean' },
      timeout: { type: 'string' },
      json: { type: 'boolean' },
    },
  })
  const merge = positionals[0] === 'merge'
  const [jobPath, chunkId, ...extra] = merge ? positionals.slice(1) : positionals
  return { merge, jobPath, chunkId, extra, workspace: values.workspace ?? env.HELIOS_WORKSPACE_DIR, perJob: values['per-job'] === true }
}

/** A container's `env` list as a record. */
const envOf = (container: Doc): Record<string, string> =>
  Object.fromEntries(((container.env ?? []) as Array<{ name: string; value: string }>).map(({ name, value }) => [name, value]))

describe('the job spec the examples render', () => {
  it('numbers its chunks 0..N-1, as the engines number their copies', () => {
    expect(spec.chunks.map((c) => c.id)).toEqual([...Array(CHUNKS).keys()])
  })

  it('has each chunk write its declared outputFile, and the merge read them all in order', () => {
    for (const chunk of spec.chunks) expect(parseCommand(chunk.command).args.at(-1)).toBe(chunk.outputFile)
    const merge = parseCommand(spec.mergeCommand)
    const input = merge.args[merge.args.indexOf('-i') + 1]
    expect(input).toBe(`concat:${spec.chunks.map((c) => c.outputFile).join('|')}`)
  })
})

describe('Kubernetes', () => {
  const claim = yaml('kubernetes/workspace-pvc.yaml')
  const chunks = yaml('kubernetes/indexed-job.yaml')
  const merge = yaml('kubernetes/merge-job.yaml')

  /** The pod's one container, its CLI invocation, and the claim and subPath mounted at its workspace. */
  function pod(job: Doc) {
    const podSpec = job.spec.template.spec
    expect(podSpec.containers).toHaveLength(1)
    const [container] = podSpec.containers
    const invocation = cli(container.args, envOf(container))
    const mount = (container.volumeMounts as Doc[]).find((m) => m.mountPath === invocation.workspace)
    expect(mount, 'a volume is mounted at the workspace').toBeDefined()
    const volume = (podSpec.volumes as Doc[]).find((v) => v.name === mount.name)
    return { podSpec, container, invocation, mount, volume }
  }

  it('has a ReadWriteMany claim for the workspace', () => {
    expect(claim).toMatchObject({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: 'helios-workspace' } })
    expect(claim.spec.accessModes).toEqual(['ReadWriteMany'])
    expect(claim.spec.resources.requests.storage).toMatch(/^\d+[GT]i$/)
  })

  it('runs one pod per chunk of an Indexed Job, retried per index', () => {
    expect(chunks).toMatchObject({ apiVersion: 'batch/v1', kind: 'Job', spec: { completionMode: 'Indexed', completions: CHUNKS } })
    expect(chunks.spec.parallelism).toBeGreaterThan(0)
    expect(chunks.spec.parallelism).toBeLessThanOrEqual(CHUNKS)
    expect(chunks.spec.backoffLimitPerIndex).toBeGreaterThan(0)
    expect(chunks.spec.template.spec.restartPolicy).toBe('Never') // required by backoffLimitPerIndex
  })

  it('gives each pod its chunk through JOB_COMPLETION_INDEX, never an explicit chunk id', () => {
    const { container, invocation } = pod(chunks)
    expect(invocation).toMatchObject({ merge: false, jobPath: JOB_URL, chunkId: undefined, extra: [] })
    for (const name of INDEX_VARIABLES) expect(envOf(container)).not.toHaveProperty(name)
  })

  it('renders into the claim, mounted where helios-worker works', () => {
    const { volume, mount } = pod(chunks)
    expect(volume.persistentVolumeClaim.claimName).toBe(claim.metadata.name)
    expect(mount.readOnly).not.toBe(true)
  })

  it('merges in a Job of its own, with the same claim and directory mounted at its workspace', () => {
    expect(merge).toMatchObject({ apiVersion: 'batch/v1', kind: 'Job' })
    expect(merge.spec.completionMode).not.toBe('Indexed')
    expect(merge.spec.completions ?? 1).toBe(1)
    expect(merge.metadata.name).not.toBe(chunks.metadata.name)
    const m = pod(merge)
    const c = pod(chunks)
    expect(m.invocation).toMatchObject({ merge: true, jobPath: JOB_URL, chunkId: undefined, extra: [] })
    expect(m.volume.persistentVolumeClaim.claimName).toBe(claim.metadata.name)
    expect(m.mount.subPath).toBe(c.mount.subPath)
    expect(m.invocation.workspace).toBe(c.invocation.workspace)
    expect(m.invocation.perJob).toBe(c.invocation.perJob)
    expect(m.container.image).toBe(c.container.image)
  })
})

describe('AWS Batch', () => {
  const definition = json('aws-batch/job-definition.json')
  const mergeDefinition = json('aws-batch/merge-job-definition.json')
  const array = json('aws-batch/submit-array-job.json')
  const merge = json('aws-batch/submit-merge-job.json')

  /** The command Batch runs for `submission`: Ref:: placeholders replaced by its parameters. */
  function command(def: Doc, submission: Doc) {
    const parameters = { ...def.parameters, ...submission.parameters }
    const args = (def.containerProperties.command as string[]).map((word) =>
      word.startsWith('Ref::') ? (parameters[word.slice(5)] ?? word) : word,
    )
    const container = def.containerProperties
    const invocation = cli(args, envOf({ env: container.environment }))
    const mountPoint = (container.mountPoints as Doc[]).find((m) => m.containerPath === invocation.workspace)
    expect(mountPoint, 'a volume is mounted at the workspace').toBeDefined()
    const volume = (container.volumes as Doc[]).find((v) => v.name === mountPoint.sourceVolume)
    return { invocation, mountPoint, volume }
  }

  it('submits an array job of one child per chunk (Batch arrays have 2 to 10,000 children)', () => {
    expect(array.jobDefinition).toBe(definition.jobDefinitionName)
    expect(array.arrayProperties.size).toBe(CHUNKS)
    expect(array.arrayProperties.size).toBeGreaterThanOrEqual(2)
    expect(array.arrayProperties.size).toBeLessThanOrEqual(10_000)
  })

  it('gives each child its chunk through AWS_BATCH_JOB_ARRAY_INDEX, never an explicit chunk id', () => {
    const { invocation } = command(definition, array)
    expect(invocation).toMatchObject({ merge: false, jobPath: JOB_URL, chunkId: undefined, extra: [] })
    for (const { name } of definition.containerProperties.environment ?? []) expect(INDEX_VARIABLES).not.toContain(name)
  })

  it('renders into an EFS file system mounted where helios-worker works', () => {
    const { volume, mountPoint } = command(definition, array)
    expect(volume.efsVolumeConfiguration.fileSystemId).toMatch(/^fs-[0-9a-f]+$/)
    expect(volume.efsVolumeConfiguration.transitEncryption).toBe('ENABLED') // required with an access point and IAM
    expect(mountPoint.readOnly).toBe(false)
    // EFS on Fargate needs platform version 1.4.0 or later.
    expect(definition.containerProperties.fargatePlatformConfiguration.platformVersion).toBe('LATEST')
  })

  it('merges in a job that depends on the whole array, on the same file system and directory', () => {
    expect(merge.jobDefinition).toBe(mergeDefinition.jobDefinitionName)
    expect(merge.arrayProperties).toBeUndefined()
    // One dependency on the array job's id, without type N_TO_N: the merge waits for every child.
    expect(merge.dependsOn).toEqual([{ jobId: 'ARRAY_JOB_ID' }])
    const m = command(mergeDefinition, merge)
    const c = command(definition, array)
    expect(m.invocation).toMatchObject({ merge: true, jobPath: JOB_URL, chunkId: undefined, extra: [] })
    expect(m.volume.efsVolumeConfiguration).toEqual(c.volume.efsVolumeConfiguration)
    expect(m.invocation.workspace).toBe(c.invocation.workspace)
    expect(m.invocation.perJob).toBe(c.invocation.perJob)
    expect(mergeDefinition.containerProperties.image).toBe(definition.containerProperties.image)
  })

  it('keeps render jobs sharing the file system apart', () => {
    // The definition serves every render job, so each works in <workspace>/<job id>.
    expect(command(definition, array).invocation.perJob).toBe(true)
  })
})

describe('Cloud Run jobs', () => {
  const chunks = yaml('cloud-run-job/job.yaml')
  const merge = yaml('cloud-run-job/merge-job.yaml')

  function task(job: Doc) {
    expect(job).toMatchObject({ apiVersion: 'run.googleapis.com/v1', kind: 'Job' })
    const taskSpec = job.spec.template.spec.template.spec
    expect(taskSpec.containers).toHaveLength(1)
    const [container] = taskSpec.containers
    const invocation = cli(container.args, envOf(container))
    const mount = (container.volumeMounts as Doc[]).find((m) => m.mountPath === invocation.workspace)
    expect(mount, 'a volume is mounted at the workspace').toBeDefined()
    const volume = (taskSpec.volumes as Doc[]).find((v) => v.name === mount.name)
    return { container, invocation, volume }
  }

  it('runs one task per chunk', () => {
    expect(chunks.spec.template.spec.taskCount).toBe(CHUNKS)
    expect(chunks.spec.template.spec.parallelism).toBeLessThanOrEqual(CHUNKS)
  })

  it('gives each task its chunk through CLOUD_RUN_TASK_INDEX, never an explicit chunk id', () => {
    const { container, invocation } = task(chunks)
    expect(invocation).toMatchObject({ merge: false, jobPath: JOB_URL, chunkId: undefined, extra: [] })
    for (const name of INDEX_VARIABLES) expect(envOf(container)).not.toHaveProperty(name)
  })

  it('renders into a Cloud Storage bucket mounted where helios-worker works', () => {
    const { volume } = task(chunks)
    expect(volume.csi.driver).toBe('gcsfuse.run.googleapis.com')
    expect(volume.csi.readOnly).not.toBe(true)
    expect(volume.csi.volumeAttributes.bucketName).toMatch(/^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$/)
  })

  it('merges in a one-task job on the same bucket folder', () => {
    expect(merge.metadata.name).not.toBe(chunks.metadata.name)
    expect(merge.spec.template.spec.taskCount).toBe(1)
    const m = task(merge)
    const c = task(chunks)
    expect(m.invocation).toMatchObject({ merge: true, jobPath: JOB_URL, chunkId: undefined, extra: [] })
    expect(m.volume.csi).toEqual(c.volume.csi)
    expect(m.invocation.workspace).toBe(c.invocation.workspace)
    expect(m.invocation.perJob).toBe(c.invocation.perJob)
    expect(m.container.image).toBe(c.container.image)
  })
})

describe('the Cloud Run service', () => {
  const service = yaml('cloud-run-service/service.yaml')

  it('mounts a Cloud Storage bucket at the workspace the server reads from HELIOS_WORKSPACE_DIR', () => {
    expect(service).toMatchObject({ apiVersion: 'serving.knative.dev/v1', kind: 'Service' })
    const podSpec = service.spec.template.spec
    const [container] = podSpec.containers
    const workspace = envOf(container).HELIOS_WORKSPACE_DIR
    const mount = (container.volumeMounts as Doc[]).find((m) => m.mountPath === workspace)
    expect(mount, 'a volume is mounted at the workspace').toBeDefined()
    const volume = (podSpec.volumes as Doc[]).find((v) => v.name === mount.name)
    expect(volume.csi.driver).toBe('gcsfuse.run.googleapis.com')
    expect(volume.csi.readOnly).not.toBe(true)
  })

  it('caps the requests one instance takes at once', () => {
    const { containerConcurrency } = service.spec.template.spec
    expect(containerConcurrency).toBeGreaterThan(0)
    expect(containerConcurrency).toBeLessThan(80)
  })
})
