// `npm run bench -- NAME [--json] [args…]`: runs one benchmark (or all with `all`).
// Each benchmark lives in bench/<name>.ts and exports `run(ctx)`.
import { readdirSync } from 'node:fs';
import { BenchUsageError } from './lib/args.js';
import { createContext, type BenchContext } from './lib/report.js';

const dir = new URL('.', import.meta.url);
const available = readdirSync(dir)
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts')
  .map((f) => f.slice(0, -3))
  .sort();

const argv = process.argv.slice(2);
const json = argv.includes('--json');
const rest = argv.filter((a) => a !== '--json');
const [name, ...args] = rest;

if (name === undefined || name === '--list' || name === '--help' || name === '-h') {
  process.stdout.write(`usage: npm run bench -- NAME [--json] [args]\nbenchmarks: ${available.join(', ')}, all\n`);
  process.exit(name === undefined ? 2 : 0);
}
const names = name === 'all' ? available : [name];
for (const n of names) {
  if (!available.includes(n)) {
    process.stderr.write(`unknown benchmark ${n}; there are: ${available.join(', ')}\n`);
    process.exit(2);
  }
  const mod = (await import(new URL(`${n}.ts`, dir).href)) as { run: (ctx: BenchContext) => Promise<void> };
  try {
    await mod.run(createContext(json, args));
  } catch (e) {
    if (!(e instanceof BenchUsageError)) throw e;
    process.stderr.write(`bench ${n}: ${e.message}\n`);
    process.exit(2);
  }
}
