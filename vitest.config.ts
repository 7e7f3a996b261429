import { defineConfig } from 'vitest/config';

// Workspace packages export "source" (their .ts files) beside the compiled dist/: tests run every
// package from source, so a test never sees a stale build of a package it imports.
const conditions = ['source', 'import', 'node', 'default'];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: ['node'] } },
  test: {
    include: ['**/test/**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Tests start real registries and mount filesystems; keep files sequential on 2 cores.
    fileParallelism: false,
  },
});
