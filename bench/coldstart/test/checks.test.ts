/**
 * The cold-start benchmark's guard: a run that is not what its mode says is refused with the
 * reason. Facts are crafted here (a pure function); bench/coldstart/run.ts feeds it the real ones.
 */
import { describe, expect, it } from 'vitest';

import { checkRun, NotAsNamed, type RunFacts } from '../checks.js';

const cold: RunFacts = { image: 'large', mode: 'nydus-cold', cachedBlobsBefore: 0, registryBlobBytes: 25e6, imageLayerBytes: 4e8, nydusdCount: 1, fetchRequests: 37, fetchedBytes: 23e6, servedBytes: 20e6 };
const warm: RunFacts = { ...cold, mode: 'nydus-warm', cachedBlobsBefore: 4, registryBlobBytes: 2e6, fetchRequests: 0, fetchedBytes: 0 };
// Through EROFS, nydusd serves no read itself: the EROFS mount of the image is the evidence.
const erofs: RunFacts = { ...cold, mode: 'nydus-erofs', servedBytes: 0, erofsMounts: 1 };
const oci: RunFacts = { image: 'large', mode: 'oci', cachedBlobsBefore: 0, registryBlobBytes: 4e8, imageLayerBytes: 4e8, nydusdCount: 0 };
const esgz: RunFacts = { image: 'large', mode: 'estargz', cachedBlobsBefore: 0, registryBlobBytes: 3e7, imageLayerBytes: 4.2e8, stargzMounts: 4 };
const esgzOpt: RunFacts = { ...esgz, mode: 'estargz-opt', registryBlobBytes: 4.2e8 };

describe('checkRun', () => {
  it('accepts runs that are what they are called', () => {
    for (const f of [cold, warm, erofs, oci, esgz, esgzOpt]) expect(() => checkRun(f)).not.toThrow();
  });

  it.each([
    ['a cold run that found a warm cache', { ...cold, cachedBlobsBefore: 3 }, /not cold/],
    ['a cold run that fetched nothing', { ...cold, fetchRequests: 0, registryBlobBytes: 0 }, /cache was not cold/],
    ['a warm run that fetched chunks', { ...warm, fetchRequests: 5, fetchedBytes: 5e6 }, /not warm/],
    ['a warm run on an empty cache', { ...warm, cachedBlobsBefore: 0 }, /not warm/],
    ['a Nydus run without nydusd (overlayfs instead)', { ...cold, nydusdCount: 0 }, /did not come from nydusd/],
    ['a Nydus run whose nydusd served no data', { ...cold, servedBytes: 0 }, /served no file data/],
    ['an EROFS run without an EROFS mount', { ...erofs, erofsMounts: 0 }, /no EROFS mount/],
    ['an EROFS run that found a warm cache', { ...erofs, cachedBlobsBefore: 1 }, /not cold/],
    ['an OCIv1 run that did not download its layers', { ...oci, registryBlobBytes: 1e6 }, /not all downloaded/],
    ['an OCIv1 run with a nydusd', { ...oci, nydusdCount: 1 }, /overlayfs alone/],
    ['an eStargz run without the stargz FUSE mounts', { ...esgz, stargzMounts: 0 }, /did not come from it/],
    ['an eStargz run that fetched nothing', { ...esgzOpt, registryBlobBytes: 0 }, /not cold/],
    ['an on-demand eStargz run that downloaded the whole image', { ...esgz, registryBlobBytes: 4.2e8 }, /not lazy/],
  ])('refuses %s', (_what, facts, reason) => {
    expect(() => checkRun(facts as RunFacts)).toThrow(NotAsNamed);
    expect(() => checkRun(facts as RunFacts)).toThrow(reason);
  });
});
