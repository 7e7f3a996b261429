/** Building layers for tests: tars from entry lists, fed to the builder as a real layer stream. */
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { ImageBuilder, type BuildOptions } from '../../src/builder/build.js';
import { tarLayerSource } from '../../src/source/tar-source.js';
import { buildTar, type TarWriteEntry } from '../../src/tar/index.js';

export { pseudoRandom } from '../../src/sample/sample-image.js';

export function builder(blobDir: string, opts: Partial<BuildOptions> = {}, parent?: ConstructorParameters<typeof ImageBuilder>[1], dict?: ConstructorParameters<typeof ImageBuilder>[2]) {
  return new ImageBuilder({
    chunkSize: 0x10000, compressor: 'zstd', digester: 'blake3', blobDir, whiteoutSpec: 'oci', inlineBootstrap: true, ...opts,
  }, parent, dict);
}

export async function addTarLayer(b: ImageBuilder, entries: TarWriteEntry[] | Buffer, label = 'layer', gzip = true) {
  const tar = Buffer.isBuffer(entries) ? entries : buildTar(entries);
  const data = gzip ? gzipSync(tar) : tar;
  const src = await tarLayerSource({ stream: Readable.from([data]), label });
  const out = await b.addLayer(src.items, label);
  await src.result();
  return out;
}
