import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

export default defineConfig({
  resolve: {
    // The examples import the package by name, as a user's code does.
    alias: { '@helios-project/worker-runtime': fileURLToPath(new URL('./index.js', import.meta.url)) },
  },
  test: {
    include: ['__test__/**/*.spec.ts'],
    globalSetup: ['__test__/setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Tests spawn real processes and servers; two workers match the CI machine.
    maxWorkers: 2,
  },
})
