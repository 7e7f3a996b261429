/**
 * The labels containerd passes to a snapshotter (only `containerd.io/snapshot/*` and
 * `containerd.io/snapshot.ref` survive its filter) and what they tell us.
 */

import { invalidArgument } from './errors.js';

/** On an unpack Prepare: the chain ID the layer will be committed under. */
export const TARGET_REF = 'containerd.io/snapshot.ref';

const P = 'containerd.io/snapshot/';
/** Nydus manifest annotations, copied onto layer labels by the unpacker. */
export const NYDUS_BLOB = `${P}nydus-blob`;
export const NYDUS_BOOTSTRAP = `${P}nydus-bootstrap`;
/** Set by CRI (and nerdctl) with `disable_snapshot_annotations = false`. */
export const CRI_IMAGE_REF = `${P}cri.image-ref`;
export const CRI_LAYER_DIGEST = `${P}cri.layer-digest`;
/** Set by ctr-remote (stargz-snapshotter's client). */
export const STARGZ_REF = `${P}remote/stargz.reference`;
export const STARGZ_DIGEST = `${P}remote/stargz.digest`;
/** Registry credentials for this image (nydus-snapshotter's first source). */
export const PULL_USERNAME = `${P}pullusername`;
export const PULL_SECRET = `${P}pullsecret`;
/** Set by us on snapshots whose data stays in the registry. */
export const REMOTE = `${P}remote`;

/** containerd refuses labels whose key and value together exceed this. */
const MAX_LABEL_BYTES = 4096;

export type Labels = Record<string, string>;

export function validateLabels(labels: Labels): void {
  for (const [k, v] of Object.entries(labels)) {
    if (k === '') throw invalidArgument('label key must not be empty');
    const size = Buffer.byteLength(k) + Buffer.byteLength(v);
    if (size > MAX_LABEL_BYTES) throw invalidArgument(`label ${JSON.stringify(k.slice(0, 64))}: key and value are ${size} bytes, more than ${MAX_LABEL_BYTES}`);
  }
}

/** The image this layer belongs to: CRI's label first, then ctr-remote's. */
export function imageRef(labels: Labels): string | undefined {
  return labels[CRI_IMAGE_REF] || labels[STARGZ_REF] || undefined;
}

export function layerDigest(labels: Labels): string | undefined {
  return labels[CRI_LAYER_DIGEST] || labels[STARGZ_DIGEST] || undefined;
}

/** nydus-snapshotter tests key presence only; so do we. */
export const isNydusBlob = (labels: Labels) => Object.hasOwn(labels, NYDUS_BLOB);
export const isNydusBootstrap = (labels: Labels) => Object.hasOwn(labels, NYDUS_BOOTSTRAP);

export function labelCredentials(labels: Labels): { username: string; password: string } | undefined {
  const username = labels[PULL_USERNAME];
  const password = labels[PULL_SECRET];
  return username && password ? { username, password } : undefined;
}
