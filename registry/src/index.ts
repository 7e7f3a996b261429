/** OCI distribution client: public API. */
export { RegistryClient, DEFAULT_CHUNK_SIZE, MAX_MANIFEST_BYTES } from './client.js';
export type { RegistryClientOptions, ByteRange, PushBlobOptions, BlobSource } from './client.js';
export { RegistryError, UploadSourceError, parseErrorBody, redactUrl } from './errors.js';
export type { RegistryErrorDetail } from './errors.js';
export * from './media-types.js';
export {
  parseReference,
  formatReference,
  withTag,
  registryApiHost,
  validateRepository,
  isValidTag,
  InvalidReferenceError,
  DOCKER_HUB_DOMAIN,
  DOCKER_HUB_API_HOST,
  DEFAULT_TAG,
} from './reference.js';
export type { ImageReference } from './reference.js';
export { parseDigest, isDigest, computeDigest, Digester } from './digest.js';
export {
  defaultDockerConfigPath,
  lookupDockerCredentials,
  normalizeAuthKey,
  readDockerConfig,
} from './docker-config.js';
export type { RegistryCredentials, DockerConfigLookup } from './docker-config.js';
export { parseWwwAuthenticate } from './www-authenticate.js';
export type { AuthChallenge } from './www-authenticate.js';
