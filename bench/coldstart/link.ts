/**
 * bench/coldstart link: a network namespace reached from the host over a veth pair shaped like a
 * WAN link (rate limit and round-trip time), so a registry started inside it is "far away".
 *
 *   host  10.201.0.1 (nyb-xxxxxxxx) <--veth--> (eth0) 10.201.0.2  netns nybench-PID
 *
 * Rate: a tbf qdisc on the egress of each end, so both directions are limited.
 *
 * Delay: this kernel has no sch_netem (CONFIG_NET_SCH_NETEM is not set, and CONFIG_MODULES is off,
 * so it cannot be loaded either), so the delay is a userspace delay line: an iptables NFQUEUE rule
 * queues the packets, a small Python process (Node has no netlink sockets) holds each one for the
 * configured time and then accepts it. The whole RTT is added on packets entering the namespace,
 * not half on each side: a delay on the namespace's egress holds the sender's skbs before the
 * device, where TCP small queues counts them as not yet sent and throttles the flow (measured:
 * 4.5 Mbit/s instead of 93 on a 100 Mbit/s link). A delay on the host's ingress would work but
 * means rules in the host's firewall. For TCP and request/response traffic only the round trip is
 * visible, so one-sided delay behaves the same as the usual RTT/2 on each side.
 *
 * close() kills whatever still runs in the namespace, deletes it and the veth; it also runs at
 * process exit and on SIGINT/SIGTERM/SIGHUP.
 */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import { ip, netnsPids, sh, shortName, tryIp } from '@nydus-ts/harness/netns';
import { onExitCleanup } from '@nydus-ts/harness/process';

export interface LinkOptions {
  /** Namespace name; default `nybench-<pid>`. */
  name?: string;
  /** Rate limit of each direction in Mbit/s; `null` for no limit. Default 100. */
  rateMbit?: number | null;
  /** Added round-trip time in ms; 0 for none. Default 20. */
  rttMs?: number;
}

export interface Link {
  readonly netns: string;
  /** Address of the host end, e.g. 10.201.0.1. */
  readonly hostAddress: string;
  /** Address inside the namespace, e.g. 10.201.0.2. */
  readonly nsAddress: string;
  /** Host-side interface name. */
  readonly hostInterface: string;
  readonly rateMbit: number | null;
  readonly rttMs: number;
  /** Spawn `cmd args` inside the namespace (`ip netns exec`); the pid is the command's own. */
  exec(cmd: string, args: string[], opts?: SpawnOptions): ChildProcess;
  /** e.g. "100 Mbit/s, 20 ms RTT" or "unshaped". */
  describe(): string;
  /** Kill what still runs in the namespace, delete it and the veth. Idempotent. */
  close(): Promise<void>;
}

const PYTHON = process.env.PYTHON ?? 'python3';
const NS_IF = 'eth0';
const QUEUE = 0;
const MTU_FRAME = 1514;
/** What the delay line itself adds to a round trip (wake-up, netlink, re-injection), measured. */
const DELAY_LINE_COST_MS = 0.3;

