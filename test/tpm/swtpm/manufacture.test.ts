// Manufacturing a node's swtpm with swtpm_setup and a configuration that lives in the node
// directory: EKs and EK certificates in NV that openssl verifies against the node-local CA,
// certificates that certify exactly the EKs in the TPM, secrets 0600, nothing written under
// /var/lib or /etc, and no second manufacturing over an existing identity.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate, createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { EK_CERT_NV_INDEX } from '../../../src/tpm/auth-device.js';
import { publicKeyOf } from '../../../src/tpm/crypto/public-key.js';
import { EK_HANDLE } from '../../../src/tpm/templates.js';
import { TpmClient } from '../../../src/tpm/client/client.js';
import { nvRead, nvReadPublic } from '../../../src/tpm/client/commands/nv.js';
import { readPublic } from '../../../src/tpm/client/commands/objects.js';
import { startupClear } from '../../../src/tpm/client/commands/startup.js';
import { TPM_RH } from '../../../src/tpm/constants.js';
import { SocketTransport } from '../../../src/tpm/client/socket-transport.js';
import { isManufactured, localCaCertificates, manufactureSwtpm, swtpmLayout, type SwtpmLayout } from '../../../src/tpm/swtpm/manufacture.js';
import { SwtpmProcess } from '../../../src/tpm/swtpm/process.js';
import { tempDir } from '../../support/system.js';
import { assertProcessGone, requireSwtpmTools } from './support.js';

/** Names and mtimes of everything under the system places swtpm_setup would use by default. */
function systemSnapshot(): string {
  const seen: string[] = [];
  for (const dir of ['/var/lib/swtpm-localca', '/etc', '/etc/swtpm']) {
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      const st = statSync(join(dir, name), { throwIfNoEntry: false });
      if (st !== undefined && (dir !== '/etc' || /swtpm/.test(name))) seen.push(`${dir}/${name} ${st.mtimeMs}`);
    }
    seen.push(`${dir} ${statSync(dir).mtimeMs}`);
  }
  return seen.sort().join('\n');
}

void describe('swtpm manufacturing with a node-local CA', () => {
  let work: { path: string; dispose: () => void };
  let layout: SwtpmLayout;
  let before_: string;
  before(async () => {
    requireSwtpmTools();
    work = tempDir('tl-manufacture-');
    layout = swtpmLayout(work.path);
    before_ = systemSnapshot();
    assert.equal(await isManufactured(layout), false);
    await manufactureSwtpm(layout, { platformManufacturer: 'trustlaunch test', platformModel: 'node-7' });
  });
  after(() => {
    work.dispose();
  });

  void it('keeps the configuration, the CA and the TPM state in the node directory, secrets 0600', async () => {
    assert.equal(await isManufactured(layout), true);
    const conf = readFileSync(layout.setupConfig, 'utf8');
    assert.match(conf, new RegExp(`create_certs_tool_config = ${join(layout.caDir, 'swtpm-localca.conf')}`));
    assert.match(readFileSync(join(layout.caDir, 'swtpm-localca.conf'), 'utf8'), new RegExp(`statedir = ${layout.caDir}`));
    for (const secret of [layout.setupConfig, join(layout.caDir, 'signkey.pem'), join(layout.caDir, 'swtpm-localca-rootca-privkey.pem')]) {
      assert.equal(statSync(secret).mode & 0o777, 0o600, secret);
    }
    assert.equal(systemSnapshot(), before_, 'swtpm_setup touched /var/lib/swtpm-localca or /etc');
    const { root, issuer } = await localCaCertificates(layout);
    assert.match(root, /BEGIN CERTIFICATE/);
    assert.match(issuer, /BEGIN CERTIFICATE/);
  });

  void it('puts EK certificates in NV that openssl verifies against the node-local CA and that certify the EKs in the TPM', async () => {
    const proc = await SwtpmProcess.start({ stateDir: layout.stateDir, transport: 'unix' });
    const tpm = new TpmClient(new SocketTransport(proc.data), { timeoutMs: 10_000 });
    try {
      await startupClear(tpm);
      for (const alg of ['rsa2048', 'ecc-p384'] as const) {
        const nv = await nvReadPublic(tpm, EK_CERT_NV_INDEX[alg]);
        const der = await nvRead(tpm, { index: EK_CERT_NV_INDEX[alg], authHandle: TPM_RH.OWNER, size: nv.public.dataSize });
        const pem = join(work.path, `ek-${alg}.pem`);
        writeFileSync(pem, new X509Certificate(der).toString());
        const v = spawnSync('openssl', ['verify', '-CAfile', layout.rootCertificate, '-untrusted', layout.issuerCertificate, pem], { encoding: 'utf8', timeout: 10_000 });
        assert.equal(v.status, 0, v.stderr + v.stdout);
        const ek = await readPublic(tpm, EK_HANDLE[alg]);
        const certKey = new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });
        const ekKey = publicKeyOf(ek.public).export({ type: 'spki', format: 'der' });
        assert.deepEqual(certKey, ekKey, `the ${alg} certificate certifies another key`);
      }
      // A certificate from another CA does not verify against this node's root (openssl as the judge).
      const foreign = join(work.path, 'foreign.pem');
      const gen = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(work.path, 'foreign.key'), '-subj', '/CN=not-the-node-ca', '-days', '1', '-out', foreign], { encoding: 'utf8' });
      assert.equal(gen.status, 0, gen.stderr);
      assert.notEqual(spawnSync('openssl', ['verify', '-CAfile', layout.rootCertificate, foreign], { encoding: 'utf8' }).status, 0);
    } finally {
      await tpm.close();
      await proc.stop();
      assertProcessGone(proc.pid);
    }
  });

  void it('refuses to manufacture over an existing TPM, leaving its state as it was', async () => {
    const state = join(layout.stateDir, 'tpm2-00.permall');
    const digest = createHash('sha256').update(readFileSync(state)).digest('hex');
    await assert.rejects(manufactureSwtpm(layout), (e: unknown) => isTrustlaunchError(e, 'CONFLICT'));
    assert.equal(createHash('sha256').update(readFileSync(state)).digest('hex'), digest);
  });

  void it('refuses platform fields that could inject options into swtpm_localca', async () => {
    const other = swtpmLayout(join(work.path, 'other'));
    await assert.rejects(manufactureSwtpm(other, { platformModel: 'x\n--option' }), TypeError);
    assert.equal(await isManufactured(other), false);
  });

  void it('names the missing package when swtpm_setup is not installed (`up --device swtpm` on a bare machine)', async () => {
    const other = swtpmLayout(join(work.path, 'no-tools'));
    const path = process.env['PATH'];
    process.env['PATH'] = join(work.path, 'empty-bin');
    try {
      await assert.rejects(manufactureSwtpm(other), (e: unknown) => isTrustlaunchError(e, 'UNAVAILABLE') && /swtpm_setup is not installed .*swtpm-tools/.test((e as Error).message));
    } finally {
      process.env['PATH'] = path;
    }
    assert.equal(await isManufactured(other), false);
  });
});
