/**
 * Structured logs on stderr: logfmt-style lines (`level=info msg="..." key=value`), or JSON lines
 * with NYDUS_LOG_FORMAT=json. Level from --log-level or NYDUS_LOG_LEVEL.
 */
import { closeSync, fstatSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
const ORDER: Level[] = ['trace', 'debug', 'info', 'warn', 'error'];

let threshold: Level = (process.env.NYDUS_LOG_LEVEL as Level) ?? 'info';
export function setLogLevel(level: string): void {
  if (!ORDER.includes(level as Level)) throw new Error(`unknown log level '${level}' (trace, debug, info, warn, error)`);
  threshold = level as Level;
}

function fmt(v: unknown): string {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return /[\s"=]/.test(s) || s === '' ? JSON.stringify(s) : s;
}

let sink: (line: string) => void = (line) => process.stderr.write(line);
/** Where log lines go (stderr unless told otherwise, e.g. stdout for --log-to-stdout). */
export function setLogSink(write: (line: string) => void): void {
  sink = write;
}

/**
 * Log lines go to `path` (appended), renamed to `path.1` once it would pass `rotateMiB` MiB
 * (0: never), as nydusd's `--log-file` and `--log-rotation-size` do. Creates the directory.
 */
export function logToFile(path: string, rotateMiB = 0): void {
  // Callers name a file in a directory of their own that may not exist yet (upstream creates it).
  mkdirSync(dirname(path), { recursive: true });
  let fd = openSync(path, 'a');
  let size = fstatSync(fd).size;
  setLogSink((line) => {
    if (rotateMiB > 0 && size > 0 && size + Buffer.byteLength(line) > rotateMiB * 2 ** 20) {
      closeSync(fd);
      renameSync(path, `${path}.1`);
      fd = openSync(path, 'a');
      size = 0;
    }
    size += writeSync(fd, line);
  });
}

export function log(level: Level, msg: string, fields: Record<string, unknown> = {}): void {
  if (ORDER.indexOf(level) < ORDER.indexOf(threshold)) return;
  const time = new Date().toISOString();
  if (process.env.NYDUS_LOG_FORMAT === 'json') {
    sink(`${JSON.stringify({ time, level, msg, ...fields })}\n`);
    return;
  }
  const rest = Object.entries(fields).map(([k, v]) => ` ${k}=${fmt(v)}`).join('');
  sink(`time=${time} level=${level} msg=${fmt(msg)}${rest}\n`);
}

export const logger = {
  trace: (msg: string, f?: Record<string, unknown>) => log('trace', msg, f),
  debug: (msg: string, f?: Record<string, unknown>) => log('debug', msg, f),
  info: (msg: string, f?: Record<string, unknown>) => log('info', msg, f),
  warn: (msg: string, f?: Record<string, unknown>) => log('warn', msg, f),
  error: (msg: string, f?: Record<string, unknown>) => log('error', msg, f),
};
