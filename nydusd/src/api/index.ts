/**
 * nydusd's HTTP API: server, client and the shapes they share.
 */

export { ApiClient, type MetricsKind } from './client.js';
export { ApiError, errorAnswer } from './errors.js';
export { ApiServer } from './server.js';
export { BODY_LIMIT } from './body.js';
export type { ApiController, DaemonInfo, DaemonState, MountRequest } from './types.js';
