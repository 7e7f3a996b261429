#!/usr/bin/env node
import { main } from '../dist/nydusify/src/cli/quickstart.js';
import { runMain } from '../dist/nydusify/src/cli/args.js';

await runMain(() => main());
