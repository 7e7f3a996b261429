/** OCI image objects as nydusify handles them, and the one interface every image source offers. */
import type { Readable } from 'node:stream';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: Platform;
  artifactType?: string;
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  'os.features'?: string[];
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
  subject?: Descriptor;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
}

export interface ImageConfig {
  architecture?: string;
  os?: string;
  config?: Record<string, unknown>;
  rootfs: { type: string; diff_ids: string[] };
  history?: Array<Record<string, unknown>>;
  [key: string]: unknown;
}

/** A resolved single-platform image that can be read layer by layer. */
export interface ImageSource {
  label: string;
  manifest: ImageManifest;
  manifestMediaType: string;
  config: ImageConfig;
  configBytes: Buffer;
  /** The manifest as stored (registry and OCI layout sources), e.g. for a `subject` pointing at it. */
  manifestDescriptor?: Descriptor;
  /** Where a registry source lives, so its blobs can be mounted into another repository. */
  registry?: { host: string; repository: string };
  openBlob(desc: Descriptor): Promise<Readable>;
  /** A byte range of a blob (registry Range request, or a file read). */
  readRange(desc: Descriptor, offset: number, length: number): Promise<Buffer>;
  close?(): Promise<void>;
}

export function platformMatches(p: Platform | undefined, want: string): boolean {
  if (!p) return false;
  const [os, arch, variant] = want.split('/');
  return p.os === os && p.architecture === arch && (!variant || p.variant === variant);
}

export function hostPlatform(): string {
  const arch = ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' } as Record<string, string>)[process.arch] ?? process.arch;
  return `linux/${arch}`;
}

/** Picks the manifest for a platform from an index; a clear error lists what is there. */
export function selectPlatform(index: ImageIndex, platform: string, label: string): Descriptor {
  const found = index.manifests.find((m) => platformMatches(m.platform, platform));
  if (!found) {
    const have = index.manifests.map((m) => (m.platform ? `${m.platform.os}/${m.platform.architecture}${m.platform.variant ? `/${m.platform.variant}` : ''}` : '?')).join(', ');
    throw new Error(`${label}: no manifest for platform ${platform} (index has: ${have || 'none'})`);
  }
  return found;
}
