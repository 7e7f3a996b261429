/**
 * bench/coldstart registry: the CNCF distribution registry (Debian's docker-registry 2.8) inside a
 * link's network namespace, so every pull crosses the shaped link, with accounting of what it served.
 *
 * The accounting reads the registry's own log: with `log.formatter: json` it writes one line per
 * request to stderr, `"msg":"response completed"` (or `"response completed with error"`), carrying
 * `http.request.method`, `http.request.uri`, `http.response.status` and `http.response.written`:
 * the response body bytes the handler wrote (headers not included). The lines are parsed as they
 * arrive and also copied to `logFile` (stderr, plus the Apache-style access log on stdout).
 *
 * Storage is a caller-owned directory kept across runs: push once, pull many times.
 */
import crypto from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { request } from 'undici';
import { makeTempDir, spawnProcess, waitForUrl } from '@nydus-ts/harness/process';
import type { Link } from './link.js';

export const REGISTRY_BINARY = process.env.REGISTRY_BINARY ?? '/usr/bin/docker-registry';

export interface RegistryCounters {
  /** Requests answered, every method and route. */
  requests: number;
  /** Response body bytes sent, all requests. */
  bytes: number;
  /** GET requests of a blob (whole or ranged; uploads and HEAD excluded). */
  blobRequests: number;
  /** Response body bytes of those. */
  blobBytes: number;
}

/** Counters at one point in time, from mark(). */
export type RegistryMark = Readonly<RegistryCounters>;

export interface BenchRegistry {
  /** e.g. "10.201.0.2:5000" */
  readonly address: string;
  /** e.g. "http://10.201.0.2:5000" */
  readonly url: string;
  readonly storageDir: string;
  readonly logFile: string;
  readonly pid: number;
  /** Totals since start, as parsed so far (no waiting: see mark/since). */
  counters(): RegistryCounters;
  /** Counters once every request answered before this call is accounted for. */
  mark(): Promise<RegistryMark>;
  /** What was served between `mark` and now, once every request answered before now is accounted for. */
  since(mark: RegistryMark): Promise<RegistryCounters>;
  stop(): Promise<void>;
}

export interface StartRegistryOptions {
  /** Filesystem storage root, created if missing and never removed. */
  storageDir: string;
  /** Default 5000. */
  port?: number;
  /** The registry's stdout and stderr are appended here. */
  logFile: string;
}

// Our own probes, told apart from real traffic by this query string and never counted.
const SYNC_PARAM = 'nybench-sync';
const BLOB_GET = /^\/v2\/.+\/blobs\/[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export async function startRegistry(link: Link, o: StartRegistryOptions): Promise<BenchRegistry> {
  const address = `${link.nsAddress}:${o.port ?? 5000}`;
  const url = `http://${address}`;
  mkdirSync(o.storageDir, { recursive: true });
  mkdirSync(path.dirname(o.logFile), { recursive: true });
  const tmp = makeTempDir('nybench-registry');
  const configPath = path.join(tmp.dir, 'config.yml');
  writeFileSync(configPath, registryConfig(path.resolve(o.storageDir), address));

  // REGISTRY_* variables override the config file: do not inherit them.
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('REGISTRY_')) env[k] = v;
  const proc = spawnProcess('ip', ['netns', 'exec', link.netns, REGISTRY_BINARY, 'serve', configPath], {
    name: `docker-registry(${address})`,
    env,
    logFile: o.logFile,
  });

  const totals: RegistryCounters = { requests: 0, bytes: 0, blobRequests: 0, blobBytes: 0 };
  let lastSync = -1;
  let syncSeq = 0;
  const waiters = new Set<() => void>();
  onLines(proc.child.stderr!, (line) => {
    const entry = parseResponseLine(line);
    if (!entry) return;
    const sync = syncNumber(entry.uri);
    if (sync !== undefined) {
      lastSync = Math.max(lastSync, sync);
      for (const w of waiters) w();
      return;
    }
    totals.requests++;
    totals.bytes += entry.written;
    if (entry.method === 'GET' && BLOB_GET.test(entry.uri)) {
      totals.blobRequests++;
      totals.blobBytes += entry.written;
    }
  });

  /**
   * Every request whose response a client has fully received is already in the log: the registry
   * writes the line when its handler returns, before Go's server flushes the last buffered bytes.
   * So after a probe is answered, its own line arriving means the earlier ones have arrived too.
   */
  async function sync(): Promise<void> {
    const n = ++syncSeq;
    await httpGet(`${url}/v2/?${SYNC_PARAM}=${n}`);
    await new Promise<void>((resolve, reject) => {
      const check = () => {
        if (lastSync < n) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`registry ${address}: no log line for probe ${n} after 10 s (see ${o.logFile})`));
      }, 10_000);
      waiters.add(check);
      check();
    });
  }

  try {
    await waitForUrl(`${url}/v2/?${SYNC_PARAM}=0`, { timeoutMs: 20_000, process: proc, accept: (s) => s === 200 });
  } catch (e) {
    await proc.stop(1000);
    await tmp.remove();
    throw e;
  }

  let stopped = false;
  return {
    address,
    url,
    storageDir: o.storageDir,
    logFile: o.logFile,
    pid: proc.pid,
    counters: () => ({ ...totals }),
    async mark() {
      await sync();
      return Object.freeze({ ...totals });
    },
    async since(mark) {
      await sync();
      return {
        requests: totals.requests - mark.requests,
        bytes: totals.bytes - mark.bytes,
        blobRequests: totals.blobRequests - mark.blobRequests,
        blobBytes: totals.blobBytes - mark.blobBytes,
      };
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await proc.stop(5000);
      await tmp.remove();
    },
  };
}

