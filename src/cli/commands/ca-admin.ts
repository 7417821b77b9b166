// The admin commands of `trustlaunch ca`, against a running CA with the admin credential
// (connection options in ca-options.ts): enrollment tokens, the kernel allowlist, platform
// reference values, nodes, and the decisions log.
import { readFile } from 'node:fs/promises';
import { InvalidArgumentError, type Command } from 'commander';
import { z } from 'zod';
import type { AllowlistView, NodeView, PlatformView } from '../../ca/client.js';
import { TrustlaunchError } from '../../protocol/errors.js';
import { DigestSchema, describeIssues } from '../../protocol/messages.js';
import { isDigest, sha256File, type Digest } from '../../protocol/digest.js';
import { action, printResult, type OutputOptions } from '../output.js';
import { parseDigestArg, parseDuration, parseInteger, parseWhen, withAdmin, withAdminOptions, type AdminFlags } from './ca-options.js';

type Flags = AdminFlags & OutputOptions;

/** manifest.json of a guest image (docs/guest-image.md): the kernel, initrd and cmdline digests. */
const ManifestSchema = z.object({ kernel: DigestSchema, initrd: DigestSchema.optional(), cmdline: DigestSchema.optional() });
/** measurements.json of a node directory (`trustlaunch node init`). */
const MeasurementsSchema = z.object({ hypervisor: DigestSchema, minidomain: DigestSchema, firmware: DigestSchema.optional(), bootConfig: DigestSchema.optional() });

async function readJsonFile<S extends z.ZodType>(file: string, schema: S, what: string): Promise<z.infer<S>> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new TrustlaunchError('MALFORMED_REQUEST', `${file}: not a readable JSON file (${(e as Error).message})`);
  }
  const r = schema.safeParse(json);
  if (!r.success) throw new TrustlaunchError('MALFORMED_REQUEST', `${file} is not ${what}: ${describeIssues(r.error)}`);
  return r.data;
}

function parsePcrArg(text: string, previous: Record<string, string> = {}): Record<string, string> {
  const m = /^(\d{1,2})=([0-9a-f]{64})$/.exec(text);
  if (m === null) throw new InvalidArgumentError('expected INDEX=<64 lowercase hex>, e.g. 0=ab12…');
  return { ...previous, [m[1] as string]: m[2] as string };
}

const allowlistLine = (e: AllowlistView): string =>
  `${e.name}  ${e.kernel}${e.initrd === undefined ? '' : `  initrd ${e.initrd}`}${e.cmdline === undefined ? '' : `  cmdline ${e.cmdline}`}${e.revokedAt !== undefined ? `  REVOKED ${e.revokedAt}` : e.expiresAt !== undefined ? `  expires ${e.expiresAt}` : ''}`;
const platformLines = (p: PlatformView): string[] => [
  `${p.name}`,
  `  hypervisor  ${p.hypervisor}`,
  `  minidomain  ${p.minidomain}`,
  ...(p.firmware === undefined ? [] : [`  firmware    ${p.firmware}`]),
  ...(p.bootConfig === undefined ? [] : [`  bootConfig  ${p.bootConfig}`]),
  ...Object.entries(p.pcrs ?? {}).map(([i, v]) => `  PCR ${i.padEnd(8)}${v}`),
];
const nodeLine = (n: NodeView): string => `${n.id}  ${n.status}  platform ${n.platform}  registered ${n.registeredAt}${n.revokedAt === undefined ? '' : `  revoked ${n.revokedAt}${n.revokeReason === undefined ? '' : ` (${n.revokeReason})`}`}`;

