#!/usr/bin/env node
import { main } from '@nydus-ts/harness/quickstart';
import { runMain } from '@nydus-ts/common/args';

await runMain(() => main());
