// Database URLs: which dialect, where, and how to print one without its password.
//   sqlite:/abs/path.db   sqlite:///abs/path.db   sqlite:relative.db   sqlite::memory:
//   /abs/path.db   ./relative.db                 (a plain filesystem path is SQLite)
//   postgres://user:pass@host:port/db   postgresql://…
import { resolve } from 'node:path';
import { TrustlaunchError } from '../protocol/errors.js';

export type DatabaseTarget =
  | { readonly dialect: 'sqlite'; /** absolute path, or ':memory:' */ readonly path: string }
  | { readonly dialect: 'postgres'; readonly connectionString: string };

const SCHEME = /^([a-zA-Z][a-zA-Z0-9+.-]*):/;
const MEMORY = ':memory:';

/** Parses a database URL (see the file comment). Unknown schemes are refused, not guessed. */
export function parseDatabaseUrl(url: string): DatabaseTarget {
  if (url.trim() === '') throw new TrustlaunchError('UNSUPPORTED', 'the database URL is empty');
  const scheme = SCHEME.exec(url)?.[1]?.toLowerCase();
  if (scheme === 'postgres' || scheme === 'postgresql') {
    return { dialect: 'postgres', connectionString: url };
  }
  if (scheme === 'sqlite') {
    let rest = url.slice('sqlite:'.length);
    if (rest === MEMORY) return { dialect: 'sqlite', path: MEMORY };
    // sqlite:///abs has an empty authority; sqlite://host/… names a host SQLite cannot reach.
    if (rest.startsWith('//')) {
      if (!rest.startsWith('///')) {
        throw new TrustlaunchError('UNSUPPORTED', `a sqlite URL names a file, not a host: ${redactUrl(url)}`);
      }
      rest = rest.slice(2);
    }
    if (rest === '') throw new TrustlaunchError('UNSUPPORTED', 'the sqlite URL names no file');
    return { dialect: 'sqlite', path: resolve(rest) };
  }
  // Anything else that looks like scheme:// is a database we do not speak (mysql://, …).
  if (scheme !== undefined && url.slice(scheme.length + 1).startsWith('//')) {
    throw new TrustlaunchError('UNSUPPORTED', `unsupported database URL scheme "${scheme}:" (use sqlite: or postgres://)`);
  }
  return { dialect: 'sqlite', path: resolve(url) };
}

/** The URL with any password replaced by `***`, for logs and error messages. */
export function redactUrl(url: string): string {
  // userinfo password: scheme://user:password@host — the authority ends at the first / ? #,
  // and (as in WHATWG URL parsing) the last '@' inside it ends the userinfo.
  let out = url.replace(/^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?#@:]*):[^/?#]*@/, '$1:***@');
  // libpq also accepts ?password=…
  out = out.replace(/([?&]password=)[^&#]*/gi, '$1***');
  return out;
}

/**
 * The URL callers should open: `DATABASE_URL` when it is set, else an SQLite file.
 * (The CLI passes its own `--database` flag first.)
 */
export function defaultDatabaseUrl(sqlitePath: string, env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env['DATABASE_URL'];
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : `sqlite:${resolve(sqlitePath)}`;
}
