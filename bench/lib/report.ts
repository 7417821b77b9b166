// One line per figure: {"bench","metric","value","unit","baseline","ratio"}. Every
// ratio is value / baseline measured in the same run, so noisy shared machines still
// give comparable numbers.

export interface Figure {
  readonly bench: string;
  readonly metric: string;
  readonly value: number;
  readonly unit: string;
  /** The same quantity for the baseline, measured in the same run (null when none applies). */
  readonly baseline: number | null;
  /** value / baseline (null when there is no baseline). */
  readonly ratio: number | null;
  /** What the baseline is, what the goal is, and anything else a reader needs. */
  readonly note?: string;
  readonly goal?: string;
}

export interface BenchContext {
  readonly json: boolean;
  /** Extra arguments after the benchmark name. */
  readonly args: readonly string[];
  report(figure: Omit<Figure, 'ratio'> & { ratio?: number | null }): void;
}

const round = (x: number): number => (Math.abs(x) >= 100 ? Math.round(x * 10) / 10 : Math.round(x * 1000) / 1000);

export function createContext(json: boolean, args: readonly string[]): BenchContext & { figures: Figure[] } {
  const figures: Figure[] = [];
  return {
    json,
    args,
    figures,
    report(f) {
      const ratio = f.ratio !== undefined ? f.ratio : f.baseline !== null && f.baseline !== 0 ? f.value / f.baseline : null;
      const figure: Figure = { ...f, value: round(f.value), baseline: f.baseline === null ? null : round(f.baseline), ratio: ratio === null ? null : round(ratio) };
      figures.push(figure);
      if (json) {
        process.stdout.write(`${JSON.stringify(figure)}\n`);
      } else {
        const base = figure.baseline === null ? '' : `  (baseline ${figure.baseline} ${figure.unit}, ratio ${figure.ratio})`;
        const goal = figure.goal === undefined ? '' : `  goal: ${figure.goal}`;
        process.stdout.write(`${figure.bench} ${figure.metric}: ${figure.value} ${figure.unit}${base}${goal}\n`);
      }
    },
  };
}

/** Percentile of already-collected samples (nearest-rank). */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

/** Runs `fn` repeatedly for about `ms` milliseconds (at least `minIterations`) and returns operations per second. */
export async function opsPerSecond(fn: () => unknown, ms: number, minIterations = 10): Promise<number> {
  const start = process.hrtime.bigint();
  let n = 0;
  let elapsed = 0;
  while (n < minIterations || elapsed < ms) {
    await fn();
    n++;
    elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  }
  return (n * 1000) / elapsed;
}
