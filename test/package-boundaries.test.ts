// Package boundaries: every workspace package is used only through its `exports` map, and only by
// packages that declare it. A relative import that climbs out of its package, a deep import of
// another package's internals, or an undeclared dependency fails here, before it can spread.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, normalize, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(fileURLToPath(import.meta.url), '..', '..');

interface PackageJson {
  name: string;
  workspaces?: string[];
  exports?: Record<string, unknown>;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

interface Pkg {
  dir: string;
  json: PackageJson;
}

const readJson = (path: string): PackageJson => JSON.parse(readFileSync(path, 'utf8')) as PackageJson;

function workspacePackages(): Pkg[] {
  const root = readJson(join(ROOT, 'package.json'));
  return (root.workspaces ?? []).map((dir) => ({ dir, json: readJson(join(ROOT, dir, 'package.json')) }));
}

/** Module specifiers of static imports, re-exports and dynamic imports. */
function specifiers(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(/(?:^|[\s;{}])(?:import|export)\b[^'"\n;]*?\bfrom\s*'([^'\n]+)'|\bimport\(\s*'([^'\n]+)'\s*\)|^import\s+'([^'\n]+)'/gm)) {
    out.push(m[1] ?? m[2] ?? m[3]);
  }
  return out;
}

const isTestFile = (rel: string): boolean => rel.endsWith('.test.ts') || rel.split('/').includes('test');

/**
 * Violations in `files` (repository-relative path -> contents). The root package (bin/, scripts)
 * counts as one more package whose directory is the repository.
 */
export function boundaryViolations(files: Map<string, string>, pkgs: Pkg[], rootPkg: PackageJson): string[] {
  const byName = new Map(pkgs.map((p) => [p.json.name, p]));
  const owner = (rel: string): Pkg | undefined => pkgs.find((p) => rel === p.dir || rel.startsWith(`${p.dir}/`));
  const problems: string[] = [];
  for (const [rel, source] of files) {
    const pkg = owner(rel);
    const json = pkg?.json ?? rootPkg;
    // The harness package's own tests live in its top directory; they are tests all the same.
    const test = pkg === undefined ? false : pkg.dir === 'test' ? !rel.startsWith('test/harness/') : isTestFile(relative(pkg.dir, rel));
    for (const spec of specifiers(source)) {
      if (spec.startsWith('.')) {
        const target = normalize(join(dirname(rel), spec));
        if (owner(target) !== pkg) problems.push(`${rel}: relative import '${spec}' leaves its package (use the target package's exports)`);
        continue;
      }
      const parts = spec.split('/');
      const name = spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
      const target = byName.get(name);
      if (target === undefined) continue;
      if (target === pkg) {
        problems.push(`${rel}: imports its own package by name ('${spec}'); use a relative import`);
        continue;
      }
      const sub = spec.startsWith('@') ? parts.slice(2).join('/') : parts.slice(1).join('/');
      const key = sub === '' ? '.' : `./${sub}`;
      if (target.json.exports?.[key] === undefined) problems.push(`${rel}: '${spec}' is not in ${name}'s exports`);
      const declared = json.dependencies?.[name] !== undefined || (test && json.devDependencies?.[name] !== undefined);
      if (!declared) problems.push(`${rel}: imports ${name} without declaring it in ${pkg?.dir ?? '.'}/package.json${test ? ' (dependencies or devDependencies)' : ' dependencies'}`);
    }
  }
  return problems;
}

describe('package boundaries', () => {
  const pkgs = workspacePackages();
  const rootPkg = readJson(join(ROOT, 'package.json'));

  it('no file reaches into another package, and every package it uses is declared', () => {
    const tracked = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard', '--', '*.ts', '*.js', '*.mjs'], { cwd: ROOT, encoding: 'utf8' })
      .split('\0')
      .filter((f) => f !== '' && !f.split('/').includes('dist') && !f.split('/').includes('node_modules'))
      // This file's own fixtures are violations on purpose.
      .filter((f) => f !== relative(ROOT, fileURLToPath(import.meta.url)));
    const files = new Map(tracked.map((f) => [f, readFileSync(join(ROOT, f), 'utf8')]));
    expect(files.size).toBeGreaterThan(200);
    expect(boundaryViolations(files, pkgs, rootPkg)).toEqual([]);
  });

  it('catches a deep import, an escaping relative import and an undeclared dependency', () => {
    const files = new Map([
      ['nydusd/src/a.ts', "import { x } from '@nydus-ts/nydusify/src/builder/build.js';\nimport { y } from '../../rafs-spec/src/tree.js';"],
      ['registry/src/b.ts', "export { z } from '@nydus-ts/nydusd/api/client';"],
      ['common/src/c.ts', "const m = await import('@nydus-ts/common/log');"],
    ]);
    expect(boundaryViolations(files, pkgs, rootPkg)).toEqual([
      "nydusd/src/a.ts: '@nydus-ts/nydusify/src/builder/build.js' is not in @nydus-ts/nydusify's exports",
      'nydusd/src/a.ts: imports @nydus-ts/nydusify without declaring it in nydusd/package.json dependencies',
      "nydusd/src/a.ts: relative import '../../rafs-spec/src/tree.js' leaves its package (use the target package's exports)",
      'registry/src/b.ts: imports @nydus-ts/nydusd without declaring it in registry/package.json dependencies',
      "common/src/c.ts: imports its own package by name ('@nydus-ts/common/log'); use a relative import",
    ]);
  });

  it('every export of every package points at its source and at the built files (npm test builds first)', () => {
    const missing: string[] = [];
    for (const p of pkgs) {
      for (const [key, value] of Object.entries(p.json.exports ?? {})) {
        const target = value as Record<string, string>;
        for (const condition of ['source', 'types', 'default']) {
          if (!readable(join(ROOT, p.dir, target[condition]))) missing.push(`${p.json.name} ${key}: ${condition} ${target[condition]}`);
        }
      }
    }
    expect(missing).toEqual([]);
  });
});

function readable(path: string): boolean {
  try {
    readFileSync(path);
    return true;
  } catch {
    return false;
  }
}
