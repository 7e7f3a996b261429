/**
 * One nydusd config per image, made from the template the snapshotter was given (--nydusd-config,
 * nydusd's own JSON, v1 or v2) the way nydus-snapshotter completes it: the registry host and
 * repository of the image, its credentials, and the snapshotter's cache directory.
 */

import { request } from 'node:https';

import { registryApiHost, parseReference, type ImageReference } from '@nydus-ts/registry/reference';
import { lookupDockerCredentials } from '@nydus-ts/registry/docker-config';
import { logger } from '@nydus-ts/common/log';
import { NydusdConfigFile, type RegistryAccess } from '@nydus-ts/nydusd/config-file';
import { blobEntryConfig, type ParseOptions } from '@nydus-ts/nydusd/config';
import { failedPrecondition } from './errors.js';

export interface ImageAccess {
  ref: ImageReference;
  /** base64(user:password), as nydusd's `auth` wants it; undefined for anonymous. */
  auth?: string;
  /** Where the credentials came from, for the log (never the credentials). */
  authSource: 'labels' | 'docker-config' | 'none';
}

/** Credentials in nydus-snapshotter's order: snapshot labels, then the docker config. */
export function imageAccess(imageRef: string, fromLabels: { username: string; password: string } | undefined): ImageAccess {
  let ref: ImageReference;
  try {
    ref = parseReference(imageRef);
  } catch (e) {
    throw failedPrecondition(`image reference from the layer labels: ${(e as Error).message}`);
  }
  const basic = (u: string, p: string) => Buffer.from(`${u}:${p}`).toString('base64');
  if (fromLabels) return { ref, auth: basic(fromLabels.username, fromLabels.password), authSource: 'labels' };
  const found = lookupDockerCredentials(ref.domain);
  for (const w of found.warnings) logger.warn('docker config', { warning: w });
  const c = found.credentials;
  if (c && 'password' in c) return { ref, auth: basic(c.username, c.password), authSource: 'docker-config' };
  return { ref, authSource: 'none' };
}

const schemeCache = new Map<string, 'https' | 'http'>();

/** Loopback registries (127.0.0.0/8, ::1, localhost) may take credentials over plain HTTP, as Docker allows. */
function isLoopback(host: string): boolean {
  const name = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return name === 'localhost' || name === '::1' || /^127\.\d+\.\d+\.\d+$/.test(name);
}

/**
 * Credentials cross plain HTTP only where the operator said so (scheme "http" in the template, so
 * never probed) or to a registry on this host, never because a probe found no TLS.
 */
export function detectedSchemeAllowsCredentials(host: string, detected: 'https' | 'http'): boolean {
  return detected === 'https' || isLoopback(host);
}

/**
 * https, or http only when the registry answered a TLS handshake in plain HTTP (OpenSSL's "wrong
 * version number"): a template that leaves `scheme` empty works for public registries and for a
 * plain-HTTP one on a private network. Anything else (a timeout, a reset, a refused connection, a
 * certificate problem) is an error, never a downgrade, and nothing but an answer is remembered.
 */
export function detectScheme(host: string): Promise<'https' | 'http'> {
  const known = schemeCache.get(host);
  if (known !== undefined) return Promise.resolve(known);
  return new Promise((resolve, reject) => {
    const req = request({ host: host.replace(/:\d+$/, ''), port: /:(\d+)$/.exec(host)?.[1] ?? 443, path: '/v2/', method: 'GET', rejectUnauthorized: false, timeout: 3000 }, (res) => {
      res.resume();
      schemeCache.set(host, 'https');
      resolve('https');
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out after 3 s'), { code: 'ETIMEDOUT' })));
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ERR_SSL_WRONG_VERSION_NUMBER' || /wrong version number/i.test(e.message)) {
        schemeCache.set(host, 'http');
        return resolve('http');
      }
      reject(failedPrecondition(`cannot tell whether registry ${host} speaks https or http (${e.code ?? e.message}): set "scheme" in the nydusd config template`));
    });
    req.end();
  });
}

/**
 * The template as a nydusd config. With fs_driver fscache, nydus-snapshotter's template is a
 * BlobCacheEntry (`{"type": "bootstrap", "domain_id"?, "config": {"backend_type", ...}}`): its config
 * becomes a nydusd config and its `domain_id` the shared domain ("" for each image its own).
 */
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function nydusdTemplate(json: unknown): { template: unknown; domainId: string } {
  if (!isObject(json) || !isObject(json.config) || json.device !== undefined) return { template: json, domainId: '' };
  const domainId = typeof json.domain_id === 'string' ? json.domain_id : '';
  return { template: blobEntryConfig(json.config).json, domainId };
}

export function isLocalfsTemplate(template: unknown): boolean {
  return NydusdConfigFile.template(template).backendType === 'localfs';
}

/**
 * The template with this image's backend and cache filled in (`access` is needed for a registry
 * backend), checked by nydusd's own parser. Throws on a template it cannot complete.
 */
export async function imageDaemonConfig(template: unknown, access: ImageAccess | undefined, cacheDir: string, opts?: ParseOptions): Promise<Record<string, unknown>> {
  const file = NydusdConfigFile.template(template);
  let registry: RegistryAccess | undefined;
  if (file.backendType === 'registry' && access !== undefined) {
    const host = registryApiHost(access.ref.domain);
    let scheme = file.registryScheme as 'https' | 'http' | undefined;
    if (scheme === undefined) {
      scheme = await detectScheme(host);
      if (access.auth !== undefined && !detectedSchemeAllowsCredentials(host, scheme)) {
        throw failedPrecondition(`registry ${host} answers only plain HTTP: refusing to send its credentials unencrypted; set "scheme": "http" in the nydusd config template to allow it`);
      }
    }
    registry = { host, repo: access.ref.repository, scheme, ...(access.auth !== undefined ? { auth: access.auth } : {}) };
  }
  return file.forImage(registry, cacheDir, opts).json;
}
