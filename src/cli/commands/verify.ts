// `trustlaunch verify RECEIPT --ca-key FILE [--nonce N]`: offline verification of a receipt
// (src/client/offline.ts) with the same named checks as `vm create`.
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { loadPinnedCa, readIdentityFile } from '../../client/pinned-ca.js';
import { readReceiptInput, verifyOffline } from '../../client/offline.js';
import type { Digest } from '../../protocol/digest.js';
import { parseNonce } from '../../protocol/nonce.js';
import { userPaths, withConfigDirOption } from '../context.js';
import { action, printResult, type OutputOptions } from '../output.js';
import { parseDigestArg } from './ca-options.js';
import { launchJson, launchLines } from './vm.js';

interface VerifyFlags extends OutputOptions {
  caKey?: string;
  fingerprint?: string;
  nonce?: string;
  vm?: string;
  expectKernel?: Digest;
  hostCert?: string;
  configDir?: string;
}

export function registerVerifyCommand(program: Command): void {
  withConfigDirOption(
    program
      .command('verify')
      .description('verify a receipt offline: signature with the CA key, nonce, status, and what else you give')
      .argument('<receipt>', "a file with the receipt (a JWT, or JSON with 'receipt' and 'hostCertificate'), or - for stdin"),
  )
    .option('--ca-key <file>', "the CA's identity document (identity.json); default: the CA pinned with `ca trust`")
    .option('--fingerprint <sha256>', 'also require the identity document to have this fingerprint')
    .option('--nonce <nonce>', 'the nonce you chose (43 base64url characters)')
    .option('--vm <id>', 'the VM id the receipt must name')
    .option('--expect-kernel <digest>', 'the kernel digest the receipt must attest', parseDigestArg)
    .option('--host-cert <file>', 'an OpenSSH host certificate to check against the receipt and the CA')
    .option('--json', 'print JSON')
    .action(
      action(async (receiptFile: string, opts: VerifyFlags) => {
        const ca = opts.caKey === undefined ? await loadPinnedCa(userPaths(opts)) : await readIdentityFile(opts.caKey, opts.fingerprint);
        const bundle = await readReceiptInput(receiptFile);
        const hostCertificate = opts.hostCert === undefined ? undefined : (await readFile(opts.hostCert, 'utf8')).trim();
        const launch = await verifyOffline(bundle, {
          ca,
          ...(opts.nonce === undefined ? {} : { nonce: parseNonce(opts.nonce) }),
          ...(opts.vm === undefined ? {} : { vmId: opts.vm }),
          ...(opts.expectKernel === undefined ? {} : { kernel: opts.expectKernel }),
          ...(hostCertificate === undefined ? {} : { hostCertificate }),
        });
        printResult(opts, { ...launchJson(launch), ca: ca.fingerprint }, () => [`receipt verified with CA ${ca.issuer} (${ca.fingerprint}):`, ...launchLines(launch)]);
      }),
    );
}
