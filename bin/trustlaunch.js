#!/usr/bin/env node
// The `trustlaunch` command. Runs the TypeScript sources through tsx, so a checkout works
// without a build step; `npm run build` emits dist/ for packaging.
import { register } from 'tsx/esm/api';

register();
const { main } = await import(new URL('../src/cli/main.ts', import.meta.url).href);
process.exitCode = await main(process.argv);
