/**
 * The tar package: a streaming reader for image layers and a writer for what nydusify builds.
 */
export { TarError } from './errors.js';
export type { TarEntry, TarEntryType } from './entry.js';
export { readTar, type TarReaderOptions, type TarItem } from './reader.js';
export { buildTar, encodeTarEnd, encodeTarEntry, type TarWriteEntry } from './writer.js';
export {
  BLOCK_SIZE,
  encodeHeader,
  encodeSparseExtension,
  padToBlock,
  paddingFor,
  type HeaderFields,
  type SparseFragment,
} from './header.js';
export { encodePaxRecords } from './pax.js';
