#!/usr/bin/env node
import { main } from '../dist/snapshotter/src/cli.js';
import { runMain } from '../dist/nydusify/src/cli/args.js';

await runMain(() => main(process.argv.slice(2)));