export async function createLink(o: LinkOptions = {}): Promise<Link> {
  const netns = o.name ?? `nybench-${process.pid}`;
  const rateMbit = o.rateMbit === undefined ? 100 : o.rateMbit;
  const rttMs = o.rttMs ?? 20;
  if (rateMbit !== null && !(rateMbit > 0)) throw new Error(`rateMbit must be > 0 or null, got ${rateMbit}`);
  if (!(rttMs >= 0)) throw new Error(`rttMs must be >= 0, got ${rttMs}`);
  if (existsSync(`/run/netns/${netns}`)) throw new Error(`network namespace ${netns} already exists`);

  // Interface names are limited to 15 characters; the namespace name may be longer.
  const hostInterface = shortName('nyb-', netns);
  const [hostAddress, nsAddress] = pickSubnet();
  let delayLine: ChildProcess | undefined;
  let closed = false;

  const closeSync = () => {
    if (closed) return;
    closed = true;
    delayLine?.removeAllListeners('exit');
    for (const pid of netnsPids(netns)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    // The veth goes with the namespace, unless a process we could not kill keeps it alive.
    tryIp(['netns', 'del', netns]);
    tryIp(['link', 'del', hostInterface]);
  };
  const unregister = onExitCleanup(closeSync);

  try {
    ip(['netns', 'add', netns]);
    ip(['link', 'add', hostInterface, 'type', 'veth', 'peer', 'name', NS_IF, 'netns', netns]);
    ip(['addr', 'add', `${hostAddress}/30`, 'dev', hostInterface]);
    ip(['link', 'set', hostInterface, 'up']);
    ip(['-n', netns, 'addr', 'add', `${nsAddress}/30`, 'dev', NS_IF]);
    ip(['-n', netns, 'link', 'set', NS_IF, 'up']);
    ip(['-n', netns, 'link', 'set', 'lo', 'up']);
    if (rateMbit !== null) {
      const tbf = tbfArgs(rateMbit, rttMs);
      sh('tc', ['qdisc', 'replace', 'dev', hostInterface, 'root', 'tbf', ...tbf]);
      sh('ip', ['netns', 'exec', netns, 'tc', 'qdisc', 'replace', 'dev', NS_IF, 'root', 'tbf', ...tbf]);
    }
    if (rttMs > 0) {
      delayLine = await startDelayLine(netns, rttMs);
      // Only once the queue has a reader: packets queued to an unbound queue are dropped.
      sh('ip', ['netns', 'exec', netns, 'iptables', '-t', 'raw', '-A', 'PREROUTING', '-i', NS_IF,
        '-j', 'NFQUEUE', '--queue-num', String(QUEUE)]);
      delayLine.once('exit', (code, signal) => {
        // Without its reader the queue drops every packet: the link is dead, say why.
        console.error(`link ${netns}: delay line exited (code ${code}, signal ${signal}); the link drops all traffic`);
      });
    }
  } catch (e) {
    closeSync();
    unregister();
    throw e;
  }

  return {
    netns,
    hostAddress,
    nsAddress,
    hostInterface,
    rateMbit,
    rttMs,
    exec: (cmd, args, opts = {}) => spawn('ip', ['netns', 'exec', netns, cmd, ...args], opts),
    describe: () => describeLink(rateMbit, rttMs),
    async close() {
      closeSync();
      unregister();
    },
  };
}

export function describeLink(rateMbit: number | null, rttMs: number): string {
  if (rateMbit === null && rttMs === 0) return 'unshaped';
  const rate = rateMbit === null ? 'unlimited rate' : `${rateMbit} Mbit/s`;
  const rtt = rttMs === 0 ? 'no added delay' : `${rttMs} ms RTT`;
  return `${rate}, ${rtt}`;
}

/**
 * tbf parameters. The burst is about 1 ms at line rate: a bigger one would let each request after
 * an idle moment (lazy loading is all such requests) run faster than the configured rate. tbf
 * splits GSO packets bigger than the burst, which costs CPU but not accuracy. The queue holds one
 * bandwidth-delay product, what a loss-based TCP needs to keep the link busy.
 */
function tbfArgs(rateMbit: number, rttMs: number): string[] {
  const bytesPerMs = (rateMbit * 1e6) / 8 / 1000;
  const burst = Math.max(Math.ceil(bytesPerMs), 4 * MTU_FRAME);
  const limit = burst + Math.max(Math.ceil(bytesPerMs * rttMs), 100 * MTU_FRAME);
  return ['rate', `${Math.round(rateMbit * 1e6)}bit`, 'burst', String(burst), 'limit', String(limit)];
}

/** The first 10.201.x.y/30 with no address of it on the host (other links, other benchmarks). */
function pickSubnet(): [string, string] {
  const used = new Set<number>();
  const out = execFileSync('ip', ['-o', '-4', 'addr', 'show'], { encoding: 'utf8' });
  for (const m of out.matchAll(/inet (\d+)\.(\d+)\.(\d+)\.(\d+)\//g)) {
    if (m[1] === '10' && m[2] === '201') used.add((Number(m[3]) * 256 + Number(m[4])) >> 2);
  }
  for (let block = 0; block < 16384; block++) {
    if (used.has(block)) continue;
    const addr = (n: number) => `10.201.${(block * 4 + n) >> 8}.${(block * 4 + n) & 255}`;
    return [addr(1), addr(2)];
  }
  throw new Error('no free /30 left in 10.201.0.0/16');
}

// The delay line. Packets arrive in order and all wait the same time, so one batch verdict
// ("accept every packet up to id N") releases all that are due; the queue copies only metadata.
// It answers at most ~1 Gbit/s of GSO packets on this machine, plenty for an emulated WAN.
const DELAY_LINE_PY = String.raw`
import collections, select, socket, struct, sys, time
queue, delay = int(sys.argv[1]), float(sys.argv[2]) / 1000.0
SUBSYS = 3 << 8  # NFNL_SUBSYS_QUEUE
PACKET, CONFIG, VERDICT_BATCH = 0, 2, 3
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE
s.setsockopt(270, 5, 1)  # SOL_NETLINK, NETLINK_NO_ENOBUFS
s.bind((0, 0))
def attr(t, p):
    return struct.pack('=HH', 4 + len(p), t) + p + b'\0' * (-len(p) % 4)
def send(msg, attrs, flags=1):
    body = struct.pack('=BBH', 0, 0, socket.htons(queue)) + b''.join(attrs)
    s.send(struct.pack('=IHHII', 16 + len(body), SUBSYS | msg, flags, 0, 0) + body)
def config(attrs):
    send(CONFIG, attrs, 1 | 4)  # NLM_F_REQUEST | NLM_F_ACK
    data = s.recv(65536)
    if struct.unpack_from('=H', data, 4)[0] == 2 and struct.unpack_from('=i', data, 16)[0] != 0:
        sys.exit('nfqueue config failed: errno %d' % -struct.unpack_from('=i', data, 16)[0])
config([attr(1, struct.pack('!BxH', 1, socket.AF_INET))])  # CMD_BIND
config([attr(2, struct.pack('!IB', 0, 1)),  # copy mode META
        attr(3, struct.pack('!I', 1 << 16)),  # queue maxlen
        attr(5, struct.pack('!I', 4)), attr(4, struct.pack('!I', 4))])  # flags and mask: F_GSO
s.setblocking(False)
print('ready', flush=True)
pending = collections.deque()
while True:
    select.select([s], [], [], max(0.0, pending[0][0] - time.monotonic()) if pending else None)
    now = time.monotonic()
    while True:
        try:
            data = s.recv(1 << 16)
        except BlockingIOError:
            break
        off = 0
        while off + 16 <= len(data):
            ln, typ = struct.unpack_from('=IH', data, off)
            if typ == SUBSYS | PACKET:
                a = off + 20
                while a + 4 <= off + ln:
                    alen, atyp = struct.unpack_from('=HH', data, a)
                    if atyp & 0x3fff == 1:  # NFQA_PACKET_HDR, starts with the packet id
                        pending.append((now + delay, struct.unpack_from('!I', data, a + 4)[0]))
                        break
                    a += (alen + 3) & ~3
            off += (ln + 3) & ~3
    last = None
    while pending and pending[0][0] <= now:
        last = pending.popleft()[1]
    if last is not None:
        send(VERDICT_BATCH, [attr(2, struct.pack('!II', 1, last))])  # NF_ACCEPT up to id
`;

function startDelayLine(netns: string, rttMs: number): Promise<ChildProcess> {
  const delayMs = Math.max(0, rttMs - DELAY_LINE_COST_MS);
  const child = spawn('ip', ['netns', 'exec', netns, PYTHON, '-c', DELAY_LINE_PY, String(QUEUE), String(delayMs)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  return new Promise((resolve, reject) => {
    const fail = (why: string) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`delay line (${PYTHON} in ${netns}) ${why}: ${stderr.trim()}`));
    };
    const timer = setTimeout(() => fail('not ready after 10 s'), 10_000);
    child.once('error', (e) => fail(e.message));
    child.once('exit', (code, signal) => fail(`exited (code ${code}, signal ${signal})`));
    child.stdout!.once('data', () => {
      clearTimeout(timer);
      child.removeAllListeners('exit');
      // A forgotten close() must not keep Node alive; the exit hook still removes the namespace.
      child.unref();
      (child.stdout as unknown as { unref(): void }).unref();
      (child.stderr as unknown as { unref(): void }).unref();
      resolve(child);
    });
  });
}
