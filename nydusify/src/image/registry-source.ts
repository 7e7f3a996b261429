/** An image in a registry as a conversion source: manifest (through an index by platform), config, layers. */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { RegistryClient } from '@nydus-ts/registry/client';
import { DEFAULT_MANIFEST_ACCEPT, isIndexMediaType } from '@nydus-ts/registry/media-types';
import type { ImageReference } from '@nydus-ts/registry/reference';
import { selectPlatform, type Descriptor, type ImageConfig, type ImageIndex, type ImageManifest, type ImageSource } from './types.js';

export async function openRegistryImage(client: RegistryClient, ref: ImageReference, platform: string, label: string): Promise<ImageSource> {
  const repo = ref.repository;
  let got = await client.getManifest(repo, ref.digest ?? ref.tag ?? 'latest', [...DEFAULT_MANIFEST_ACCEPT]);
  if (isIndexMediaType(got.mediaType)) {
    const desc = selectPlatform(JSON.parse(got.body.toString()) as ImageIndex, platform, label);
    got = await client.getManifest(repo, desc.digest, [...DEFAULT_MANIFEST_ACCEPT]);
  }
  const manifest = JSON.parse(got.body.toString()) as ImageManifest;
  if (!manifest.config || !Array.isArray(manifest.layers)) throw new Error(`${label}: manifest has no config or layers (media type ${got.mediaType})`);
  const configBytes = await client.getBlobBuffer(repo, manifest.config.digest);
  const manifestDescriptor = { mediaType: got.mediaType, digest: `sha256:${createHash('sha256').update(got.body).digest('hex')}`, size: got.body.length };
  return {
    label, manifest, manifestMediaType: got.mediaType, configBytes, config: JSON.parse(configBytes.toString()) as ImageConfig,
    manifestDescriptor, registry: { host: ref.registryHost, repository: repo },
    openBlob: (d: Descriptor): Promise<Readable> => client.getBlob(repo, d.digest),
    readRange: (d: Descriptor, offset: number, length: number) => client.getBlobBuffer(repo, d.digest, { offset, length }),
  };
}
