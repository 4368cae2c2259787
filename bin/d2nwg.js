#!/usr/bin/env node
// The d2nwg command-line tool (src/node/cli.ts), run through tsx so the
// TypeScript engine needs no separate build.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/node/cli.ts');
process.exitCode = await main(process.argv.slice(2));
