// The manager lies (DESIGN.md §2: the operator controls the manager). A hostile manager —
// the real one behind a small interposition layer (test/cluster/support/hostile-manager.ts)
// — serves receipts itself, changes the nonce, swaps the image, points the user at another
// SSH server. Each time the client refuses with the check that catches it named, and
// writes nothing: no known_hosts line, no VM record. The honest parties are the real CA
// and nodes; the oracle for "what really happened" is the CA (its receipts by nonce).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { TrustlaunchClient } from '../../src/client/client.js';
import { listVmRecords } from '../../src/client/records.js';
import { tamperedGuestImage } from '../../src/cluster/tampered-image.js';
import { verifyReceipt } from '../../src/crypto/receipts.js';
import { defaultGuestImage } from '../../src/node/vm/process/index.js';
import { sha256Digest, type Digest } from '../../src/protocol/digest.js';
import { isTrustlaunchError, type TrustlaunchError } from '../../src/protocol/errors.js';
import { newNonce, type Nonce } from '../../src/protocol/nonce.js';
import { startSshd, type Sshd } from '../support/sshd.js';
import { fileText, run, startCloud, type TestCloud, type TestUser } from '../cluster/support/cloud.js';
import { startHostileManager, type HostileManager } from '../cluster/support/hostile-manager.js';

type Json = Record<string, unknown>;

