// End to end, on the embedded defaults (SQLite) and again on a fresh PostgreSQL database:
// `vm create` through the real manager, the receipt from the real CA, and a real `ssh`
// login with StrictHostKeyChecking=yes — once trusting only the plain known_hosts line,
// once trusting only the @cert-authority line, and never with neither. Then the VM's
// receipt checked again, isolation between users, and `vm rm`.
//
// Oracles beyond the client's own verdict: OpenSSH (`ssh` with only the lines under test,
// `ssh-keygen -F` reading the file), the receipt checked again with crypto/receipts
// against the CA directory's keys, the CA's own decisions log, and the manager's view.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadCaDirectory } from '../../src/ca/directory.js';
import type { TrustlaunchClient } from '../../src/client/client.js';
import { verifyReceipt } from '../../src/crypto/receipts.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { fileText, run, sshToVm, startCloud, type TestCloud, type TestUser } from './support/cloud.js';
import { scratchDatabase } from '../support/postgres.js';
import { requirePostgresUrl } from '../support/system.js';

const expectCode = (code: string) => (e: unknown) => isTrustlaunchError(e) && e.code === code;

for (const dialect of ['sqlite', 'postgres'] as const) {
  describe(`vm create → receipt → ssh [${dialect}]`, () => {
    let cloud: TestCloud;
    let pg: { url: string; drop(): Promise<void> } | undefined;
    let alice: TestUser;
    let client: TrustlaunchClient;

    before(async () => {
      pg = dialect === 'postgres' ? await scratchDatabase(requirePostgresUrl(), { applicationName: 'trustlaunch-test-cluster' }) : undefined;
      cloud = await startCloud({ nodes: 2, ...(pg === undefined ? {} : { database: pg.url }) });
      alice = cloud.user;
      client = await alice.client();
    });
    after(async () => {
      await cloud?.dispose();
      await pg?.drop();
    });

    it('verifies the launch and logs in through the plain host key line, then through @cert-authority alone', async () => {
      const created = await client.createVm({ image: 'guest', name: 'web', expectKernel: cloud.cluster.summary.image.digest as `sha256:${string}` });
      const vmId = created.vm.vmId;
      assert.deepEqual([...created.launch.passed], ['signature', 'nonce', 'status', 'vm', 'kernel', 'hostKey', 'hostCertificate', 'authorizedKey']);
      assert.equal(created.probed, true, 'the SSH endpoint presented the attested key');
      assert.equal(created.launch.claims.sub, vmId);
      assert.equal(created.launch.claims['ear.status'], 'affirming');

      // The receipt verifies independently with the CA directory's keys, bound to the nonce the client sent.
      const material = await loadCaDirectory(cloud.cluster.paths.ca);
      const claims = await verifyReceipt(created.record.receipt, { keys: material.identity.receiptKeys, issuer: material.identity.issuer, expectedNonce: created.nonce });
      assert.equal(claims.ssh_host_key, created.launch.hostKey);
      assert.equal(claims.kernel, cloud.cluster.summary.image.digest);
      // The CA recorded exactly this affirmation.
      const decisions = (await cloud.cluster.caAdmin.decisions({})).decisions.filter((d) => d.vm === vmId);
      assert.deepEqual(decisions.map((d) => [d.outcome, d.nonce, d.receiptJti]), [['affirming', created.nonce, claims.jti]]);

      // The file has both lines; OpenSSH finds the VM in it.
      const file = alice.paths.knownHosts;
      const text = fileText(file);
      const plain = text.split('\n').find((l) => l.startsWith(`${vmId} `));
      const ca = text.split('\n').find((l) => l.startsWith(`@cert-authority ${vmId} `));
      assert.equal(plain, `${vmId} ${created.launch.hostKey}`);
      assert.equal(ca, `@cert-authority ${vmId} ${client.ca.sshCaKeyLine}`);
      const found = await run('ssh-keygen', ['-F', vmId, '-f', file]);
      assert.equal(found.status, 0, found.stderr);
      assert.match(found.stdout, new RegExp(`${vmId} ssh-ed25519 `));

      const marker = `hello-${vmId}`;
      const { argv } = await client.sshArguments('web', { command: ['echo', marker], extraOptions: ['BatchMode=yes', 'ConnectTimeout=10'] });
      assert.ok(argv.includes('StrictHostKeyChecking=yes') && argv.includes(`UserKnownHostsFile=${file}`) && argv.includes(`HostKeyAlias=${vmId}`));
      // 1. only the plain host key line
      writeFileSync(file, `${plain}\n`);
      const viaKey = await run('ssh', argv);
      assert.equal(viaKey.status, 0, viaKey.stderr);
      assert.equal(viaKey.stdout.trim(), marker);
      // 2. only the @cert-authority line (the VM serves the CA's host certificate for its name)
      writeFileSync(file, `${ca}\n`);
      const viaCert = await run('ssh', argv);
      assert.equal(viaCert.status, 0, viaCert.stderr);
      assert.equal(viaCert.stdout.trim(), marker);
      // 3. neither (the same key, filed under another name): strict checking refuses — the control that shows 1 and 2 mean something
      writeFileSync(file, `${plain?.replace(vmId, 'vm-someoneelse00000')}\n`);
      const refused = await run('ssh', argv);
      assert.equal(refused.status, 255);
      assert.match(refused.stderr, /Host key verification failed/);
      assert.doesNotMatch(refused.stdout, new RegExp(marker));
      writeFileSync(file, text);
      const again = await sshToVm(client, 'web', ['echo', marker]);
      assert.equal(again.stdout.trim(), marker, again.stderr);
    });

    it('checks the receipt again from the CA, and vm rm forgets the VM', async () => {
      const created = await client.createVm({ image: 'guest', name: 'again' });
      const check = await client.checkReceipt('again');
      assert.equal(check.vmId, created.vm.vmId);
      assert.equal(check.nonceSource, 'record');
      assert.equal(check.changedSinceCreate, false);
      assert.equal(check.receipt, created.record.receipt);
      assert.ok(check.launch.passed.includes('authorizedKey'));

      const removed = await client.removeVm('again');
      assert.deepEqual(removed, { vmId: created.vm.vmId, forgotten: true });
      assert.doesNotMatch(fileText(alice.paths.knownHosts), new RegExp(created.vm.vmId));
      await assert.rejects(client.showVm('again'), expectCode('NOT_FOUND'));
      // the manager stops it on its node
      const listed = await client.listVms();
      assert.ok(!listed.some((l) => l.vm.vmId === created.vm.vmId));
    });

    it("isolation: another user can neither see, fetch the receipt of, log in to, nor remove alice's VM", async () => {
      const created = await client.createVm({ image: 'guest', name: 'private' });
      const bob = await cloud.addUser(`bob-${dialect}`);
      const bobs = await bob.client();
      assert.deepEqual((await bobs.listVms()).map((l) => l.vm.vmId), []);
      for (const ref of ['private', created.vm.vmId]) {
        await assert.rejects(bobs.showVm(ref), expectCode('NOT_FOUND'));
        // the receipt angle: bob learns no nonce from the manager, and holds no record, so there is nothing to fetch
        await assert.rejects(bobs.checkReceipt(ref), expectCode('NOT_FOUND'));
        await assert.rejects(bobs.sshArguments(ref), expectCode('NOT_FOUND'));
        await assert.rejects(bobs.removeVm(ref), expectCode('NOT_FOUND'));
      }
      // alice's VM is untouched: still verifiable and reachable
      const check = await client.checkReceipt('private');
      assert.equal(check.vmId, created.vm.vmId);
      const ssh = await sshToVm(client, 'private', ['true']);
      assert.equal(ssh.status, 0, ssh.stderr);
      assert.equal(fileText(join(bob.paths.dir, 'known_hosts')), '');
    });
  });
}
