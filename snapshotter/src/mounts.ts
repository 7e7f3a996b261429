/**
 * The mounts a snapshot hands to containerd, in the form containerd's overlay snapshotter uses:
 * no lower layers: a bind mount of the snapshot's own directory; otherwise overlayfs with the
 * lowers nearest first. For a Nydus image the lowest layer is the RAFS mountpoint of nydusd.
 */

import { existsSync } from 'node:fs';

export interface Mount {
  type: string;
  source: string;
  target?: string;
  options: string[];
}

/**
 * containerd passes index=off when the kernel has the option: with the inode index on, an overlay
 * refuses to mount lowers another overlay used with a different upper.
 */
const INDEX_OFF = existsSync('/sys/module/overlay/parameters/index') ? ['index=off'] : [];

export function bindMount(dir: string, readonly: boolean): Mount {
  return { type: 'bind', source: dir, options: [readonly ? 'ro' : 'rw', 'rbind'] };
}

export interface OverlayOptions {
  /** Lower directories, nearest first. */
  lowers: string[];
  /** Omitted for a read-only view. */
  upper?: { upperdir: string; workdir: string };
  volatile?: boolean;
}

/**
 * An overlay mount; a read-only view with a single lower is a read-only bind instead (overlayfs
 * wants two lowers when there is no upper).
 */
export function layeredMount(o: OverlayOptions): Mount {
  if (o.upper === undefined && o.lowers.length === 1) return bindMount(o.lowers[0]!, true);
  const options = [...INDEX_OFF];
  if (o.upper !== undefined) {
    options.push(`workdir=${o.upper.workdir}`, `upperdir=${o.upper.upperdir}`);
    if (o.volatile) options.push('volatile');
  }
  options.push(`lowerdir=${o.lowers.join(':')}`);
  return { type: 'overlay', source: 'overlay', options };
}
