// `trustlaunch ca trust URL --fingerprint FP | --ca-key FILE`: the user pins the CA
// (src/client/pinned-ca.ts). Registered under `ca`, next to the CA operator's commands.
import type { Command } from 'commander';
import { trustCa } from '../../client/pinned-ca.js';
import { userPaths, withConfigDirOption } from '../context.js';
import { action, printResult, type OutputOptions } from '../output.js';

interface TrustFlags extends OutputOptions {
  fingerprint?: string;
  caKey?: string;
  replace?: boolean;
  configDir?: string;
}

export function registerTrustCommand(program: Command): void {
  const ca = program.commands.find((c) => c.name() === 'ca') ?? program.command('ca').description('the Certificate Authority');
  withConfigDirOption(
    ca
      .command('trust')
      .description("pin a CA as the user's only trust anchor: fetch its identity (GET /v1/keys), check its fingerprint, store it")
      .argument('<url>', 'the CA, https://HOST:PORT'),
  )
    .option('--fingerprint <sha256>', 'the CA fingerprint its operator published (`trustlaunch ca init` / `ca fingerprint` print it)')
    .option('--ca-key <file>', "the CA's identity document (DIR/identity.json), handed over out of band")
    .option('--replace', 'replace the pin of another CA')
    .option('--json', 'print JSON')
    .action(
      action(async (url: string, opts: TrustFlags) => {
        const paths = userPaths(opts);
        const r = await trustCa({
          paths,
          url,
          ...(opts.fingerprint === undefined ? {} : { fingerprint: opts.fingerprint }),
          ...(opts.caKey === undefined ? {} : { identityFile: opts.caKey }),
          ...(opts.replace === true ? { replace: true } : {}),
        });
        printResult(
          opts,
          { pinned: r.ca.fingerprint, url: r.ca.url, issuer: r.ca.issuer, sshCaKey: r.ca.sshCaKeyLine, file: paths.pinnedCa, unchanged: r.unchanged, replaced: r.replaced ?? null },
          () => [
            r.unchanged ? `CA ${r.ca.issuer} at ${r.ca.url} was already pinned (${r.ca.fingerprint})` : `pinned CA ${r.ca.issuer} at ${r.ca.url}`,
            `  fingerprint  ${r.ca.fingerprint} (matches what you were given)`,
            `  SSH CA key   ${r.ca.sshCaKeyLine}`,
            `  stored in    ${paths.pinnedCa}`,
            ...(r.replaced === undefined ? [] : [`  replaced     ${r.replaced}`]),
            'every receipt and host certificate is now checked against this CA, and only this CA',
          ],
        );
      }),
    );
}
