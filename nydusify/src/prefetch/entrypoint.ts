/**
 * The files an image's own command needs before it can do anything: /etc/passwd and /etc/group
 * (the runtime resolves the user), the entrypoint, its script interpreter, the ELF dynamic loader,
 * /etc/ld.so.cache and every shared library the loader maps, found the way glibc's loader finds
 * them; then the libraries a program's own (not the system's) libraries name for dlopen and ship
 * beside themselves (as a JVM launcher loads libjvm.so), the start-up files of a CPython
 * interpreter (cpython.ts), and the local time zone's file. An image
 * converted without a workload trace gets this as its prefetch table, so nydusd starts fetching
 * them at mount, while containerd is still creating the container, instead of one miss at a time
 * after exec.
 *
 * Static, from the image alone: libraries loaded with dlopen under names built at run time, system
 * libraries' optional modules, and data files are not here (`nydusify optimize` records those).
 * Anything that cannot be resolved is left out, never fatal.
 */
import { sortedChildren, type FsNode } from '@nydus-ts/rafs/tree';
import { cpythonStartupFiles } from './cpython.js';
import { dlopenNames, isElf, multiarchTriplet, readElfDeps, type ElfDeps } from './elf.js';

/** Reads a regular file's bytes from the image being built. */
export type FileContent = (node: FsNode, offset: number, length: number) => Buffer | undefined;

export interface ImageRunConfig {
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[] | null;
  WorkingDir?: string;
}

export interface EntrypointPrefetch {
  /** The command that was followed, as the image runs it. */
  argv0?: string;
  /** Canonical paths (no symlinks), in the order the kernel and loader open them. */
  files: string[];
  bytes: number;
  /** Files needed but left out because they would exceed the byte budget. */
  overBudget: string[];
}

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const MAX_SYMLINK_HOPS = 40;
const MAX_FILES = 512;
const MAX_CONF_BYTES = 64 * 1024;
/** How deep below a private library's directory, and over how many entries, a dlopen name is looked for. */
const DLOPEN_DEPTH = 2;
const DLOPEN_MAX_ENTRIES = 4096;
/** Read by the runtime in the container's rootfs before it execs anything (user and groups). */
export const RUNTIME_FILES = ['/etc/passwd', '/etc/group'];

interface Resolved {
  path: string;
  node: FsNode;
}

/** Resolves `path` in the tree, following symlinks as the kernel would (`..` after a symlink included). */
export function resolvePath(root: FsNode, path: string, cwd = '/'): Resolved | undefined {
  const pending = (path.startsWith('/') ? path : `${cwd}/${path}`).split('/');
  const stack: Array<[string, FsNode]> = [];
  let node = root;
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      stack.pop();
      node = stack.length > 0 ? stack[stack.length - 1]![1] : root;
      continue;
    }
    if (node.kind !== 'dir') return undefined;
    const child = node.children.get(part);
    if (!child) return undefined;
    if (child.kind === 'symlink') {
      if (++hops > MAX_SYMLINK_HOPS) return undefined;
      if (child.target.startsWith('/')) {
        stack.length = 0;
        node = root;
      }
      pending.unshift(...child.target.split('/'));
      continue;
    }
    stack.push([part, child]);
    node = child;
  }
  return { path: `/${stack.map(([n]) => n).join('/')}`, node };
}

const dirname = (p: string): string => p.slice(0, p.lastIndexOf('/')) || '/';
const envOf = (env: string[], name: string): string | undefined => env.find((e) => e.startsWith(`${name}=`))?.slice(name.length + 1);

