/**
 * The metrics module: Nydus's metric layout, the snapshots it reads, the API's
 * JSON shapes and the Prometheus exposition.
 */

export { FOPS, inOrder, LATENCY_BOUNDS_MS, latencyBucket, READ_SIZE_BOUNDS, readSizeBucket, type Counts, type Fop } from './layout.js';
export { blobList, type BackendSnapshot, type BlobSnapshot, type DataPathSnapshot, type InstanceSnapshot, type MirrorSnapshot, type PrefetchSnapshot } from './sources.js';
export { blobcacheMetricsJson, fsMetricsJson, type BlobcacheMetricsJson, type FsMetricsJson } from './json.js';
export { renderPrometheus, type DaemonSnapshot } from './exposition.js';
export { escapeLabelValue, PromWriter, type HistogramSample, type Sample } from './prometheus.js';
