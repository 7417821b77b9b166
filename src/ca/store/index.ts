// The CA's storage: schema, migrations and the queries of each table.
export * from './schema.js';
export { caMigrations, CA_NAMESPACE } from './migrations.js';
export * from './nodes.js';
export * from './tokens.js';
export * from './registrations.js';
export * from './policy.js';
export * from './receipts.js';
export * from './decisions.js';
