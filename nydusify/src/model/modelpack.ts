/**
 * The CNCF ModelPack artifact as nydusify reads it: which manifests are models, and what each layer
 * holds (one file, or a tar of files), in what format and at what path. Both the current
 * `vnd.cncf.model` names and the legacy `vnd.cnai.model` ones (modctl up to v0.2.x) are accepted.
 */
import type { Descriptor, ImageManifest } from '../image/types.js';

const MANIFEST_TYPE = /^application\/vnd\.(cncf|cnai)\.model\.manifest\.v1\+json$/;
const CONFIG_TYPE = /^application\/vnd\.(cncf|cnai)\.model\.config\.v1\+json$/;
const LAYER_TYPE = /^application\/vnd\.(cncf|cnai)\.model\.(weight\.config|weight|doc|code|dataset)\.v1\.(raw|tar|tar\+gzip|tar\+zstd)$/;

export type ModelLayerKind = 'weight' | 'weight.config' | 'doc' | 'code' | 'dataset';
/** raw: the file's exact bytes; tar: an uncompressed tar; the rest: compressed tars. */
export type ModelLayerFormat = 'raw' | 'tar' | 'tar+gzip' | 'tar+zstd';

/** The file metadata annotation (`org.cncf.model.file.metadata+json`). */
export interface ModelFileMetadata {
  name?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  /** RFC 3339, as Go's time.Time marshals. */
  mtime?: string;
  typeflag?: number;
}

export interface ModelLayer {
  desc: Descriptor;
  kind: ModelLayerKind;
  format: ModelLayerFormat;
  /** `org.cncf.model.filepath`: the file's (raw) or the tar's root (tar) path in the model. */
  path: string | undefined;
  metadata: ModelFileMetadata | undefined;
}

export class ModelArtifactError extends Error {
  override name = 'ModelArtifactError';
}

/** Whether a manifest is a ModelPack model (by artifact type, or by config type for older writers). */
export const isModelManifest = (m: ImageManifest): boolean =>
  MANIFEST_TYPE.test(m.artifactType ?? '') || CONFIG_TYPE.test(m.config?.mediaType ?? '');

function annotation(desc: Descriptor, key: 'filepath' | 'file.metadata+json'): string | undefined {
  return desc.annotations?.[`org.cncf.model.${key}`] ?? desc.annotations?.[`org.cnai.model.${key}`];
}

/** Reads what a model layer is; unknown media types and unreadable annotations are errors naming the layer. */
export function modelLayerOf(desc: Descriptor): ModelLayer {
  const m = LAYER_TYPE.exec(desc.mediaType);
  if (!m) throw new ModelArtifactError(`layer ${desc.digest}: ${desc.mediaType} is not a ModelPack layer type`);
  const format = m[3] as ModelLayerFormat;
  const path = annotation(desc, 'filepath');
  const raw = annotation(desc, 'file.metadata+json');
  let metadata: ModelFileMetadata | undefined;
  if (raw !== undefined) {
    try {
      metadata = JSON.parse(raw) as ModelFileMetadata;
    } catch (e) {
      throw new ModelArtifactError(`layer ${desc.digest}: file metadata annotation is not JSON: ${(e as Error).message}`);
    }
  }
  if (format === 'raw') {
    if (!path) throw new ModelArtifactError(`layer ${desc.digest}: a raw layer needs the org.cncf.model.filepath annotation`);
    // typeflag 0 (Go's zero) or '0' (tar's): a regular file is the only thing a raw layer can be.
    if (metadata?.typeflag !== undefined && metadata.typeflag !== 0 && metadata.typeflag !== 48) {
      throw new ModelArtifactError(`layer ${desc.digest}: raw layer of typeflag ${metadata.typeflag}, not a regular file`);
    }
    if (metadata?.size !== undefined && metadata.size !== desc.size) {
      throw new ModelArtifactError(`layer ${desc.digest}: metadata says ${metadata.size} bytes, the layer has ${desc.size}`);
    }
  }
  return { desc, kind: m[2] as ModelLayerKind, format, path, metadata };
}
