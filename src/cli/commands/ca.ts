// `trustlaunch ca …`: create a CA (init), run it (serve), show its identity (fingerprint),
// manage its endorsement roots; the admin commands against a running CA are in ca-admin.ts
// (docs/ca.md).
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { InvalidArgumentError, type Command } from 'commander';
import { CA_FILES, DEFAULTS, ListenSchema, readCaConfig, urlForListen } from '../../ca/config.js';
import { addEndorsementRoot, initCaDirectory, loadCaDirectory, loadEndorsementRoots } from '../../ca/directory.js';
import { startCaService } from '../../ca/service.js';
import { defaultDatabaseUrl, redactUrl } from '../../store/index.js';
import { action, printResult, type OutputOptions } from '../output.js';
import { serveUntilSignal } from '../serve.js';
import { registerCaAdminCommands } from './ca-admin.js';
import { collect, parseDuration, parseInteger } from './ca-options.js';

function parseListenArg(text: string): string {
  if (!ListenSchema.safeParse(text).success) throw new InvalidArgumentError('expected HOST:PORT or [IPv6]:PORT');
  return text;
}

function parseAlg(text: string): 'ES256' | 'EdDSA' {
  if (text !== 'ES256' && text !== 'EdDSA') throw new InvalidArgumentError('ES256 or EdDSA');
  return text;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'silent'];

