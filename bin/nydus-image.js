#!/usr/bin/env node
import { main } from '../dist/nydusify/src/cli/nydus-image.js';
import { runMain } from '../dist/nydusify/src/cli/args.js';

await runMain(() => main(process.argv.slice(2)));
