#!/usr/bin/env node
import { main } from '@nydus-ts/nydusd/cli';
import { runMain } from '@nydus-ts/common/args';

await runMain(() => main(process.argv.slice(2)));
