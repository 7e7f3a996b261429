/**
 * A Nydus image of a local directory, built with our builder (bin/nydus-image.js) and its data
 * blobs pushed to a registry: what tests and benchmarks serve with nydusd when they need exact
 * control of the files, without an OCI source image.
 */
import { createReadStream, readdirSync, statSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { RegistryClient } from '@nydus-ts/registry/client';
import { REPO_ROOT } from './containerd.js';

export interface DirImage {
  bootstrap: string;
  /** Blob ids (sha256 hex), as pushed to `repo`. */
  blobIds: string[];
}

/**
 * Builds `src` into `bootstrap` + blobs under `blobDir` (extra args to `create`, e.g. compressor;
 * `prefetch`: the paths of its prefetch table), and pushes the blobs to `host`/`repo` over plain http.
 */
export async function buildAndPushDir(o: { src: string; bootstrap: string; blobDir: string; host: string; repo: string; createArgs?: string[]; prefetch?: string[] }): Promise<DirImage> {
  const table = o.prefetch === undefined ? [] : ['--prefetch-policy', 'fs'];
  const built = promisify(execFile)(process.execPath, [join(REPO_ROOT, 'bin', 'nydus-image.js'), 'create', '--type', 'dir-rafs', ...table, ...(o.createArgs ?? []),
    '--bootstrap', o.bootstrap, '--blob-dir', o.blobDir, o.src]);
  built.child.stdin!.end((o.prefetch ?? []).map((p) => `${p}\n`).join(''));
  await built;
  const client = new RegistryClient(o.host, { insecure: true, dockerConfigPath: '/nonexistent/config.json' });
  try {
    const blobIds = readdirSync(o.blobDir);
    for (const id of blobIds) {
      const path = join(o.blobDir, id);
      await client.pushBlob(o.repo, `sha256:${id}`, statSync(path).size, () => createReadStream(path));
    }
    return { bootstrap: o.bootstrap, blobIds };
  } finally {
    await client.close();
  }
}
