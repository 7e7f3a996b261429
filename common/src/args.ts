/**
 * A small command-line layer over util.parseArgs: subcommands, typed options, and `--help` text
 * generated from the same option table, so help never drifts from what is parsed.
 */
import { parseArgs } from 'node:util';

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  default?: string | boolean;
  value?: string;
  help: string;
}

export interface CommandSpec {
  name: string;
  summary: string;
  usage: string;
  options: Record<string, OptionSpec>;
  /** Other spellings accepted for an option (e.g. Nydus aliases). */
  aliases?: Record<string, string>;
}

export class UsageError extends Error {
  override name = 'UsageError';
}

export function helpText(program: string, cmd: CommandSpec): string {
  const lines = [`${program} ${cmd.name}: ${cmd.summary}`, '', `Usage: ${program} ${cmd.usage}`, '', 'Options:'];
  for (const [name, o] of Object.entries(cmd.options)) {
    const flag = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.type === 'string' ? ` <${o.value ?? 'value'}>` : ''}`;
    const dflt = o.default !== undefined && o.default !== false ? ` (default: ${o.default})` : '';
    lines.push(`  ${flag.padEnd(36)} ${o.help}${dflt}`);
  }
  lines.push(`  ${'-h, --help'.padEnd(36)} print this help`);
  return lines.join('\n');
}

export function parseCommand(cmd: CommandSpec, argv: string[]): { values: Record<string, string | boolean | string[] | undefined>; positionals: string[]; help: boolean } {
  const rename = (a: string): string => {
    const m = /^--([^=]+)(=.*)?$/.exec(a);
    if (m && cmd.aliases?.[m[1]!]) return `--${cmd.aliases[m[1]!]}${m[2] ?? ''}`;
    return a;
  };
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = { help: { type: 'boolean', short: 'h' } };
  for (const [name, o] of Object.entries(cmd.options)) {
    options[name] = { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) };
  }
  try {
    const { values, positionals } = parseArgs({ args: argv.map(rename), options, allowPositionals: true, strict: true });
    const out: Record<string, string | boolean | string[] | undefined> = {};
    for (const [name, o] of Object.entries(cmd.options)) out[name] = (values as Record<string, string | boolean | string[] | undefined>)[name] ?? o.default;
    return { values: out, positionals, help: !!values.help };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Parses sizes like 0x100000, 1048576, 1MiB. */
export function parseSize(text: string, what: string): number {
  const m = /^(0x[0-9a-f]+|\d+)\s*(k|ki|kib|m|mi|mib|g|gi|gib)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`${what}: '${text}' is not a size`);
  const base = m[1]!.toLowerCase().startsWith('0x') ? parseInt(m[1]!, 16) : parseInt(m[1]!, 10);
  const unit = (m[2] ?? '').toLowerCase()[0];
  return base * (unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1);
}

export function oneOf<T extends string>(value: unknown, allowed: readonly T[], what: string): T {
  if (typeof value !== 'string' || !allowed.includes(value as T)) throw new UsageError(`${what} must be one of ${allowed.join(', ')} (got '${value}')`);
  return value as T;
}

/** Runs a CLI main: usage errors exit 2 with the message, other errors exit 1. */
export async function runMain(main: () => Promise<number | void>): Promise<void> {
  try {
    process.exitCode = (await main()) ?? 0;
  } catch (e) {
    const err = e as Error;
    process.stderr.write(`error: ${err.message}\n`);
    if (process.env.NYDUS_DEBUG && err.stack) process.stderr.write(`${err.stack}\n`);
    process.exitCode = e instanceof UsageError ? 2 : 1;
  }
}

/** The top-level help of a multi-command program. */
export function programHelp(program: string, summary: string, commands: Record<string, CommandSpec>): string {
  return [
    `${program}: ${summary}`, '', `Usage: ${program} <command> [options]`, '', 'Commands:',
    ...Object.values(commands).map((c) => `  ${c.name.padEnd(10)} ${c.summary}`),
    '', `Run '${program} <command> --help' for the options of a command.`,
  ].join('\n');
}

/** Non-empty lines from stdin (prefetch patterns); nothing when stdin is a terminal. */
export async function readStdinLines(): Promise<string[]> {
  if (process.stdin.isTTY) return [];
  let text = '';
  for await (const c of process.stdin) text += c;
  return text.split('\n').map((l) => l.trim()).filter(Boolean);
}