describe('the manager lies: the client refuses and writes nothing', () => {
  let cloud: TestCloud;
  let hostile: HostileManager;
  let alice: TestUser;
  let viaHostile: TrustlaunchClient;
  let honest: TrustlaunchClient;
  let guestDigest: Digest;
  let rogue: Sshd;

  const push = async (name: string, bytes: Buffer): Promise<Digest> => {
    const digest = sha256Digest(bytes);
    await cloud.cluster.managerAdmin.call('PUT', `/v1/blobs/${digest}`, { raw: { body: bytes, contentType: 'application/octet-stream', length: bytes.length } });
    await cloud.cluster.managerAdmin.call('POST', '/v1/images', { body: { name, raw: digest } });
    return digest;
  };

  /** The user's files before an attempt; afterwards they must be byte for byte the same. */
  const snapshot = async (): Promise<() => Promise<void>> => {
    const knownHosts = fileText(alice.paths.knownHosts);
    const records = [...(await listVmRecords(alice.paths)).keys()].sort();
    return async () => {
      assert.equal(fileText(alice.paths.knownHosts), knownHosts, 'known_hosts changed');
      assert.deepEqual([...(await listVmRecords(alice.paths)).keys()].sort(), records, 'a VM record was written');
    };
  };

  /** What the CA holds for a nonce, checked with the CA's keys (the ground truth), waiting up to 30 s. */
  const caVerdict = async (nonce: string): Promise<{ status: string; reason?: string; sub: string; kernel?: string }> => {
    const found = await honest.receipts.waitFor(nonce as Nonce, Date.now() + 30_000);
    assert.ok(found !== undefined, `the CA holds no receipt for ${nonce}`);
    const claims = await verifyReceipt(found.receipt, { keys: honest.ca.receiptKeys, issuer: honest.ca.issuer, expectedNonce: nonce });
    return { status: claims['ear.status'], sub: claims.sub, ...(claims.reason === undefined ? {} : { reason: claims.reason.code }), ...(claims.kernel === undefined ? {} : { kernel: claims.kernel }) };
  };

  const refusedWith = (code: string, check: string) => (e: unknown) => {
    assert.ok(isTrustlaunchError(e), `not a TrustlaunchError: ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.equal(e.detail?.['check'], check, e.message);
    return true;
  };

  before(async () => {
    cloud = await startCloud({ nodes: 2 });
    alice = cloud.user;
    hostile = await startHostileManager({ managerDir: cloud.cluster.paths.manager, upstream: cloud.cluster.manager.url });
    viaHostile = await alice.client({ managerUrl: hostile.url, graceMs: 1500 });
    honest = await alice.client();
    guestDigest = cloud.cluster.summary.image.digest as Digest;
    await push('evil', tamperedGuestImage());
    // another allowlisted image: what a manager could swap in without the CA objecting
    const variant = Buffer.concat([defaultGuestImage(), Buffer.from("\nprocess.stdout.write('trustlaunch-guest: variant other\\n');\n")]);
    await cloud.cluster.caAdmin.addAllowlist({ name: 'variant', kernel: await push('variant', variant) });
    rogue = await startSshd();
  });
  after(async () => {
    await rogue?.stop();
    await hostile?.close();
    await cloud?.dispose();
  });

  it('a receipt served by the manager is never asked for nor used: the verdict is the CA\'s, for this nonce', async () => {
    // A genuine, affirming receipt and host certificate of an earlier VM of the same user…
    const earlier = await honest.createVm({ image: 'guest', name: 'earlier' });
    const injected = { receipt: earlier.record.receipt, hostCertificate: earlier.record.hostCertificate };
    // …served by the manager everywhere a client might look, while it launches a tampered image.
    let sentNonce = '';
    hostile.behave({
      createRequest: (b) => ((sentNonce = String(b['nonce'])), { ...b, image: 'evil' }),
      vmView: (v) => ({ ...v, state: 'running', reason: null, ...injected, sshHostKey: earlier.launch.hostKey, attestation: { status: 'affirming', ...injected } }),
      extra: (_m, path) => (/receipt/.test(path) ? { status: 200, body: injected } : undefined),
    });
    const unchanged = await snapshot();
    await assert.rejects(viaHostile.createVm({ image: 'guest', name: 'tricked' }), (e: TrustlaunchError) => {
      refusedWith('RECEIPT_CONTRAINDICATED', 'status')(e);
      assert.equal((e.detail?.['reason'] as { code?: string } | undefined)?.code, 'KERNEL_NOT_ALLOWED');
      return true;
    });
    await unchanged();
    // The client asked the manager only to create the VM and how it goes — never for a receipt.
    assert.ok(hostile.requests.length >= 1);
    for (const r of hostile.requests) assert.match(r, /^(POST \/v1\/vms|GET \/v1\/vms\/vm-[a-z2-7]{16})$/, r);
    // The CA's receipt for the nonce the client sent is the contraindicated one the client reported.
    assert.deepEqual((await caVerdict(sentNonce)).reason, 'KERNEL_NOT_ALLOWED');
  });

  it('a changed nonce, admitted by the manager: refused at once by the nonce check', async () => {
    let forwarded = '';
    hostile.behave({ createRequest: (b) => ({ ...b, nonce: (forwarded = newNonce()) }) });
    const unchanged = await snapshot();
    const started = Date.now();
    await assert.rejects(viaHostile.createVm({ image: 'guest', name: 'nonce-admitted' }), refusedWith('NONCE_MISMATCH', 'nonce'));
    assert.ok(Date.now() - started < 10_000);
    await unchanged();
    // The launch did happen, and the CA affirmed it — under the manager's nonce, not the user's.
    assert.equal((await caVerdict(forwarded)).status, 'affirming');
  });

  it('a changed nonce, hidden by the manager: no receipt bound to the user\'s nonce, refused by the nonce check', async () => {
    let sent = '';
    let forwarded = '';
    hostile.behave({
      createRequest: (b) => ((sent = String(b['nonce'])), { ...b, nonce: (forwarded = newNonce()) }),
      vmView: (v) => ({ ...v, nonce: sent }),
    });
    const unchanged = await snapshot();
    await assert.rejects(viaHostile.createVm({ image: 'guest', name: 'nonce-hidden' }), (e: TrustlaunchError) => {
      refusedWith('NONCE_MISMATCH', 'nonce')(e);
      assert.match(e.message, /no receipt bound to the nonce this client sent/);
      return true;
    });
    await unchanged();
    assert.equal((await caVerdict(forwarded)).status, 'affirming');
    assert.equal(await honest.receipts.lookup(sent as Nonce, 0), undefined, 'the CA holds nothing for the nonce the user sent');
  });

  it('a different (allowlisted) image than requested: refused by the kernel check (--expect-kernel)', async () => {
    let sent = '';
    hostile.behave({ createRequest: (b) => ((sent = String(b['nonce'])), { ...b, image: 'variant' }), vmView: (v) => ({ ...v, image: { ref: 'guest', digest: guestDigest, kind: 'raw' } }) });
    const unchanged = await snapshot();
    await assert.rejects(viaHostile.createVm({ image: 'guest', name: 'swapped-image', expectKernel: guestDigest }), (e: TrustlaunchError) => {
      refusedWith('KERNEL_MISMATCH', 'kernel')(e);
      assert.equal(e.detail?.['expected'], guestDigest);
      assert.notEqual(e.detail?.['attested'], guestDigest);
      return true;
    });
    await unchanged();
    const truth = await caVerdict(sent);
    assert.equal(truth.status, 'affirming'); // the CA allowlists the variant: only the user's expectation catches the swap
    assert.notEqual(truth.kernel, guestDigest);
  });

  it('a swapped host key (the user sent to another SSH server): refused by the endpoint check; and ssh refuses it even unprobed', async () => {
    hostile.behave({ vmView: (v) => ({ ...v, nodeReport: { ...(v['nodeReport'] as Json | null), ssh: { host: '127.0.0.1', port: rogue.port } } }) });
    const unchanged = await snapshot();
    await assert.rejects(viaHostile.createVm({ image: 'guest', name: 'rogue-endpoint' }), (e: TrustlaunchError) => {
      refusedWith('HOST_KEY_MISMATCH', 'endpoint')(e);
      assert.deepEqual(e.detail?.['endpoint'], { host: '127.0.0.1', port: rogue.port });
      return true;
    });
    await unchanged();

    // Without the probe the launch is accepted — its receipt is genuine — and known_hosts holds the
    // attested key only; ssh to the server the manager names then fails host key verification.
    const accepted = await viaHostile.createVm({ image: 'guest', name: 'rogue-unprobed', probe: false });
    assert.equal(accepted.probed, false);
    const { argv } = await viaHostile.sshArguments('rogue-unprobed', { command: ['echo', 'reached'], extraOptions: ['BatchMode=yes', 'ConnectTimeout=10'] });
    assert.ok(argv.includes(String(rogue.port)), 'ssh goes where the manager says');
    const r = await run('ssh', argv, { timeoutMs: 30_000 });
    assert.equal(r.status, 255);
    assert.match(r.stderr, /REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
    assert.doesNotMatch(r.stdout, /reached/);
    assert.doesNotMatch(rogue.log(), /Accepted publickey/);
  });
});
