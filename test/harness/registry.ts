/**
 * Runs the real distribution registry (Debian package docker-registry 2.8,
 * `/usr/bin/docker-registry`) for tests, with filesystem storage in a temp
 * dir, deletes enabled, and optional htpasswd or token authentication.
 */
import crypto from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { getFreePort, makeTempDir, runCommand, spawnProcess, waitForUrl } from './process.js';
import { startTokenIssuer, type TokenIssuer, type TokenIssuerOptions } from './token-issuer.js';

export const REGISTRY_BINARY = process.env.REGISTRY_BINARY ?? '/usr/bin/docker-registry';

export interface StartRegistryOptions {
  auth?: 'none' | 'htpasswd' | 'token';
  /** Default "testuser" when auth is htpasswd/token. */
  username?: string;
  /** Default "testpassword" when auth is htpasswd/token. */
  password?: string;
  /** Token issuer options (auth: 'token'); users default to {username: password}. */
  token?: Omit<TokenIssuerOptions, 'service' | 'issuer'>;
  /** Registry log level. Default 'debug'. */
  logLevel?: 'error' | 'warn' | 'info' | 'debug';
  /** Extra top-level YAML appended to the generated config. */
  extraConfig?: string;
  /** Address to listen on (e.g. a test LAN's host address, see netns.ts). Default 127.0.0.1. */
  listenAddress?: string;
  /** Serve HTTPS with a certificate for the listen address, signed by a CA made for this registry. */
  tls?: boolean;
}

export interface RunningRegistry {
  /** 127.0.0.1:PORT (or listenAddress:PORT) */
  host: string;
  /** http://127.0.0.1:PORT (https:// with `tls`) */
  url: string;
  /** With `tls`: the PEM file of the CA that signed the registry's certificate. */
  caPath?: string;
  username?: string;
  password?: string;
  /** Filesystem storage root. */
  dataDir: string;
  /** Path of the generated config.yml. */
  configPath: string;
  /** Registry process id. */
  pid: number;
  /** Token issuer when auth is 'token'. */
  tokenIssuer?: TokenIssuer;
  stop(): Promise<void>;
  /** Registry log output (stdout+stderr). */
  logs(): string;
}

let checkedBinary = false;
function ensureBinary(): void {
  if (checkedBinary) return;
  if (!existsSync(REGISTRY_BINARY)) {
    throw new Error(
      `${REGISTRY_BINARY} not found: install the registry with 'apt-get install -y docker-registry' (or set REGISTRY_BINARY)`,
    );
  }
  checkedBinary = true;
}

async function bcryptHtpasswd(user: string, pass: string): Promise<string> {
  try {
    const { stdout } = await runCommand('htpasswd', ['-Bbn', user, pass]);
    return stdout.trim();
  } catch (e) {
    throw new Error(
      `htpasswd failed (is apache2-utils installed? 'apt-get install -y apache2-utils'): ${(e as Error).message}`,
    );
  }
}

const yamlString = (s: string) => JSON.stringify(s); // JSON strings are valid YAML double-quoted scalars

