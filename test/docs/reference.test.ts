// Every public CLI command and REST endpoint is in the docs (a project rule).
//
// CLI: the real commander tree (`buildProgram`, src/cli/main.ts) is walked; every command
// (hidden ones aside) must be named in docs/cli.md — in backticks, as `ca allowlist add`
// is — and every long option of it must appear where that command is documented: in a
// table row or a `###` section naming it, in the prose of the `##` section around it
// (where options shared by a group are described), or under "Conventions" (--json).
//
// REST: the OpenAPI documents of a real CA, manager and node dom0 (each serves every
// route it registers but its three hidden ones: /openapi.json, /healthz, /readyz) give
// each server's routes; every one must appear as `METHOD /path` in its doc (docs/ca.md,
// docs/manager.md, docs/node.md), a path parameter written `{anything}` or `:name`. The
// three hidden routes every server has (src/http/server.ts, all GET) must be named there
// by path.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Command, Option } from 'commander';
import { buildProgram } from '../../src/cli/main.js';
import { startCluster, type TestCluster } from '../manager/cluster.js';
import { startTestManager, type TestManager } from '../manager/support.js';

const docsDir = new URL('../../docs/', import.meta.url);
const doc = (name: string): string => readFileSync(new URL(name, docsDir), 'utf8');

const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// --- CLI -------------------------------------------------------------------------------

interface CommandInfo {
  /** e.g. `ca allowlist add` */
  readonly path: string;
  readonly options: readonly string[];
  readonly leaf: boolean;
}

function walk(command: Command, prefix: readonly string[] = []): CommandInfo[] {
  const out: CommandInfo[] = [];
  for (const sub of command.commands) {
    if ((sub as unknown as { _hidden?: boolean })._hidden === true) continue;
    const path = [...prefix, sub.name()];
    const options = sub.options.flatMap((o: Option) => (o.hidden || o.long === undefined ? [] : [o.long]));
    out.push({ path: path.join(' '), options, leaf: sub.commands.length === 0 }, ...walk(sub, path));
  }
  return out;
}

interface Section {
  /** `##` or `###` heading (empty for the text before the first heading). */
  readonly heading: string;
  readonly level: number;
  readonly lines: readonly string[];
}

function sections(markdown: string): Section[] {
  const out: Section[] = [];
  let current: { heading: string; level: number; lines: string[] } = { heading: '', level: 1, lines: [] };
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    const m = fenced ? null : /^(#{1,3}) (.*)$/.exec(line);
    if (m !== null) {
      out.push(current);
      current = { heading: m[2] ?? '', level: (m[1] ?? '').length, lines: [] };
    } else {
      current.lines.push(line);
    }
  }
  out.push(current);
  return out;
}

/** The command named in backticks: `vm create`, `vm create --image …`, never `vm created`. */
const namesCommand = (text: string, path: string): boolean => new RegExp(`\`${escape(path)}(?=[\` ])`).test(text);
const hasOption = (text: string, long: string): boolean => new RegExp(`${escape(long)}(?![A-Za-z0-9-])`).test(text);

/** The text that documents `path`: its rows and `###` sections, the prose of their `##` sections, and Conventions. */
function placesOf(all: readonly Section[], path: string): string[] {
  const places: string[] = [];
  let group: Section | undefined;
  const groupsUsed = new Set<Section>();
  const conventions: string[] = [];
  for (const s of all) {
    if (s.level <= 2) group = s;
    if (/^Conventions$/.test(s.heading) || (group !== undefined && /^Conventions$/.test(group.heading))) conventions.push(...s.lines);
    const mine = s.level === 3 && namesCommand(s.heading, path);
    if (mine) places.push(s.lines.join('\n'));
    const rows = s.lines.filter((l) => l.startsWith('|') && namesCommand(l, path));
    places.push(...rows);
    if ((mine || rows.length > 0) && group !== undefined) groupsUsed.add(group);
  }
  if (places.length === 0) return [];
  for (const g of groupsUsed) places.push(g.lines.filter((l) => !l.startsWith('|')).join('\n'));
  places.push(conventions.join('\n'));
  return places;
}

