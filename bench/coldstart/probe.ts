/**
 * What the cold-start benchmark reads off the machine: CPU time (machine-wide and per process)
 * and peak RSS, from /proc.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

const TICK_S = 1 / 100; // USER_HZ, 100 on every Linux this runs on

/** Busy CPU seconds of the whole machine since boot (user, nice, system, irq, softirq, steal). */
export function machineCpuSeconds(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = f;
  return (user! + nice! + system! + irq! + softirq! + (steal ?? 0)) * TICK_S;
}

/** CPU seconds (user + system) one live process has used; 0 when it is gone. */
export function processCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_S; // utime, stime (fields 14 and 15)
  } catch {
    return 0;
  }
}

/** Peak resident set (VmHWM) of a live process in bytes; 0 when it is gone. */
export function peakRssBytes(pid: number): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * Drops the page cache, dentries and inodes (after a sync: dirty pages are not dropped), so a run
 * reads from disk what a fresh node would. False when the kernel refuses.
 */
export function dropCaches(): boolean {
  try {
    execFileSync('sync');
    writeFileSync('/proc/sys/vm/drop_caches', '3\n');
    return true;
  } catch {
    return false;
  }
}

/** The machine in one line, for the results. */
export function describeMachine(): string {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const cpu = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? 'unknown CPU';
  const cores = cpuinfo.split('\n').filter((l) => l.startsWith('processor')).length;
  const mem = Number(/^MemTotal:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) / 1024 / 1024;
  const kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  return `${cpu}, ${cores} cores, ${mem.toFixed(0)} GiB RAM, Linux ${kernel}`;
}
