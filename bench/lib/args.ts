// The benchmarks' own arguments (after the benchmark's name): `--name value` pairs.

/** The value after `name` in `args`, or undefined when `name` is not there. */
export function argValue(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}