export function entrypointPrefetch(root: FsNode, config: ImageRunConfig, read: FileContent, maxBytes: number): EntrypointPrefetch {
  const argv = [...(config.Entrypoint ?? []), ...(config.Cmd ?? [])];
  const env = config.Env ?? [];
  const cwd = config.WorkingDir || '/';
  const out: EntrypointPrefetch = { argv0: argv[0], files: [], bytes: 0, overBudget: [] };
  const seen = new Set<string>();
  const add = (r: Resolved): boolean => {
    if (seen.has(r.path) || seen.size >= MAX_FILES) return false;
    seen.add(r.path);
    if (out.bytes + r.node.size > maxBytes) out.overBudget.push(r.path);
    else {
      out.files.push(r.path);
      out.bytes += r.node.size;
    }
    return true;
  };
  const reader = (node: FsNode) => (offset: number, length: number) => read(node, offset, length);
  const searchPath = (name: string): Resolved | undefined => {
    if (name.includes('/')) return resolvePath(root, name, cwd);
    for (const dir of (envOf(env, 'PATH') ?? DEFAULT_PATH).split(':')) {
      const r = resolvePath(root, `${dir || '.'}/${name}`, cwd);
      if (r && r.node.kind === 'file' && (r.node.perm & 0o111) !== 0) return r;
    }
    return undefined;
  };

  let exe = argv[0] !== undefined ? searchPath(argv[0]) : undefined;
  if (!exe || exe.node.kind !== 'file') return out;

  // The runtime reads these before exec for every container (containerd resolves the user and its
  // groups in the rootfs), so they lead the table.
  for (const f of RUNTIME_FILES) {
    const r = resolvePath(root, f);
    if (r && r.node.kind === 'file') add(r);
  }

  // Executables: the command, then whatever interprets it (a #! line, then the ELF loader).
  const libraries: Array<{ deps: ElfDeps; origin: string; node: FsNode }> = [];
  for (let depth = 0; exe && exe.node.kind === 'file' && depth < 4; depth++) {
    if (!add(exe)) break;
    const head = read(exe.node, 0, 256);
    if (!head) break;
    if (head[0] === 0x23 && head[1] === 0x21) {
      const words = head.subarray(2).toString('latin1').split('\n')[0]!.trim().split(/\s+/);
      const interp = words[0] ? resolvePath(root, words[0]) : undefined;
      // `#!/usr/bin/env prog`: env then prog, found on PATH.
      const viaEnv = interp && /(^|\/)env$/.test(interp.path) ? words.slice(1).find((w) => !w.startsWith('-')) : undefined;
      if (interp && viaEnv) add(interp);
      exe = viaEnv ? searchPath(viaEnv) : interp;
      continue;
    }
    if (!isElf(head)) break;
    const deps = readElfDeps(reader(exe.node));
    if (!deps) break;
    if (deps.interp) {
      const loader = resolvePath(root, deps.interp);
      if (loader && loader.node.kind === 'file') add(loader);
      // glibc's loader consults its cache before the default directories.
      const cache = resolvePath(root, '/etc/ld.so.cache');
      if (cache && cache.node.kind === 'file') add(cache);
    }
    libraries.push({ deps, origin: dirname(exe.path), node: exe.node });
    break;
  }
  if (libraries.length === 0) return out;
  // The ELF program that runs: the command, or the interpreter of its #! line.
  const program = exe!.path;

  // Libraries, breadth first as the loader maps them, each matched to the executable's class and machine.
  const top = libraries[0]!.deps;
  const triplet = multiarchTriplet(top.machine, top.is64);
  const confDirs = ldSoConfDirs(root, read);
  const defaults = [
    ...(triplet ? [`/lib/${triplet}`, `/usr/lib/${triplet}`] : []),
    ...(top.is64 ? ['/lib64', '/usr/lib64'] : []),
    '/lib', '/usr/lib',
  ];
  const ldLibraryPath = (envOf(env, 'LD_LIBRARY_PATH') ?? '').split(/[:;]/).filter(Boolean);
  const expand = (dir: string, origin: string) => dir.replace(/\$(ORIGIN|\{ORIGIN\})/g, origin).replace(/\$(LIB|\{LIB\})/g, top.is64 ? 'lib64' : 'lib');
  const compatible = (r: Resolved): ElfDeps | undefined => {
    if (r.node.kind !== 'file') return undefined;
    const d = readElfDeps(reader(r.node));
    return d && d.machine === top.machine && d.is64 === top.is64 ? d : undefined;
  };
  // A library in one of these is the system's: what it names for dlopen is optional (NSS modules,
  // libgcc_s for unwinding) and left to on-demand reads.
  const systemDirs = new Set([...confDirs, ...defaults, ...(envOf(env, 'PATH') ?? DEFAULT_PATH).split(':')].map((d) => resolvePath(root, d)?.path ?? d));
  const loaded = new Set<string>();
  const filesBelowCache = new Map<string, Map<string, Resolved>>();
  for (let i = 0; i < libraries.length; i++) {
    const { deps, origin, node } = libraries[i]!;
    const dirs = [
      ...(deps.runpath.length === 0 ? deps.rpath.map((d) => expand(d, origin)) : []),
      ...ldLibraryPath,
      ...deps.runpath.map((d) => expand(d, origin)),
      ...confDirs, ...defaults,
    ];
    for (const name of deps.needed) {
      if (loaded.has(name)) continue;
      loaded.add(name);
      for (const dir of name.includes('/') ? [''] : dirs) {
        const r = resolvePath(root, name.includes('/') ? name : `${dir}/${name}`, cwd);
        const d = r && compatible(r);
        if (!r || !d) continue;
        if (add(r)) libraries.push({ deps: d, origin: dirname(r.path), node: r.node });
        break;
      }
    }
    if (systemDirs.has(origin)) continue;
    let below = filesBelowCache.get(origin);
    if (!below) filesBelowCache.set(origin, (below = filesBelow(root, origin)));
    for (const name of dlopenNames(reader(node))) {
      if (loaded.has(name)) continue;
      const r = below.get(name);
      const d = r && compatible(r);
      if (!r || !d) continue;
      loaded.add(name);
      if (add(r)) libraries.push({ deps: d, origin: dirname(r.path), node: r.node });
    }
  }
  // A language runtime's own start-up files, when the command is one we know.
  const image = {
    isDir: (p: string) => resolvePath(root, p)?.node.kind === 'dir',
    isFile: (p: string) => resolvePath(root, p)?.node.kind === 'file',
    list: (p: string) => {
      const d = resolvePath(root, p);
      return d?.node.kind === 'dir' ? sortedChildren(d.node).map(([n]) => n) : [];
    },
  };
  for (const path of cpythonStartupFiles(image, program, env, triplet)) {
    const r = resolvePath(root, path);
    if (r && r.node.kind === 'file') add(r);
  }
  // glibc reads the zone file behind /etc/localtime the first time a program asks for the local
  // time, which language runtimes do while they start (Python's and Java's, on bench/coldstart).
  const zone = resolvePath(root, '/etc/localtime');
  if (zone && zone.node.kind === 'file') add(zone);
  return out;
}

