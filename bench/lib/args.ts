// The benchmarks' own arguments (after the benchmark's name): `--name value` pairs. A value
// that is not what the benchmark takes is an error naming the option, never a silent default.

/** A bad benchmark argument: bench/run.ts prints the message alone and exits 2. */
export class BenchUsageError extends Error {}

/** The value after `name` in `args`, or undefined when `name` is not there. */
export function argValue(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const value = args[i + 1];
  if (value === undefined) throw new BenchUsageError(`${name} needs a value`);
  return value;
}

/** An integer option ≥ `min` (default 1), or `fallback` when absent. */
export function argInteger(args: readonly string[], name: string, fallback: number, min = 1): number {
  const text = argValue(args, name);
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < min) throw new BenchUsageError(`${name} must be an integer of at least ${min}, not "${text}"`);
  return n;
}

/** One of `choices`, or `fallback` when absent. */
export function argChoice<T extends string>(args: readonly string[], name: string, choices: readonly T[], fallback: T): T {
  const text = argValue(args, name);
  if (text === undefined) return fallback;
  if (!(choices as readonly string[]).includes(text)) throw new BenchUsageError(`${name} must be one of ${choices.join(', ')}, not "${text}"`);
  return text as T;
}