export async function startRegistry(opts: StartRegistryOptions = {}): Promise<RunningRegistry> {
  ensureBinary();
  const auth = opts.auth ?? 'none';
  const username = auth === 'none' ? opts.username : (opts.username ?? 'testuser');
  const password = auth === 'none' ? opts.password : (opts.password ?? 'testpassword');

  const tmp = makeTempDir('registry');
  const dataDir = path.join(tmp.dir, 'data');
  const configPath = path.join(tmp.dir, 'config.yml');
  const logFile = path.join(tmp.dir, 'registry.log');

  let tokenIssuer: TokenIssuer | undefined;
  const cleanupOnError = async () => {
    await tokenIssuer?.stop().catch(() => undefined);
    await tmp.remove();
  };

  try {
    let authYaml = '';
    if (auth === 'htpasswd') {
      const htpasswdPath = path.join(tmp.dir, 'htpasswd');
      writeFileSync(htpasswdPath, `${await bcryptHtpasswd(username!, password!)}\n`);
      authYaml = `auth:\n  htpasswd:\n    realm: basic-realm\n    path: ${yamlString(htpasswdPath)}\n`;
    } else if (auth === 'token') {
      tokenIssuer = await startTokenIssuer({
        users: { [username!]: password! },
        ...opts.token,
      });
      authYaml =
        `auth:\n  token:\n` +
        `    realm: ${yamlString(tokenIssuer.realm)}\n` +
        `    service: ${yamlString(tokenIssuer.service)}\n` +
        `    issuer: ${yamlString(tokenIssuer.issuer)}\n` +
        `    rootcertbundle: ${yamlString(tokenIssuer.certPath)}\n`;
    }

    const listen = opts.listenAddress ?? '127.0.0.1';
    const port = await getFreePort(listen);
    const host = `${listen}:${port}`;
    const tls = opts.tls ? await makeCertificates(tmp.dir, listen) : undefined;
    const config =
      `version: 0.1\n` +
      `log:\n  level: ${opts.logLevel ?? 'debug'}\n  formatter: text\n  fields:\n    service: registry\n` +
      `storage:\n  filesystem:\n    rootdirectory: ${yamlString(dataDir)}\n  delete:\n    enabled: true\n` +
      `  maintenance:\n    uploadpurging:\n      enabled: false\n` +
      `http:\n  addr: ${host}\n  secret: ${crypto.randomBytes(16).toString('hex')}\n` +
      `  headers:\n    X-Content-Type-Options: [nosniff]\n` +
      (tls ? `  tls:\n    certificate: ${yamlString(tls.cert)}\n    key: ${yamlString(tls.key)}\n` : '') +
      authYaml +
      (opts.extraConfig ?? '');
    writeFileSync(configPath, config);

    // REGISTRY_* variables override the config file: do not inherit them.
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('REGISTRY_')) env[k] = v;

    const proc = spawnProcess(REGISTRY_BINARY, ['serve', configPath], {
      name: `docker-registry(${host})`,
      env,
      cwd: tmp.dir,
      logFile,
    });
    try {
      // A TLS listener answers plain HTTP with 400: that it answers is what counts.
      await waitForUrl(`http://${host}/v2/`, {
        timeoutMs: 20_000,
        process: proc,
        accept: (s) => s === 200 || s === 401 || (tls !== undefined && s === 400),
      });
    } catch (e) {
      await proc.stop(1000);
      throw e;
    }

    let stopped = false;
    return {
      host,
      url: `${tls ? 'https' : 'http'}://${host}`,
      ...(tls ? { caPath: tls.ca } : {}),
      username,
      password,
      dataDir,
      configPath,
      pid: proc.pid,
      tokenIssuer,
      logs: () => proc.logs(),
      async stop() {
        if (stopped) return;
        stopped = true;
        await proc.stop(5000);
        await tokenIssuer?.stop();
        await tmp.remove();
      },
    };
  } catch (e) {
    await cleanupOnError();
    throw e;
  }
}

/** A CA and a server certificate for `address` (an IP) signed by it, made with openssl in `dir`. */
async function makeCertificates(dir: string, address: string): Promise<{ ca: string; cert: string; key: string }> {
  const f = (n: string) => path.join(dir, n);
  writeFileSync(f('san.ext'), `subjectAltName=IP:${address}\nextendedKeyUsage=serverAuth\n`);
  await runCommand('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '2', '-subj', '/CN=nydus-ts test CA']);
  await runCommand('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', `/CN=${address}`]);
  await runCommand('openssl', ['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.crt'), '-days', '2', '-extfile', f('san.ext')]);
  return { ca: f('ca.crt'), cert: f('server.crt'), key: f('server.key') };
}