export function registerCaCommands(program: Command): void {
  // `ca trust` (the user's side, commands/trust.ts) joins this group, whichever registers first.
  const ca = (program.commands.find((c) => c.name() === 'ca') ?? program.command('ca')).description('the Certificate Authority: registrar, verifier, receipts (docs/ca.md)');

  ca.command('init')
    .description('create a CA directory: receipt, SSH CA and root keys, TLS certificate, admin token; prints the fingerprint users pin')
    .requiredOption('--dir <dir>', 'the CA directory to create')
    .option('--alg <alg>', 'receipt signature algorithm: ES256 or EdDSA', parseAlg, 'ES256')
    .option('--name <name>', 'an extra DNS name or IP address for the TLS certificate (repeatable)', collect, [])
    .option('--issuer <iss>', "the receipts' iss (default trustlaunch-ca-<key fingerprint>)")
    .option('--listen <host:port>', 'where `ca serve` listens', parseListenArg, DEFAULTS.listen)
    .option('--receipt-lifetime <duration>', 'receipt and host certificate lifetime (e.g. 7d, 12h)', parseDuration, DEFAULTS.receiptLifetimeSeconds)
    .option('--evidence-skew <duration>', 'how far evidence time may differ from the CA clock', parseDuration, DEFAULTS.evidenceSkewSeconds)
    .option('--force', 'replace an existing CA (new keys: every pin and node registration must be redone)')
    .option('--json', 'print JSON')
    .action(
      action(async (opts: { dir: string; alg: 'ES256' | 'EdDSA'; name: string[]; issuer?: string; listen: string; receiptLifetime: number; evidenceSkew: number; force?: boolean } & OutputOptions) => {
        const r = await initCaDirectory(opts.dir, {
          alg: opts.alg,
          names: opts.name,
          listen: opts.listen,
          receiptLifetimeSeconds: opts.receiptLifetime,
          evidenceSkewSeconds: opts.evidenceSkew,
          ...(opts.issuer === undefined ? {} : { issuer: opts.issuer }),
          ...(opts.force === true ? { force: true } : {}),
        });
        const file = (f: string): string => join(opts.dir, f);
        printResult(
          opts,
          {
            dir: opts.dir,
            fingerprint: r.fingerprint,
            issuer: r.config.issuer,
            url: urlForListen(r.config.listen),
            receiptAlgorithm: r.config.receiptAlgorithm,
            identityFile: file(CA_FILES.identity),
            rootCertificateFile: file(CA_FILES.rootCertificate),
            sshCaPublicKeyFile: file(CA_FILES.sshCaPublicKey),
            adminTokenFile: file(CA_FILES.adminToken),
            endorsementRootsDir: file(CA_FILES.endorsementRoots),
          },
          () => [
            `CA created in ${opts.dir} (issuer ${r.config.issuer}, receipts ${r.config.receiptAlgorithm})`,
            `fingerprint: ${r.fingerprint}`,
            `  users pin it: trustlaunch ca trust ${urlForListen(r.config.listen)} --fingerprint ${r.fingerprint}`,
            `  (or with the identity document ${file(CA_FILES.identity)})`,
            `admin token: ${file(CA_FILES.adminToken)} (mode 0600)`,
            `endorsement roots: add TPM vendor CAs with \`trustlaunch ca endorsement add FILE --dir ${opts.dir}\``,
            `start it with: trustlaunch ca serve --dir ${opts.dir}`,
          ],
        );
      }),
    );

  ca.command('serve')
    .description('run the CA over HTTPS until SIGINT/SIGTERM')
    .requiredOption('--dir <dir>', 'the CA directory')
    .option('--listen <host:port>', "override ca.json's address (port 0: any free port)", parseListenArg)
    .option('--db <url>', 'database: sqlite:/path, a path, or postgres://… (default DATABASE_URL, else DIR/ca.db)')
    .option('--threads <n>', 'judge threads (default: one per CPU; 0 judges on the main thread)', parseInteger(0, 64))
    .option('--log-level <level>', `${LOG_LEVELS.join(', ')}`, 'info')
    .option('--json', 'print the start-up line as JSON')
    .action(
      action(async (opts: { dir: string; listen?: string; db?: string; threads?: number; logLevel: string } & OutputOptions) => {
        if (!LOG_LEVELS.includes(opts.logLevel)) throw new InvalidArgumentError(`--log-level: one of ${LOG_LEVELS.join(', ')}`);
        const material = await loadCaDirectory(opts.dir);
        const databaseUrl = opts.db ?? defaultDatabaseUrl(join(opts.dir, material.config.paths.database));
        const service = await startCaService({
          material,
          databaseUrl,
          threads: opts.threads ?? availableParallelism(),
          logLevel: opts.logLevel === 'silent' ? false : opts.logLevel,
          ...(opts.listen === undefined ? {} : { listen: opts.listen }),
        });
        printResult(opts, { url: service.url, fingerprint: service.fingerprint, issuer: material.config.issuer, database: redactUrl(databaseUrl), threads: service.threads }, () => [
          `CA ${material.config.issuer} serving on ${service.url} (database ${redactUrl(databaseUrl)}, ${service.threads} judge threads)`,
          `fingerprint: ${service.fingerprint}`,
        ]);
        await serveUntilSignal(() => service.close());
      }),
    );

  ca.command('fingerprint')
    .description('print the CA fingerprint and identity document (what GET /v1/keys serves)')
    .requiredOption('--dir <dir>', 'the CA directory')
    .option('--json', 'print JSON')
    .action(
      action(async (opts: { dir: string } & OutputOptions) => {
        const m = await loadCaDirectory(opts.dir);
        printResult(opts, { fingerprint: m.fingerprint, identity: m.identity }, () => [m.fingerprint]);
      }),
    );

  const endorsement = ca.command('endorsement').description("the CA's endorsement roots: TPM vendor CAs that EK certificates must chain to");
  endorsement
    .command('add <file>')
    .description('trust the CA certificate(s) of a PEM file for EK certificates (takes effect at the next registration)')
    .requiredOption('--dir <dir>', 'the CA directory')
    .option('--json', 'print JSON')
    .action(
      action(async (file: string, opts: { dir: string } & OutputOptions) => {
        const r = await addEndorsementRoot(opts.dir, file);
        printResult(opts, { file: r.file, certificates: r.certificates.map((c) => ({ subject: c.subject, fingerprint: c.sha256Fingerprint })) }, () =>
          r.certificates.map((c) => `trusted ${c.subject} (${c.sha256Fingerprint}) as ${r.file}`),
        );
      }),
    );
  endorsement
    .command('ls')
    .description('list the endorsement roots')
    .requiredOption('--dir <dir>', 'the CA directory')
    .option('--json', 'print JSON')
    .action(
      action(async (opts: { dir: string } & OutputOptions) => {
        const config = await readCaConfig(join(opts.dir, CA_FILES.config));
        const roots = await loadEndorsementRoots(opts.dir, config.paths.endorsementRoots);
        const list = roots.map((c) => ({ subject: c.subject, fingerprint: c.sha256Fingerprint, notAfter: c.notAfter.toISOString() }));
        printResult(opts, { roots: list }, () => (list.length === 0 ? ['no endorsement roots'] : list.map((c) => `${c.subject}  ${c.fingerprint}  until ${c.notAfter}`)));
      }),
    );

  registerCaAdminCommands(ca);
}
