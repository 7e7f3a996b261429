/**
 * Image references: `[host[:port]/]path/name[:tag][@algorithm:digest]`.
 *
 * Docker Hub defaults: a reference without a registry domain belongs to
 * `docker.io`; single-component Docker Hub names get the `library/` prefix;
 * the API host for `docker.io` is `registry-1.docker.io`.
 */
import { parseDigest } from './digest.js';

export const DOCKER_HUB_DOMAIN = 'docker.io';
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io';
export const DEFAULT_TAG = 'latest';
const NAME_MAX_LENGTH = 255;

export interface ImageReference {
  /** Registry domain as written, normalized for Docker Hub (`docker.io`). */
  domain: string;
  /** Host to talk to for the distribution API (`registry-1.docker.io` for Docker Hub). */
  registryHost: string;
  /** Repository path inside the registry, e.g. `library/alpine` or `ns/app`. */
  repository: string;
  tag?: string;
  digest?: string;
  /** What to ask the registry for: the digest if any, else the tag, else `latest`. */
  reference: string;
}

export class InvalidReferenceError extends Error {
  override readonly name = 'InvalidReferenceError';
  constructor(
    readonly input: string,
    reason: string,
  ) {
    super(`invalid image reference ${JSON.stringify(input)}: ${reason}`);
  }
}

const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN_NAME = `${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*`;
const IPV6 = '\\[[a-fA-F0-9:.%]+\\]';
const DOMAIN_RE = new RegExp(`^(?:${DOMAIN_NAME}|${IPV6})(?::[0-9]+)?$`);
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;

/** True when the first path element of a name is a registry domain rather than a namespace. */
function looksLikeDomain(first: string): boolean {
  return first === 'localhost' || first.includes('.') || first.includes(':') || first !== first.toLowerCase();
}

/** Map a registry domain to the host serving the API (Docker Hub aliases -> registry-1.docker.io). */
export function registryApiHost(domain: string): string {
  const d = domain.toLowerCase();
  if (d === DOCKER_HUB_DOMAIN || d === 'index.docker.io' || d === DOCKER_HUB_API_HOST) return DOCKER_HUB_API_HOST;
  return domain;
}

/** Normalize Docker Hub aliases to `docker.io`. */
function normalizeDomain(domain: string): string {
  const d = domain.toLowerCase();
  if (d === 'index.docker.io' || d === DOCKER_HUB_API_HOST) return DOCKER_HUB_DOMAIN;
  return domain;
}

/** Validate a repository path (`a/b/c`, lowercase components with `.`, `_`, `__`, `-` separators). */
export function validateRepository(repository: string): void {
  if (!repository) throw new InvalidReferenceError(repository, 'empty repository name');
  if (repository.length > NAME_MAX_LENGTH)
    throw new InvalidReferenceError(repository, `repository name longer than ${NAME_MAX_LENGTH} characters`);
  for (const comp of repository.split('/')) {
    if (!PATH_COMPONENT_RE.test(comp)) {
      const reason =
        comp !== comp.toLowerCase()
          ? 'repository name must be lowercase'
          : `invalid repository path component ${JSON.stringify(comp)}`;
      throw new InvalidReferenceError(repository, reason);
    }
  }
}

export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag);
}

/** Parse an image reference; throws InvalidReferenceError. */
export function parseReference(input: string): ImageReference {
  const s = input.trim();
  if (!s) throw new InvalidReferenceError(input, 'empty reference');
  if (/\s/.test(s)) throw new InvalidReferenceError(input, 'contains whitespace');
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s))
    throw new InvalidReferenceError(input, 'a reference has no URL scheme (drop "http://" / "https://")');

  let rest = s;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    try {
      parseDigest(digest);
    } catch (e) {
      throw new InvalidReferenceError(input, (e as Error).message);
    }
  }

  let tag: string | undefined;
  const lastColon = rest.lastIndexOf(':');
  const lastSlash = rest.lastIndexOf('/');
  if (lastColon > lastSlash) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!TAG_RE.test(tag)) throw new InvalidReferenceError(input, `invalid tag ${JSON.stringify(tag)}`);
  }
  if (!rest) throw new InvalidReferenceError(input, 'missing repository name');

  let domain: string;
  let repository: string;
  const slash = rest.indexOf('/');
  if (slash >= 0 && looksLikeDomain(rest.slice(0, slash))) {
    domain = rest.slice(0, slash);
    repository = rest.slice(slash + 1);
    if (!DOMAIN_RE.test(domain)) throw new InvalidReferenceError(input, `invalid registry domain ${JSON.stringify(domain)}`);
    const port = /:([0-9]+)$/.exec(domain)?.[1];
    if (port !== undefined && (Number(port) < 1 || Number(port) > 65535))
      throw new InvalidReferenceError(input, `invalid port ${port}`);
    domain = normalizeDomain(domain);
  } else {
    domain = DOCKER_HUB_DOMAIN;
    repository = rest;
  }
  if (domain === DOCKER_HUB_DOMAIN && !repository.includes('/')) repository = `library/${repository}`;

  try {
    validateRepository(repository);
  } catch (e) {
    throw new InvalidReferenceError(input, (e as Error).message.replace(/^invalid image reference "[^"]*": /, ''));
  }
  if (domain.length + 1 + repository.length > NAME_MAX_LENGTH)
    throw new InvalidReferenceError(input, `name longer than ${NAME_MAX_LENGTH} characters`);

  return {
    domain,
    registryHost: registryApiHost(domain),
    repository,
    ...(tag !== undefined ? { tag } : {}),
    ...(digest !== undefined ? { digest } : {}),
    reference: digest ?? tag ?? DEFAULT_TAG,
  };
}

/** Canonical string: `domain/repository[:tag][@digest]` (tag `latest` added when neither is present). */
export function formatReference(ref: Pick<ImageReference, 'domain' | 'repository' | 'tag' | 'digest'>): string {
  let s = `${ref.domain}/${ref.repository}`;
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  else if (ref.digest === undefined) s += `:${DEFAULT_TAG}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/** A new reference with a different tag (and no digest), e.g. for `--target-suffix`. */
export function withTag(ref: ImageReference, tag: string): ImageReference {
  if (!TAG_RE.test(tag)) throw new InvalidReferenceError(tag, 'invalid tag');
  const { digest: _d, ...rest } = ref;
  void _d;
  return { ...rest, tag, reference: tag };
}
