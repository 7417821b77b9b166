// Integers read back as JavaScript numbers on both dialects, and never rounded: a value
// outside ±(2^53−1) fails the query with a RangeError. (PostgreSQL's int8 arrives as text,
// which pg would hand over as a string; better-sqlite3 would round large values silently.)
import type {
  KyselyPlugin,
  PluginTransformQueryArgs,
  PluginTransformResultArgs,
  QueryResult,
  RootOperationNode,
  UnknownRow,
} from 'kysely';

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** The number for an integer given as a bigint or decimal text; RangeError when unsafe. */
export function toSafeInteger(value: bigint | string): number {
  const big = BigInt(value);
  if (big > MAX_SAFE || big < -MAX_SAFE) {
    throw new RangeError(`integer ${value} is outside the JavaScript safe integer range`);
  }
  return Number(big);
}

/**
 * For SQLite: the connection reads integers as BigInt (better-sqlite3's safeIntegers), and
 * this turns each into a number — or fails the query.
 */
export class SafeIntegerPlugin implements KyselyPlugin {
  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    return args.node;
  }

  transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    for (const row of args.result.rows) {
      for (const [key, value] of Object.entries(row)) {
        if (typeof value === 'bigint') row[key] = toSafeInteger(value);
      }
    }
    return Promise.resolve(args.result);
  }
}
