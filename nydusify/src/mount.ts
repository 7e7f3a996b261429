/**
 * nydusify mount: serves a Nydus image (or a converted model) from its registry at a path, without a
 * container runtime: the bootstrap layer is pulled, and our nydusd mounts it read-only with the
 * registry as its backend, so only what is read crosses the network, each chunk verified. Runs in the
 * foreground until SIGINT or SIGTERM, then unmounts. This is how a model reaches a runtime that
 * cannot mount images as volumes: mount it here, bind-mount the path into the container.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CHUNK_TRACE_NAME } from '@nydus-ts/rafs/constants';
import { RegistryClient } from '@nydus-ts/registry/client';
import { lookupDockerCredentials } from '@nydus-ts/registry/docker-config';
import { parseReference, type ImageReference } from '@nydus-ts/registry/reference';
import { logger } from '@nydus-ts/common/log';
import { ANNOTATION_NYDUS_BOOTSTRAP, BOOTSTRAP_PATH, readBootstrapLayer } from './image/nydus-manifest.js';
import { openRegistryImage } from './image/registry-source.js';
import { startNydusdChild, type NydusdChild } from './nydusd-process.js';

export interface MountOptions {
  target: string;
  mountPath: string;
  insecure?: boolean;
  platform: string;
  /** Bootstrap, cache and nydusd's files; default a temporary directory removed at the end. */
  workDir?: string;
  /**
   * The blob cache (default `<work dir>/cache`). Mounts that share one reuse each other's chunks:
   * a fine-tune converted against its base fetches only what differs once the base is cached.
   */
  cacheDir?: string;
  nydusd?: string;
  /** fusedev (default) or erofs (kernel EROFS filled through fanotify). */
  fsDriver?: 'fusedev' | 'erofs';
  /** Prefetch at mount what the image lists (a model: its safetensors headers and small files). */
  prefetch?: boolean;
  /** A file of paths (one per line) to prefetch whole at mount instead, e.g. a model's shards. */
  prefetchFiles?: string;
  /** nydusd's file_readahead (bytes fetched beside a miss in the same file) and amplify_io; default nydusd's. */
  fileReadahead?: number;
  amplifyIo?: number;
}

export interface MountedImage {
  mountPath: string;
  daemon: NydusdChild;
  /** Stops nydusd (which unmounts) and removes a temporary work directory. */
  unmount(): Promise<void>;
}

/** Pulls the image's bootstrap layer into `dir` (image/image.boot and its chunk trace, if any). */
async function pullBootstrap(client: RegistryClient, ref: ImageReference, label: string, platform: string, dir: string): Promise<string> {
  const image = await openRegistryImage(client, ref, platform, label);
  const layer = image.manifest.layers.find((l) => l.annotations?.[ANNOTATION_NYDUS_BOOTSTRAP] === 'true');
  if (!layer) throw new Error(`${label} is not a Nydus image (no layer annotated ${ANNOTATION_NYDUS_BOOTSTRAP}); convert it with nydusify convert first`);
  const { bootstrap, chunkTrace } = await readBootstrapLayer(await client.getBlobBuffer(ref.repository, layer.digest));
  const path = join(dir, BOOTSTRAP_PATH);
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, bootstrap);
  if (chunkTrace !== undefined) await writeFile(join(path, '..', CHUNK_TRACE_NAME), chunkTrace);
  return path;
}

export async function mountImage(o: MountOptions): Promise<MountedImage> {
  const ref = parseReference(o.target);
  const ownWork = o.workDir === undefined;
  const work = o.workDir ?? (await mkdtemp(join(tmpdir(), 'nydusify-mount-')));
  try {
    await mkdir(work, { recursive: true });
    const client = new RegistryClient(ref.registryHost, { insecure: o.insecure });
    const bootstrap = await pullBootstrap(client, ref, o.target, o.platform, work);
    const creds = lookupDockerCredentials(ref.domain).credentials;
    const auth = creds && 'password' in creds ? Buffer.from(`${creds.username}:${creds.password}`).toString('base64') : undefined;
    const config = {
      device: {
        backend: { type: 'registry', config: { scheme: o.insecure ? 'http' : 'https', host: ref.registryHost, repo: ref.repository, ...(auth ? { auth } : {}) } },
        cache: { type: 'blobcache', config: { work_dir: o.cacheDir === undefined ? join(work, 'cache') : resolve(o.cacheDir) } },
      },
      mode: 'direct', enable_xattr: true,
      ...(o.fileReadahead === undefined ? {} : { file_readahead: o.fileReadahead }),
      ...(o.amplifyIo === undefined ? {} : { amplify_io: o.amplifyIo }),
      fs_prefetch: { enable: o.prefetch ?? false, threads_count: 4 },
    };
    const mountPath = resolve(o.mountPath);
    await mkdir(mountPath, { recursive: true });
    const daemon = await startNydusdChild({
      work, config, bootstrap, mountpoint: mountPath, nydusd: o.nydusd, logLevel: 'info',
      extraArgs: [...(o.fsDriver === 'erofs' ? ['--fs-driver', 'erofs'] : []), ...(o.prefetchFiles ? ['--prefetch-files', resolve(o.prefetchFiles)] : [])],
    });
    logger.info('image mounted', { target: o.target, mount_path: mountPath, nydusd_pid: daemon.pid, fs_driver: o.fsDriver ?? 'fusedev' });
    return {
      mountPath, daemon,
      async unmount() {
        await daemon.stop();
        if (ownWork) await rm(work, { recursive: true, force: true });
      },
    };
  } catch (e) {
    if (ownWork) await rm(work, { recursive: true, force: true });
    throw e;
  }
}
