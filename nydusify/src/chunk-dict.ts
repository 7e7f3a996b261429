/**
 * The chunk dictionary of a conversion: an earlier Nydus image's bootstrap, whose chunks a new image
 * reuses instead of storing them again. Loading it, and making the blobs the new image then reads
 * present in the target repository.
 */
import type { ParsedBootstrap } from '@nydus-ts/rafs/bootstrap-reader';
import { readBootstrap } from '@nydus-ts/rafs/bootstrap-reader';
import { RegistryClient } from '@nydus-ts/registry/client';
import { parseReference } from '@nydus-ts/registry/reference';
import { loadBootstrap } from './builder/bootstrap-file.js';
import { unpackBootstrapLayer } from './image/nydus-manifest.js';

export interface ChunkDict {
  dict: ParsedBootstrap;
  /** Where the dictionary's image lives (a registry dictionary), to mount its blobs from. */
  repo?: { host: string; repository: string };
}

/** Loads a chunk dictionary: `bootstrap:registry:REF`, `bootstrap:local:PATH` or a bootstrap path. */
export async function loadChunkDict(spec: string, insecure?: boolean): Promise<ChunkDict> {
  const m = /^bootstrap:(registry|local):(.+)$/.exec(spec);
  if (!m || m[1] === 'local') return { dict: await loadBootstrap(m ? m[2]! : spec) };
  const ref = parseReference(m[2]!);
  const client = new RegistryClient(ref.registryHost, { insecure });
  const got = await client.getManifest(ref.repository, ref.digest ?? ref.tag ?? 'latest');
  const manifest = JSON.parse(got.body.toString()) as { layers: Array<{ digest: string }> };
  const last = manifest.layers[manifest.layers.length - 1];
  if (!last) throw new Error(`chunk dict ${m[2]}: image has no layers`);
  const boot = await unpackBootstrapLayer(await client.getBlobBuffer(ref.repository, last.digest));
  return { dict: readBootstrap(boot), repo: { host: ref.registryHost, repository: ref.repository } };
}

/**
 * Makes a dictionary blob the new image reads present in `repository` of the registry `client`
 * talks to (`host`): already there, or mounted from the dictionary's repository on the same
 * registry. It is never uploaded: the conversion does not hold its bytes.
 */
export async function ensureDictBlob(client: RegistryClient, host: string, repository: string, blob: { digest: string; size: number }, dictRepo: ChunkDict['repo']): Promise<void> {
  const from = dictRepo?.host === host && dictRepo.repository !== repository ? dictRepo.repository : undefined;
  if (from === undefined) {
    if ((await client.headBlob(repository, blob.digest)) === null) {
      throw new Error(`chunk-dict blob ${blob.digest} is not in ${repository}; push the dictionary's image to the same registry`);
    }
    return;
  }
  await client.pushBlob(repository, blob.digest, blob.size, () => [], { mountFrom: from });
}
