// The storage layer: one Kysely query layer over SQLite and PostgreSQL (docs/storage.md).
export { openDatabase, type DatabaseHandle, type OpenOptions } from './database.js';
export type { Migration } from 'kysely';
export type { Migrations } from './migrate.js';
export { dialectOf, type Dialect } from './dialect.js';
export { parseDatabaseUrl, redactUrl, defaultDatabaseUrl, type DatabaseTarget } from './url.js';
export { appendOnly, dropAppendOnly } from './append-only.js';
export { createOneTimeTokenTable, type OneTimeTokenTable } from './one-time-tokens.js';
export { isUniqueViolation, isAppendOnlyViolation } from './errors.js';
export { transaction } from './transaction.js';
export { COLUMN, oneOf, toInt, toMillis, encodeBool, decodeBool, encodeBytes, decodeBytes, encodeJson, decodeJson } from './columns.js';
export { type Notifier, type NotificationListener, type Unsubscribe, MAX_PAYLOAD_BYTES } from './notifier.js';
export { waitFor, sleep, type WaitOptions } from './wait.js';
