// Starting a worker thread on one of our modules: under tsx (a checkout run without a
// build) the thread registers tsx before importing the .ts source; a built tree starts
// the .js file directly.
import { writeFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';

/** `entry`: the module's URL as resolved next to the caller (ends in .ts or .js). */
export function startThread(entry: URL, workerData: unknown): Worker {
  if (entry.pathname.endsWith('.ts')) {
    const code = `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); }).catch((e) => { console.error(e); process.exit(70); })`;
    return new Worker(code, { eval: true, workerData });
  }
  return new Worker(entry, { workerData });
}

/** The URL of a sibling module with the caller's own extension (.ts under tsx, .js when built). */
export function siblingModule(callerUrl: string, name: string): URL {
  return new URL(`./${name}${callerUrl.endsWith('.ts') ? '.ts' : '.js'}`, callerUrl);
}

/**
 * Names the calling thread for the operating system (Linux: /proc/thread-self/comm, at
 * most 15 bytes), so `top -H` and the benchmark's per-thread CPU figures can tell the
 * judge and commit threads apart. Best effort: elsewhere it does nothing.
 */
export function nameThisThread(name: string): void {
  try {
    writeFileSync('/proc/thread-self/comm', name.slice(0, 15));
  } catch {
    // not Linux, or /proc not mounted: the name is only a convenience
  }
}
