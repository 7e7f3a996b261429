/**
 * containerd's filter language, as List receives it:
 *   filter   := selector ("," selector)*        every selector must match (AND)
 *   selector := fieldpath [op value]            no op: the field is present and not empty
 *   fieldpath:= field ("." field)*              e.g. name, parent, kind, labels."a.b/c"
 *   op       := "==" | "!=" | "~="              equal, not equal, matches a regular expression
 * Fields and values may be quoted ("..." with backslash escapes, '...', or /.../ for regexps).
 * Several filter strings are alternatives (OR); no filters match everything.
 */

import { invalidArgument } from './errors.js';

/** What a filter looks at: a field path resolves to a string, or undefined when absent. */
export type FieldLookup = (path: string[]) => string | undefined;

type Op = '==' | '!=' | '~=';
interface Selector {
  path: string[];
  op?: Op;
  value?: string;
  regexp?: RegExp;
}

class Scanner {
  pos = 0;
  constructor(readonly text: string) {}

  fail(what: string): never {
    throw invalidArgument(`filter ${JSON.stringify(this.text)}: ${what} at offset ${this.pos}`);
  }
  peek(): string {
    return this.text[this.pos] ?? '';
  }
  skipSpace(): void {
    while (/\s/.test(this.peek())) this.pos++;
  }
  done(): boolean {
    return this.pos >= this.text.length;
  }

  quoted(): string {
    const q = this.text[this.pos++];
    let out = '';
    while (!this.done()) {
      const c = this.text[this.pos++]!;
      if (c === q) return out;
      if (c === '\\' && q !== '/') {
        const e = this.text[this.pos++];
        if (e === undefined) break;
        out += ({ n: '\n', t: '\t', r: '\r', '0': '\0' } as Record<string, string>)[e] ?? e;
      } else if (c === '\\' && this.peek() === '/') {
        out += '/';
        this.pos++;
      } else {
        out += c;
      }
    }
    return this.fail('unterminated quoted string');
  }

  /** A field name: quoted, or letters, digits, '_' and '-' (no '.', which separates fields). */
  field(): string {
    const c = this.peek();
    if (c === '"' || c === "'" || c === '/') return this.quoted();
    const m = /^[A-Za-z_][A-Za-z0-9_-]*/.exec(this.text.slice(this.pos));
    if (!m) return this.fail('expected a field name');
    this.pos += m[0].length;
    return m[0];
  }

  /** A value: quoted, or everything up to the next ',' or space. */
  value(): string {
    const c = this.peek();
    if (c === '"' || c === "'" || c === '/') return this.quoted();
    const m = /^[^\s,]+/.exec(this.text.slice(this.pos));
    if (!m) return this.fail('expected a value');
    this.pos += m[0].length;
    return m[0];
  }

  op(): Op | undefined {
    const two = this.text.slice(this.pos, this.pos + 2);
    if (two === '==' || two === '!=' || two === '~=') {
      this.pos += 2;
      return two;
    }
    return undefined;
  }
}

function parseOne(text: string): Selector[] {
  const s = new Scanner(text);
  const selectors: Selector[] = [];
  for (;;) {
    s.skipSpace();
    const path = [s.field()];
    while (s.peek() === '.') {
      s.pos++;
      path.push(s.field());
    }
    s.skipSpace();
    const op = s.op();
    const sel: Selector = { path };
    if (op !== undefined) {
      s.skipSpace();
      sel.op = op;
      sel.value = s.value();
      if (op === '~=') {
        try {
          sel.regexp = new RegExp(sel.value);
        } catch (e) {
          s.fail(`bad regular expression: ${(e as Error).message}`);
        }
      }
    }
    selectors.push(sel);
    s.skipSpace();
    if (s.done()) return selectors;
    if (s.peek() !== ',') s.fail("expected ',' or the end");
    s.pos++;
  }
}

function matches(sel: Selector, lookup: FieldLookup): boolean {
  const v = lookup(sel.path);
  switch (sel.op) {
    case undefined:
      return v !== undefined && v !== '';
    case '==':
      return v === sel.value;
    case '!=':
      return v !== sel.value;
    case '~=':
      return v !== undefined && sel.regexp!.test(v);
  }
}

/** Compiles List's filter strings into one predicate; a syntax error is INVALID_ARGUMENT. */
export function compileFilters(filters: readonly string[]): (lookup: FieldLookup) => boolean {
  const alternatives = filters.filter((f) => f.trim() !== '').map(parseOne);
  if (alternatives.length === 0) return () => true;
  return (lookup) => alternatives.some((all) => all.every((sel) => matches(sel, lookup)));
}
