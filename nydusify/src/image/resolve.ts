/**
 * Turns a user's image reference into a source: `oci:DIR[:TAG]`, `docker-archive:PATH` (or a path
 * to an existing .tar), or a registry reference.
 */
import { existsSync, statSync } from 'node:fs';
import { RegistryClient } from '@nydus-ts/registry/client';
import { parseReference } from '@nydus-ts/registry/reference';
import { openDockerArchive } from './docker-archive.js';
import { openOciLayout } from './oci-layout.js';
import { openRegistryImage } from './registry-source.js';
import type { ImageSource } from './types.js';

export interface ResolveOptions {
  platform: string;
  insecure?: boolean;
  workDir: string;
}

export function splitLayoutRef(ref: string): { dir: string; tag?: string } {
  const body = ref.slice('oci:'.length);
  const i = body.lastIndexOf(':');
  if (i > 0 && !body.slice(i + 1).includes('/')) return { dir: body.slice(0, i), tag: body.slice(i + 1) };
  return { dir: body };
}

export function isLocalRef(ref: string): boolean {
  return ref.startsWith('oci:') || ref.startsWith('docker-archive:') || (existsSync(ref) && statSync(ref).isFile());
}

export async function openImage(ref: string, opts: ResolveOptions): Promise<ImageSource> {
  if (ref.startsWith('oci:')) {
    const { dir, tag } = splitLayoutRef(ref);
    return openOciLayout(dir, tag, opts.platform);
  }
  if (ref.startsWith('docker-archive:') || (existsSync(ref) && statSync(ref).isFile())) {
    const body = ref.replace(/^docker-archive:/, '');
    const i = body.lastIndexOf(':');
    const [path, tag] = i > 0 && !existsSync(body) ? [body.slice(0, i), body.slice(i + 1)] : [body, undefined];
    return openDockerArchive(path, opts.workDir, tag);
  }
  const parsed = parseReference(ref);
  const client = new RegistryClient(parsed.registryHost, { insecure: opts.insecure });
  return openRegistryImage(client, parsed, opts.platform, ref);
}