/**
 * The regular files in directory `dir` and below it (DLOPEN_DEPTH levels, DLOPEN_MAX_ENTRIES
 * entries at most), by name; where two share a name, the shallower (then first in name order) wins.
 */
function filesBelow(root: FsNode, dir: string): Map<string, Resolved> {
  const found = new Map<string, Resolved>();
  const start = resolvePath(root, dir);
  if (!start || start.node.kind !== 'dir') return found;
  const join = (d: string, n: string) => `${d === '/' ? '' : d}/${n}`;
  let level: Resolved[] = [start];
  let seen = 0;
  for (let depth = 0; depth <= DLOPEN_DEPTH && level.length > 0; depth++) {
    const next: Resolved[] = [];
    for (const d of level) {
      if (d.node.kind !== 'dir') continue;
      for (const [n, c] of sortedChildren(d.node)) {
        if (++seen > DLOPEN_MAX_ENTRIES) return found;
        if (c.kind === 'dir') next.push({ path: join(d.path, n), node: c });
        else if (c.kind === 'file' && !found.has(n)) found.set(n, { path: join(d.path, n), node: c });
      }
    }
    level = next;
  }
  return found;
}

/** The directories /etc/ld.so.conf lists, following `include` lines (globs of the form DIR/*SUFFIX). */
function ldSoConfDirs(root: FsNode, read: FileContent): string[] {
  const dirs: string[] = [];
  const visited = new Set<string>();
  const visit = (path: string) => {
    const r = resolvePath(root, path);
    if (!r || r.node.kind !== 'file' || visited.has(r.path) || r.node.size > MAX_CONF_BYTES) return;
    visited.add(r.path);
    const text = read(r.node, 0, r.node.size)?.toString('utf8') ?? '';
    for (const raw of text.split('\n')) {
      const line = raw.replace(/#.*/, '').trim();
      if (!line) continue;
      const inc = /^include\s+(.+)$/.exec(line);
      if (!inc) {
        dirs.push(line);
        continue;
      }
      for (const pattern of inc[1]!.split(/\s+/)) {
        const glob = /^(.*)\/\*([^/*]*)$/.exec(pattern.startsWith('/') ? pattern : `${dirname(r.path)}/${pattern}`);
        if (!glob) {
          visit(pattern);
          continue;
        }
        const dir = resolvePath(root, glob[1]!);
        if (!dir || dir.node.kind !== 'dir') continue;
        for (const name of [...dir.node.children.keys()].sort()) if (name.endsWith(glob[2]!)) visit(`${dir.path}/${name}`);
      }
    }
  };
  visit('/etc/ld.so.conf');
  return dirs;
}
