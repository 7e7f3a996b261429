/** OCI, Docker and Nydus media types. */

// OCI image spec
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';
export const OCI_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar';
export const OCI_LAYER_TAR_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const OCI_LAYER_TAR_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
export const OCI_LAYER_NONDISTRIBUTABLE_TAR = 'application/vnd.oci.image.layer.nondistributable.v1.tar';
export const OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP = 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip';
export const OCI_LAYER_NONDISTRIBUTABLE_TAR_ZSTD = 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd';

// Docker image manifest v2
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
export const DOCKER_LAYER_TAR_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
export const DOCKER_LAYER_FOREIGN_TAR_GZIP = 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip';
export const DOCKER_PLUGIN_CONFIG = 'application/vnd.docker.plugin.v1+json';
/** Legacy schema 1 (read-only support; never produced). */
export const DOCKER_MANIFEST_V1 = 'application/vnd.docker.distribution.manifest.v1+json';
export const DOCKER_MANIFEST_V1_SIGNED = 'application/vnd.docker.distribution.manifest.v1+prettyjws';

// Nydus
export const NYDUS_BLOB_LAYER = 'application/vnd.oci.image.layer.nydus.blob.v1';
/** Config media type of a Nydus manifest inside a merged (OCI + Nydus) index. */
export const NYDUS_CONFIG = 'application/vnd.nydus.image.config.v1+json';
/** artifactType of Nydus manifests in a merged index. */
export const NYDUS_ARTIFACT_TYPE = 'application/vnd.nydus.image.manifest.v1+json';

/** Single-image manifests. */
export const MANIFEST_MEDIA_TYPES: readonly string[] = [OCI_MANIFEST, DOCKER_MANIFEST];
/** Multi-platform indexes. */
export const INDEX_MEDIA_TYPES: readonly string[] = [OCI_INDEX, DOCKER_MANIFEST_LIST];

/** Default Accept list for manifest requests (indexes and manifests, OCI and Docker). */
export const DEFAULT_MANIFEST_ACCEPT: readonly string[] = [
  OCI_INDEX,
  OCI_MANIFEST,
  DOCKER_MANIFEST_LIST,
  DOCKER_MANIFEST,
];

export function isIndexMediaType(mt: string): boolean {
  return INDEX_MEDIA_TYPES.includes(mt);
}

export function isManifestMediaType(mt: string): boolean {
  return MANIFEST_MEDIA_TYPES.includes(mt);
}

export function isSchema1MediaType(mt: string): boolean {
  return mt === DOCKER_MANIFEST_V1 || mt === DOCKER_MANIFEST_V1_SIGNED;
}

export function isConfigMediaType(mt: string): boolean {
  return mt === OCI_CONFIG || mt === DOCKER_CONFIG || mt === NYDUS_CONFIG;
}

/** Any layer media type (OCI, Docker, Nydus blob); containerd treats the OCI layer prefix as a layer. */
export function isLayerMediaType(mt: string): boolean {
  return (
    mt.startsWith('application/vnd.oci.image.layer.') ||
    mt === DOCKER_LAYER_TAR_GZIP ||
    mt === DOCKER_LAYER_FOREIGN_TAR_GZIP
  );
}

/** Strip parameters (`; charset=utf-8`) and lowercase a Content-Type value. */
export function baseMediaType(contentType: string | undefined | null): string {
  if (!contentType) return '';
  return contentType.split(';')[0]!.trim().toLowerCase();
}
