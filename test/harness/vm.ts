/**
 * A throwaway VM for what this machine's kernel cannot do (EROFS over fscache): the small kernel
 * scripts/build-test-kernel.sh builds, under qemu-system-x86_64 (TCG: there is no KVM here),
 * booting this machine's own root filesystem read-only over 9p, so the guest runs the same node
 * and the same checkout at the same paths. The guest's PID 1 (vm-init.sh) sets up a userland and
 * runs the caller's program (plain JavaScript, on the built packages) with a plan file; what the
 * guest prints on the serial console comes back as the output. Nothing of the host is writable
 * from the guest except the scratch disks handed to it.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** The kernel scripts/build-test-kernel.sh leaves in the cache (outside the repository). */
export const TEST_KERNEL = join(process.env.NYDUS_TS_CACHE ?? '/var/cache/nydus-ts', 'test-kernel', 'current', 'bzImage');

/** The guest's PID 1 (beside this module in source and build alike). */
const VM_INIT = join(import.meta.dirname, '..', 'harness', 'vm-init.sh');

export interface VmOptions {
  /** The guest program: a .mjs file node runs in the guest, given `plan` as its argument. */
  program: string;
  /** A file the program reads (the host's /tmp is visible, read-only). */
  plan: string;
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
  // Passed to init as its environment, through the kernel command line.
  const env = { NYDUS_VM_PROGRAM: o.program, NYDUS_VM_PLAN: o.plan };
  for (const [k, v] of Object.entries(env)) if (/\s/.test(v)) throw new Error(`VM ${k}=${v}: no spaces allowed on the kernel command line`);
  const cmdline = [
    'console=ttyS0', 'quiet', 'loglevel=3', 'panic=-1',
    // The host's root, read-only: the guest's node, checkout and test files at the host's paths.
    'root=hostroot', 'rootfstype=9p', 'rootflags=trans=virtio,version=9p2000.L,msize=262144,cache=loose', 'ro',
    `init=${VM_INIT}`,
    ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
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
