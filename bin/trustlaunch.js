#!/usr/bin/env node
// The `trustlaunch` command. Runs the TypeScript sources through tsx, so a checkout works
// without a build step; `npm run build` emits dist/ for packaging.
//
// esbuild's synchronous transforms (tsx uses them) otherwise go through a worker thread the
// caller waits on with Atomics.wait, which on Node 20 can wait forever (a test process hung
// idle at start-up in CI); "0" selects esbuild's per-call synchronous path. Set before tsx
// loads esbuild, and inherited by the services `up` starts.
process.env.ESBUILD_WORKER_THREADS ??= '0';
const { register } = await import('tsx/esm/api');

register();
const { main } = await import(new URL('../src/cli/main.ts', import.meta.url).href);
process.exitCode = await main(process.argv);
