/**
 * A throwaway VM for what this machine's kernel cannot do (EROFS over fscache): the small kernel
 * scripts/build-test-kernel.sh builds, under qemu-system-x86_64 (TCG: there is no KVM here),
 * booting this machine's own root filesystem read-only over 9p, so the guest runs the same node
 * and the same checkout at the same paths. The guest's PID 1 is a script of the caller's; what
 * it prints on the serial console comes back as the output. Nothing of the host is writable from
 * the guest except the scratch disks handed to it.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** The kernel scripts/build-test-kernel.sh leaves in the cache (outside the repository). */
export const TEST_KERNEL = join(process.env.NYDUS_TS_CACHE ?? '/var/cache/nydus-ts', 'test-kernel', 'current', 'bzImage');

export interface VmOptions {
  /** The guest's PID 1: an executable (a shell script) at a path the host root has. */
  init: string;
  /** Passed to init as its environment (through the kernel command line: no spaces, no dots in names). */
  env: Record<string, string>;
  /** Raw disk images, attached as /dev/vda, /dev/vdb, ... (writable by the guest). */
  disks?: string[];
  memoryMib?: number;
  /** The whole run, boot to power-off; past it the VM is killed and the run fails. */
  timeoutMs: number;
  kernel?: string;
}

export interface VmRun {
  /** Everything the guest printed on its console (kernel messages included), \r removed. */
  output: string;
}

/** Boots the VM, waits until the guest powers off (init ending reboots it; qemu exits) and returns its console output. */
export function runInVm(o: VmOptions): Promise<VmRun> {
  const kernel = o.kernel ?? TEST_KERNEL;
  if (!existsSync(kernel)) throw new Error(`${kernel} is missing: scripts/build-test-kernel.sh builds it (scripts/setup.sh runs it)`);
  for (const [k, v] of Object.entries(o.env)) {
    if (/[\s.]/.test(k) || /\s/.test(v)) throw new Error(`VM env ${k}=${v}: names without dots or spaces, values without spaces`);
  }
  const cmdline = [
    'console=ttyS0', 'quiet', 'loglevel=3', 'panic=-1',
    // The host's root, read-only: the guest's node, checkout and test files at the host's paths.
    'root=hostroot', 'rootfstype=9p', 'rootflags=trans=virtio,version=9p2000.L,msize=262144,cache=loose', 'ro',
    `init=${o.init}`,
    ...Object.entries(o.env).map(([k, v]) => `${k}=${v}`),
  ].join(' ');
  const args = [
    '-machine', 'q35', '-cpu', 'max', '-smp', '1', '-m', String(o.memoryMib ?? 1024),
    '-display', 'none', '-monitor', 'none', '-serial', 'stdio', '-no-reboot',
    '-kernel', kernel, '-append', cmdline,
    '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
    // getrandom() would otherwise wait for entropy the guest has little of.
    '-device', 'virtio-rng-pci',
    ...(o.disks ?? []).flatMap((d) => ['-drive', `file=${d},if=virtio,format=raw`]),
  ];
  return new Promise((resolve, reject) => {
    const vm = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    vm.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    vm.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
    // Ours to kill: the pid qemu was started with.
    const timer = setTimeout(() => vm.kill('SIGKILL'), o.timeoutMs);
    vm.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`qemu-system-x86_64: ${e.message} (apt-get install qemu-system-x86)`));
    });
    vm.once('close', (code, signal) => {
      clearTimeout(timer);
      const output = out.replace(/\r/g, '');
      if (signal === 'SIGKILL') reject(new Error(`the VM did not power off within ${o.timeoutMs} ms; its console:\n${output.slice(-4000)}`));
      else if (code !== 0) reject(new Error(`qemu exited with ${code}: ${err.slice(-2000)}\nconsole:\n${output.slice(-4000)}`));
      else resolve({ output });
    });
  });
}