describe('docs/cli.md names every command and its options', () => {
  const commands = walk(buildProgram());
  const cliDoc = sections(doc('cli.md'));

  it('the walk sees the whole tree', () => {
    const paths = commands.map((c) => c.path);
    for (const p of ['ca allowlist add', 'image build-guest', 'vm ssh', 'vm create', 'manager node token create', 'node serve', 'verify', 'up', 'demo']) {
      assert.ok(paths.includes(p), `${p} is in the command tree`);
    }
    assert.ok(commands.find((c) => c.path === 'vm create')?.options.includes('--expect-kernel'));
  });

  it('every command is named in docs/cli.md, with every long option where it is documented', () => {
    const missing: string[] = [];
    for (const c of commands) {
      if (!c.leaf && c.options.length === 0) continue; // a group: its commands are checked
      const places = placesOf(cliDoc, c.path);
      if (places.length === 0) {
        missing.push(`command \`${c.path}\``);
        continue;
      }
      for (const o of c.options) if (!places.some((p) => hasOption(p, o))) missing.push(`\`${c.path}\` option ${o}`);
    }
    assert.deepEqual(missing, [], `not in docs/cli.md:\n  ${missing.join('\n  ')}`);
  });
});

// --- REST ------------------------------------------------------------------------------

interface OpenApi {
  readonly paths: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch'];
/** Registered by createHttpServer on every server, hidden from its OpenAPI document. */
const HIDDEN_ROUTES = ['/openapi.json', '/healthz', '/readyz'];

function routesOf(api: OpenApi): string[] {
  const out: string[] = [];
  for (const [path, item] of Object.entries(api.paths)) {
    for (const method of Object.keys(item)) if (METHODS.includes(method)) out.push(`${method.toUpperCase()} ${path}`);
  }
  return out.sort();
}

/** `GET /v1/vms/{id}` as the docs may write it: `GET /v1/vms/{id or name}`, `GET /v1/vms/:id`; not `GET /v1/vms/{id}/stop`. */
function documented(markdown: string, route: string): boolean {
  const [method, path] = route.split(' ') as [string, string];
  const pattern = path
    .split(/(\{[^}]+\})/)
    .map((part) => (part.startsWith('{') ? '(?:\\{[^}\\n]+\\}|:[A-Za-z]+)' : escape(part)))
    .join('');
  return new RegExp(`${method} ${pattern}(?![A-Za-z0-9_/{:-])`).test(markdown);
}

describe('the docs list every REST route of the CA, the manager and dom0', () => {
  let m: TestManager;
  let c: TestCluster;
  before(async () => {
    m = await startTestManager({ databaseUrl: 'sqlite::memory:' });
    c = await startCluster(m, { nodes: 1 });
  });
  after(async () => {
    await c?.dispose();
    await m?.dispose();
  });

  const check = (name: string, api: OpenApi, file: string): void => {
    const routes = routesOf(api);
    assert.ok(routes.length >= 5, `${name} serves its routes (${routes.join(', ')})`);
    const markdown = doc(file);
    const missing = [...routes.filter((r) => !documented(markdown, r)), ...HIDDEN_ROUTES.filter((p) => !new RegExp(`${escape(p)}(?![A-Za-z0-9_/-])`).test(markdown)).map((p) => `GET ${p}`)];
    assert.deepEqual(missing, [], `${name} routes not in docs/${file}:\n  ${missing.join('\n  ')}`);
  };

  it('the matcher takes parameters in any spelling, and only whole paths', () => {
    assert.ok(documented('`GET /v1/vms/{id or name}`', 'GET /v1/vms/{ref}'));
    assert.ok(documented('`DELETE /v1/nodes/:id`', 'DELETE /v1/nodes/{id}'));
    assert.ok(!documented('`GET /v1/vms/{id}`', 'GET /v1/vms'));
    assert.ok(!documented('`POST /v1/vms/{id}/stop`', 'POST /v1/vms/{id}'));
    assert.ok(!documented('`GET /v1/vms`', 'POST /v1/vms'));
  });

  it('docs/ca.md: every route the CA serves', () => {
    check('the CA', c.ca.service.app.swagger() as unknown as OpenApi, 'ca.md');
  });

  it('docs/manager.md: every route the manager serves', async () => {
    check('the manager', await m.admin.call<OpenApi>('GET', '/openapi.json'), 'manager.md');
  });

  it('docs/node.md: every route dom0 serves', async () => {
    const node = c.nodes[0];
    assert.ok(node !== undefined);
    check('dom0', await node.dom0.call<OpenApi>('GET', '/openapi.json'), 'node.md');
  });
});