function registryConfig(storageDir: string, address: string): string {
  const q = (s: string) => JSON.stringify(s); // JSON strings are valid YAML scalars
  // info is the level of "response completed"; upload purging would delete a half-pushed image.
  return (
    `version: 0.1\n` +
    `log:\n  level: info\n  formatter: json\n  accesslog:\n    disabled: false\n` +
    `storage:\n  filesystem:\n    rootdirectory: ${q(storageDir)}\n  delete:\n    enabled: true\n` +
    `  maintenance:\n    uploadpurging:\n      enabled: false\n` +
    `http:\n  addr: ${q(address)}\n  secret: ${crypto.randomBytes(16).toString('hex')}\n`
  );
}

interface ResponseLine {
  method: string;
  uri: string;
  status: number;
  written: number;
}

export function parseResponseLine(line: string): ResponseLine | undefined {
  if (!line.startsWith('{') || !line.includes('"response completed')) return undefined;
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof j.msg !== 'string' || !j.msg.startsWith('response completed')) return undefined;
  return {
    method: String(j['http.request.method'] ?? ''),
    uri: String(j['http.request.uri'] ?? ''),
    status: Number(j['http.response.status'] ?? 0),
    written: Number(j['http.response.written'] ?? 0),
  };
}

function syncNumber(uri: string): number | undefined {
  const m = new RegExp(`^/v2/\\?${SYNC_PARAM}=(\\d+)$`).exec(uri);
  return m ? Number(m[1]) : undefined;
}

function onLines(stream: NodeJS.ReadableStream, fn: (line: string) => void): void {
  let rest = '';
  stream.on('data', (chunk: Buffer) => {
    const lines = (rest + chunk.toString('utf8')).split('\n');
    rest = lines.pop()!;
    for (const line of lines) fn(line);
  });
}

function httpGet(url: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 10_000 }, (res) => {
      res.resume();
      res.once('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`GET ${url}: ${res.statusCode}`))));
    });
    req.once('timeout', () => req.destroy(new Error(`GET ${url}: timed out`)));
    req.once('error', reject);
  });
}

/**
 * The link's rate as one client sees it: bytes per second of one ranged read (up to 16 MiB) of
 * `blob`, timed from its first byte (so the request's round trip is not counted).
 */
export async function blobReadRate(registry: BenchRegistry, repo: string, blob: { digest: string; size: number }): Promise<number> {
  const len = Math.min(blob.size, 16 * 1024 * 1024);
  const res = await request(`${registry.url}/v2/${repo}/blobs/${blob.digest}`, { headers: { range: `bytes=0-${len - 1}` } });
  let first: number | undefined;
  let got = 0;
  for await (const chunk of res.body) {
    first ??= performance.now();
    got += (chunk as Buffer).length;
  }
  if (got !== len) throw new Error(`link rate probe: got ${got} of ${len} bytes`);
  return got / ((performance.now() - first!) / 1000);
}