export function registerCaAdminCommands(ca: Command): void {
  // --- enrollment tokens ----------------------------------------------------------------
  const token = ca.command('token').description('one-time enrollment tokens for node registration');
  withAdminOptions(token.command('create').description('create a one-time enrollment token (printed once)'))
    .option('--ttl <duration>', 'how long it stays usable (e.g. 1h, 7d; default from ca.json)', parseDuration)
    .action(
      action(async (opts: Flags & { ttl?: number }) => {
        const t = await withAdmin(opts, (admin) => admin.createToken(opts.ttl));
        printResult(opts, t, () => [t.token, `(token ${t.id}, usable once until ${t.expiresAt}; give it to the node as its enrollment token file, mode 0600)`]);
      }),
    );
  withAdminOptions(token.command('ls').description('list enrollment tokens (never their secrets)')).action(
    action(async (opts: Flags) => {
      const tokens = await withAdmin(opts, (admin) => admin.listTokens());
      printResult(opts, { tokens }, () => (tokens.length === 0 ? ['no tokens'] : tokens.map((t) => `${t.id}  created ${t.createdAt}  ${t.usedAt === undefined ? `expires ${t.expiresAt}` : `used ${t.usedAt} by ${t.usedBy ?? '?'}`}`)));
    }),
  );

  // --- allowlist -----------------------------------------------------------------------
  const allowlist = ca.command('allowlist').description('the kernel allowlist');
  withAdminOptions(
    allowlist
      .command('add [digest]')
      .description('allow a kernel: by digest, by image file (hashed here), or by a guest manifest.json (kernel, initrd and cmdline)')
      .requiredOption('--name <name>', 'a label for the entry (unique)')
      .option('--file <image>', 'hash this kernel image file (streamed)')
      .option('--manifest <file>', 'a guest image manifest.json: pins kernel, initrd and cmdline')
      .option('--initrd <digest>', 'also pin this initramfs digest', parseDigestArg)
      .option('--cmdline <digest>', 'also pin this kernel command line digest', parseDigestArg)
      .option('--expires <when>', 'expiry: an ISO 8601 date or a duration from now (30d)', (t) => parseWhen(t)),
  ).action(
    action(async (digest: string | undefined, opts: Flags & { name: string; file?: string; manifest?: string; initrd?: Digest; cmdline?: Digest; expires?: string }) => {
      const sources = [digest, opts.file, opts.manifest].filter((s) => s !== undefined).length;
      if (sources !== 1) throw new TrustlaunchError('MALFORMED_REQUEST', 'give exactly one of DIGEST, --file IMAGE or --manifest FILE');
      let image: { kernel: Digest; initrd?: Digest; cmdline?: Digest };
      if (digest !== undefined) {
        if (!isDigest(digest)) throw new TrustlaunchError('MALFORMED_DIGEST', `not a digest: ${digest.slice(0, 80)} (want sha256:<64 hex>; or use --file IMAGE)`);
        image = { kernel: digest };
      } else if (opts.file !== undefined) {
        image = { kernel: (await sha256File(opts.file)).digest };
      } else {
        const m = await readJsonFile(opts.manifest as string, ManifestSchema, 'a guest image manifest');
        image = { kernel: m.kernel, ...(m.initrd === undefined ? {} : { initrd: m.initrd }), ...(m.cmdline === undefined ? {} : { cmdline: m.cmdline }) };
      }
      const entry = {
        name: opts.name,
        ...image,
        ...(opts.initrd === undefined ? {} : { initrd: opts.initrd }),
        ...(opts.cmdline === undefined ? {} : { cmdline: opts.cmdline }),
        ...(opts.expires === undefined ? {} : { expiresAt: opts.expires }),
      };
      const added = await withAdmin(opts, (admin) => admin.addAllowlist(entry));
      printResult(opts, added, () => [`allowed: ${allowlistLine(added)}`]);
    }),
  );
  withAdminOptions(allowlist.command('ls').description('list the allowlist')).action(
    action(async (opts: Flags) => {
      const entries = await withAdmin(opts, (admin) => admin.listAllowlist());
      printResult(opts, { entries }, () => (entries.length === 0 ? ['the allowlist is empty'] : entries.map(allowlistLine)));
    }),
  );
  withAdminOptions(allowlist.command('revoke <name>').description('revoke an entry: its kernel is refused (KERNEL_REVOKED) from now on')).action(
    action(async (name: string, opts: Flags) => {
      const entry = await withAdmin(opts, (admin) => admin.revokeAllowlist(name));
      printResult(opts, entry, () => [`revoked: ${allowlistLine(entry)}`]);
    }),
  );

  // --- platform reference values ----------------------------------------------------------
  const platform = ca.command('platform').description('platform reference values: what a trusted node measures at boot');
  withAdminOptions(
    platform
      .command('add')
      .description('add reference values: from a node\'s measurements.json (`trustlaunch node init`) and/or digests')
      .requiredOption('--name <name>', 'a label for the reference (unique)')
      .option('--measurements <file>', "a node's measurements.json (hypervisor, minidomain, firmware, bootConfig)")
      .option('--hypervisor <digest>', 'hypervisor image digest (PCR 4 events)', parseDigestArg)
      .option('--minidomain <digest>', 'mini-domain image digest (PCR 12 events)', parseDigestArg)
      .option('--firmware <digest>', 'platform firmware digest (PCR 0 events)', parseDigestArg)
      .option('--boot-config <digest>', 'boot configuration digest (PCR 5 events)', parseDigestArg)
      .option('--no-firmware-check', 'with --measurements: do not pin the firmware digest')
      .option('--no-boot-config-check', 'with --measurements: do not pin the boot configuration digest')
      .option('--pcr <index=hex>', 'require this quoted PCR value (repeatable; PCRs 0, 4, 5, 12)', parsePcrArg),
  ).action(
    action(
      async (
        opts: Flags & { name: string; measurements?: string; hypervisor?: Digest; minidomain?: Digest; firmware?: Digest; bootConfig?: Digest; firmwareCheck: boolean; bootConfigCheck: boolean; pcr?: Record<string, string> },
      ) => {
        const m = opts.measurements === undefined ? undefined : await readJsonFile(opts.measurements, MeasurementsSchema, "a node's measurements.json");
        const hypervisor = opts.hypervisor ?? m?.hypervisor;
        const minidomain = opts.minidomain ?? m?.minidomain;
        if (hypervisor === undefined || minidomain === undefined) throw new TrustlaunchError('MALFORMED_REQUEST', 'the hypervisor and mini-domain digests are required (--measurements FILE, or --hypervisor and --minidomain)');
        const firmware = opts.firmware ?? (opts.firmwareCheck ? m?.firmware : undefined);
        const bootConfig = opts.bootConfig ?? (opts.bootConfigCheck ? m?.bootConfig : undefined);
        const reference = {
          name: opts.name,
          hypervisor,
          minidomain,
          ...(firmware === undefined ? {} : { firmware }),
          ...(bootConfig === undefined ? {} : { bootConfig }),
          ...(opts.pcr === undefined ? {} : { pcrs: opts.pcr }),
        };
        const added = await withAdmin(opts, (admin) => admin.addPlatform(reference));
        printResult(opts, added, () => ['added platform reference values:', ...platformLines(added)]);
      },
    ),
  );
  withAdminOptions(platform.command('ls').description('list platform reference values')).action(
    action(async (opts: Flags) => {
      const platforms = await withAdmin(opts, (admin) => admin.listPlatforms());
      printResult(opts, { platforms }, () => (platforms.length === 0 ? ['no platform reference values'] : platforms.flatMap(platformLines)));
    }),
  );
  withAdminOptions(platform.command('rm <name>').description('remove platform reference values (nodes measured so are refused from now on)')).action(
    action(async (name: string, opts: Flags) => {
      const r = await withAdmin(opts, (admin) => admin.removePlatform(name));
      printResult(opts, r, () => [`removed platform reference values ${r.removed}`]);
    }),
  );

  // --- nodes ------------------------------------------------------------------------------
  const nodes = ca.command('nodes').description('registered nodes');
  withAdminOptions(nodes.command('ls').description('list registered nodes')).action(
    action(async (opts: Flags) => {
      const list = await withAdmin(opts, (admin) => admin.listNodes());
      printResult(opts, { nodes: list }, () => (list.length === 0 ? ['no nodes'] : list.map(nodeLine)));
    }),
  );
  withAdminOptions(nodes.command('show <id>').description('show one node')).action(
    action(async (id: string, opts: Flags) => {
      const n = await withAdmin(opts, (admin) => admin.node(id));
      printResult(opts, n, () => [nodeLine(n), `  EK certificate ${n.ekCertificate.subject} from ${n.ekCertificate.issuer} (${n.ekCertificate.fingerprint})`, `  AK name ${n.akName}`]);
    }),
  );
  withAdminOptions(nodes.command('revoke <id>').description("revoke a node: its evidence is refused (NODE_REVOKED) from now on").option('--reason <text>', 'why (recorded)')).action(
    action(async (id: string, opts: Flags & { reason?: string }) => {
      const n = await withAdmin(opts, (admin) => admin.revokeNode(id, opts.reason));
      printResult(opts, n, () => [`revoked: ${nodeLine(n)}`]);
    }),
  );

  // --- decisions ------------------------------------------------------------------------------
  const decisions = ca.command('decisions').description('the decisions log (append-only)');
  withAdminOptions(
    decisions
      .command('ls')
      .description('list decisions, oldest first')
      .option('--node <id>', 'only this node')
      .option('--since <when>', 'only from this time: ISO 8601, or a duration ago (1h)', (t) => parseWhenAgo(t))
      .option('--limit <n>', 'at most this many (default 100)', parseInteger(1, 100_000), 100)
      .option('--cursor <cursor>', 'continue after a previous page'),
  ).action(
    action(async (opts: Flags & { node?: string; since?: string; limit: number; cursor?: string }) => {
      const page = await withAdmin(opts, async (admin) => {
        const out: Awaited<ReturnType<typeof admin.decisions>>['decisions'] = [];
        let cursor = opts.cursor;
        while (out.length < opts.limit) {
          const p = await admin.decisions({ limit: Math.min(1000, opts.limit - out.length), ...(opts.node === undefined ? {} : { node: opts.node }), ...(opts.since === undefined ? {} : { since: opts.since }), ...(cursor === undefined ? {} : { cursor }) });
          out.push(...p.decisions);
          cursor = p.nextCursor;
          if (cursor === undefined) break;
        }
        return { decisions: out, ...(cursor === undefined ? {} : { nextCursor: cursor }) };
      });
      printResult(opts, page, () => [
        ...(page.decisions.length === 0 ? ['no decisions'] : []),
        ...page.decisions.map((d) => `${d.at}  ${d.kind.padEnd(12)} ${d.outcome.padEnd(15)} ${d.node ?? '-'}${d.vm === undefined ? '' : `/${d.vm}`}${d.code === undefined ? '' : `  ${d.step ?? '?'}: ${d.code}`}${d.message === undefined ? '' : `  ${d.message}`}`),
        ...(page.nextCursor === undefined ? [] : [`(more: --cursor ${page.nextCursor})`]),
      ]);
    }),
  );
}

/** `--since`: an ISO 8601 time, or a duration before now. */
function parseWhenAgo(text: string): string {
  if (/^\d{1,9}[smhdw]?$/.test(text.trim())) return new Date(Date.now() - parseDuration(text) * 1000).toISOString();
  return parseWhen(text);
}

