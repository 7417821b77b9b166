// The software TPM (`sim` auth device): manufacturing with a manufacturer CA, EK
// certificates in NV, AK creation, power cycles (PCRs reset; objects, NV and counters
// persist), NV semantics with typed errors where every refusal changes nothing, state
// file mode and atomic replacement, and the engine running on external PCRs and store.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseCertificate, TCG_OID, verifyChainSync } from '../../src/crypto/x509.js';
import { isTrustlaunchError, type ErrorCode } from '../../src/protocol/errors.js';
import { sha256 } from '../../src/protocol/digest.js';
import { EK_CERT_NV_INDEX, NV_INDEX, NV_INDEX_MAX } from '../../src/tpm/auth-device.js';
import { TPM_ALG } from '../../src/tpm/constants.js';
import { objectName } from '../../src/tpm/crypto/name.js';
import { publicKeyOf } from '../../src/tpm/crypto/public-key.js';
import { extendValue, PcrBank } from '../../src/tpm/pcr-bank.js';
import { TpmEngine } from '../../src/tpm/sim/engine.js';
import { manufactureTpm } from '../../src/tpm/sim/manufacture.js';
import { ekIssuer, ensureManufacturerCa, manufactureSoftwareTpm } from '../../src/tpm/sim/manufacturer-ca.js';
import { FileStateStore, MemoryStateStore } from '../../src/tpm/sim/store.js';
import { parseTpmsAttest } from '../../src/tpm/structures/attest.js';
import { hasAttributes } from '../../src/tpm/structures/object-attributes.js';
import { marshalTpmtPublic, parseTpmtPublic, type TpmtPublic } from '../../src/tpm/structures/public.js';
import { AK_HANDLE, AK_TEMPLATE_ECC_P256, EK_HANDLE, EK_TEMPLATES } from '../../src/tpm/templates.js';
import { requireCommand, tempDir } from '../support/system.js';
import { manufacturedSim, type SimFixture } from './sim-support.js';

const mode = (path: string): number => statSync(path).mode & 0o777;

async function refusedWithoutChange(sim: SimFixture, code: ErrorCode, op: () => Promise<unknown>): Promise<void> {
  const before = readFileSync(sim.statePath);
  await assert.rejects(op, (e) => isTrustlaunchError(e, code));
  assert.deepEqual(readFileSync(sim.statePath), before, `a refused operation (${code}) changed the TPM state`);
}

void describe('software TPM: manufacturing', () => {
  let sim: SimFixture;
  before(async () => {
    sim = await manufacturedSim();
  });
  after(async () => {
    await sim.dispose();
  });

  void it('writes the CA certificate, its key and the state with the right modes, and no temporary files', () => {
    assert.equal(mode(join(sim.dir, 'manufacturer-ca.key')), 0o600);
    assert.equal(mode(sim.statePath), 0o600);
    assert.equal(mode(join(sim.dir, 'manufacturer-ca.pem')), 0o644);
    assert.deepEqual(readdirSync(sim.dir).sort(), ['manufacturer-ca.key', 'manufacturer-ca.pem', 'tpm-state.json']);
  });

  void it('carries RSA-2048 and ECC P-256 EKs from the TCG templates with EK certificates from the manufacturer CA', async () => {
    const endorsements = await sim.device.endorsements();
    assert.deepEqual(
      endorsements.map((e) => e.algorithm),
      ['rsa2048', 'ecc-p256'],
    );
    for (const e of endorsements) {
      const pub = parseTpmtPublic(e.public);
      assert.deepEqual(marshalTpmtPublic({ ...EK_TEMPLATES[e.algorithm], unique: pub.unique } as TpmtPublic), Buffer.from(e.public), 'template + key');
      const cert = parseCertificate(e.certificate);
      assert.deepEqual(verifyChainSync(cert, { roots: [sim.caCertificate] }).length, 2);
      assert.ok(cert.publicKey.equals(publicKeyOf(pub)), 'the certificate certifies this EK');
      assert.ok(cert.extendedKeyUsage?.includes(TCG_OID.ekCertificate));
      assert.equal(cert.tpm?.manufacturer, 'id:544C5357');
      assert.deepEqual(Buffer.from(await sim.device.nvRead(EK_CERT_NV_INDEX[e.algorithm])), Buffer.from(e.certificate));
    }
  });

  void it('EK certificates verify with openssl against the manufacturer CA certificate', () => {
    requireCommand('openssl');
    const d = tempDir();
    try {
      for (const [alg, index] of Object.entries(EK_CERT_NV_INDEX)) {
        if (alg === 'ecc-p384') continue;
        const der = sim.device.engine.nvRead(index);
        writeFileSync(join(d.path, 'ek.der'), der);
        execFileSync('openssl', ['x509', '-inform', 'DER', '-in', join(d.path, 'ek.der'), '-out', join(d.path, 'ek.pem')]);
        const out = execFileSync('openssl', ['verify', '-CAfile', join(sim.dir, 'manufacturer-ca.pem'), join(d.path, 'ek.pem')], { encoding: 'utf8' });
        assert.match(out, /: OK/);
      }
    } finally {
      d.dispose();
    }
  });

  void it('refuses to remanufacture an existing TPM unless asked, and keeps the CA across TPMs', async () => {
    await assert.rejects(manufactureSoftwareTpm(sim.dir), (e) => isTrustlaunchError(e, 'CONFLICT'));
    const second = await manufactureSoftwareTpm(sim.dir, { statePath: join(sim.dir, 'second.json') });
    assert.equal(second.caCertificate.sha256Fingerprint, sim.caCertificate.sha256Fingerprint);
    assert.notDeepEqual(second.endorsementKeys.get('rsa2048'), (await sim.device.endorsements())[0]?.public);
  });

  void it('creates one persistent AK per EK: restricted ECDSA P-256 signing key, fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth', async () => {
    const ak = await sim.device.ensureAttestationKey('rsa2048');
    assert.equal(ak.handle, AK_HANDLE.rsa2048);
    assert.deepEqual(ak.name, objectName(ak.public));
    const pub = parseTpmtPublic(ak.public);
    assert.equal(pub.type, TPM_ALG.ECC);
    assert.ok(hasAttributes(pub.objectAttributes, 'restricted', 'sign', 'fixedTPM', 'fixedParent', 'sensitiveDataOrigin', 'userWithAuth'));
    assert.ok(!hasAttributes(pub.objectAttributes, 'decrypt'));
    const again = await sim.device.ensureAttestationKey('rsa2048');
    assert.deepEqual(again, ak);
    const other = await sim.device.ensureAttestationKey('ecc-p256');
    assert.notDeepEqual(other.public, ak.public);
  });

  void it('makes RSA-2048 RSASSA-SHA256 AKs when configured', async () => {
    const rsa = sim.reopen('rsa2048');
    await rsa.powerOn();
    try {
      await rsa.engine.evict(AK_HANDLE['ecc-p256']);
      const ak = await rsa.ensureAttestationKey('ecc-p256');
      const pub = parseTpmtPublic(ak.public);
      assert.equal(pub.type, TPM_ALG.RSA);
      assert.deepEqual(pub.parameters.scheme, { scheme: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA256 });
    } finally {
      await rsa.powerOff();
    }
  });
});

void describe('software TPM: power cycles and persistence', () => {
  let sim: SimFixture;
  before(async () => {
    sim = await manufacturedSim({ algorithms: ['ecc-p256'] });
  });
  after(async () => {
    await sim.dispose();
  });

  void it('answers DEVICE_NOT_READY while powered off', async () => {
    const off = sim.reopen();
    await assert.rejects(off.pcrRead([0]), (e) => isTrustlaunchError(e, 'DEVICE_NOT_READY'));
    await assert.rejects(off.quote({ handle: 1, public: new Uint8Array(), name: new Uint8Array() }, [0], new Uint8Array(32)), (e) => isTrustlaunchError(e, 'DEVICE_NOT_READY'));
  });

  void it('resets PCRs on a power cycle; keeps the AK, NV and the clock; counts the reset', async () => {
    const d = sim.device;
    const ak = await d.ensureAttestationKey('ecc-p256');
    const m = sha256('mini-domain image');
    await d.pcrExtend(12, m);
    assert.deepEqual((await d.pcrRead([12])).get(12), extendValue(Buffer.alloc(32), m));
    await d.nvDefine(NV_INDEX.REGISTRATION, { size: 16 });
    await d.nvWrite(NV_INDEX.REGISTRATION, Buffer.alloc(16, 9));
    const q1 = parseTpmsAttest((await d.quote(ak, [12], Buffer.alloc(32))).attest);

    await d.powerOff();
    await d.powerOn();
    assert.deepEqual((await d.pcrRead([0, 12])).get(12), Buffer.alloc(32), 'PCRs start from zero after TPM2_Startup(CLEAR)');
    assert.deepEqual(await d.ensureAttestationKey('ecc-p256'), ak, 'the persistent AK survives');
    assert.deepEqual(Buffer.from(await d.nvRead(NV_INDEX.REGISTRATION)), Buffer.alloc(16, 9));
    const q2 = parseTpmsAttest((await d.quote(ak, [12], Buffer.alloc(32))).attest);
    assert.equal(q2.clockInfo.resetCount, q1.clockInfo.resetCount + 1);
    assert.equal(q2.clockInfo.restartCount, 0);
    assert.ok(q2.clockInfo.clock >= q1.clockInfo.clock, 'the clock never goes back');

    const other = sim.reopen();
    await other.powerOn();
    try {
      assert.deepEqual(await other.ensureAttestationKey('ecc-p256'), ak, 'a second process opening the file sees the same TPM');
    } finally {
      await other.powerOff();
    }
  });

  void it('runs the same engine on an external PCR bank and an in-memory store (the storage-only device shape)', async () => {
    const store = new MemoryStateStore();
    const ca = await ensureManufacturerCa(join(sim.dir, 'ca2'));
    await manufactureTpm(store, { issueEkCertificate: ekIssuer(ca), algorithms: ['ecc-p256'] });
    const bank = new PcrBank();
    const engine = await TpmEngine.load(store, { pcrs: bank });
    await engine.startup();
    engine.pcrExtend(4, sha256('hypervisor'));
    assert.deepEqual(bank.read(4), engine.pcrRead(4), 'the engine extends the bank it was given');
    bank.extend(5, sha256('boot config'));
    const ak = await engine.createPersistent(EK_HANDLE['ecc-p256'], AK_TEMPLATE_ECC_P256, 0x81010200);
    const quoted = parseTpmsAttest(engine.quote(ak.handle, [4, 5], Buffer.alloc(0)).attest);
    assert.equal(quoted.attested.kind, 'quote');
    const reloaded = await TpmEngine.load(store);
    assert.ok(reloaded.hasObject(0x81010200), 'objects persist through the store');
  });
});

void describe('software TPM: NV indices', () => {
  let sim: SimFixture;
  before(async () => {
    sim = await manufacturedSim({ algorithms: ['ecc-p256'] });
  });
  after(async () => {
    await sim.dispose();
  });
  const IDX = 0x01500100;

  void it('defines, writes (with offsets), reads and undefines; unwritten bytes read as 0xFF like swtpm', async () => {
    const d = sim.device;
    await d.nvDefine(IDX, { size: 8 });
    assert.equal(await d.nvSize(IDX), 8);
    await refusedWithoutChange(sim, 'NV_UNINITIALIZED', () => d.nvRead(IDX));
    await d.nvWrite(IDX, Buffer.from('ab'), 2);
    assert.equal(Buffer.from(await d.nvRead(IDX)).toString('hex'), 'ffff6162ffffffff');
    await d.nvUndefine(IDX);
    assert.equal(await d.nvSize(IDX), undefined);
  });

  void it('holds NV_INDEX_MAX = 2048 bytes per index and refuses more with NV_SIZE_EXCEEDED', async () => {
    const d = sim.device;
    await d.nvDefine(IDX, { size: NV_INDEX_MAX });
    const data = Buffer.alloc(NV_INDEX_MAX, 0x5a);
    await d.nvWrite(IDX, data);
    assert.deepEqual(Buffer.from(await d.nvRead(IDX)), data);
    await refusedWithoutChange(sim, 'NV_SIZE_EXCEEDED', () => d.nvDefine(IDX + 1, { size: NV_INDEX_MAX + 1 }));
    await refusedWithoutChange(sim, 'NV_SIZE_EXCEEDED', () => d.nvWrite(IDX, Buffer.alloc(1), NV_INDEX_MAX));
    await refusedWithoutChange(sim, 'NV_SIZE_EXCEEDED', () => d.nvWrite(IDX, Buffer.alloc(NV_INDEX_MAX + 1)));
    await d.nvUndefine(IDX);
  });

  void it('answers NV_INDEX_EXISTS and NV_INDEX_UNDEFINED, and refuses non-NV handles', async () => {
    const d = sim.device;
    await d.nvDefine(IDX, { size: 4 });
    await refusedWithoutChange(sim, 'NV_INDEX_EXISTS', () => d.nvDefine(IDX, { size: 4 }));
    await d.nvUndefine(IDX);
    for (const op of [() => d.nvRead(IDX), () => d.nvWrite(IDX, Buffer.alloc(1)), () => d.nvWriteLock(IDX), () => d.nvUndefine(IDX)]) {
      await refusedWithoutChange(sim, 'NV_INDEX_UNDEFINED', op);
    }
    await refusedWithoutChange(sim, 'UNSUPPORTED', () => d.nvDefine(0x81000001, { size: 4 }));
  });

  void it('write-locks a lockable index until the next power cycle (TPMA_NV_WRITE_STCLEAR)', async () => {
    const d = sim.device;
    await d.nvDefine(NV_INDEX.CA_CERTIFICATE, { size: 4, writeLockable: true });
    await d.nvWrite(NV_INDEX.CA_CERTIFICATE, Buffer.from('cert'));
    await d.nvWriteLock(NV_INDEX.CA_CERTIFICATE);
    await refusedWithoutChange(sim, 'NV_LOCKED', () => d.nvWrite(NV_INDEX.CA_CERTIFICATE, Buffer.from('evil')));
    assert.equal(Buffer.from(await d.nvRead(NV_INDEX.CA_CERTIFICATE)).toString(), 'cert');
    await d.powerOff();
    await d.powerOn();
    await d.nvWrite(NV_INDEX.CA_CERTIFICATE, Buffer.from('new!'));
    await d.nvDefine(IDX, { size: 4 });
    await refusedWithoutChange(sim, 'NV_ATTRIBUTES', () => d.nvWriteLock(IDX));
    await d.nvUndefine(IDX);
  });

  void it('keeps the manufacturer’s EK certificate index locked for good and out of the owner’s reach', async () => {
    const d = sim.device;
    const idx = EK_CERT_NV_INDEX['ecc-p256'];
    await refusedWithoutChange(sim, 'NV_LOCKED', () => d.nvWrite(idx, Buffer.alloc(1)));
    await refusedWithoutChange(sim, 'NV_ATTRIBUTES', () => d.nvUndefine(idx));
    await d.powerOff();
    await d.powerOn();
    await refusedWithoutChange(sim, 'NV_LOCKED', () => d.nvWrite(idx, Buffer.alloc(1)));
  });

  void it('refuses a state file others could read (FILE_INSECURE): it holds the EK and AK private keys', async () => {
    const d = tempDir();
    try {
      const path = join(d.path, 'state.json');
      writeFileSync(path, readFileSync(sim.statePath), { mode: 0o644 });
      await assert.rejects(new FileStateStore(path).load(), (e) => isTrustlaunchError(e, 'FILE_INSECURE'));
      assert.equal(await new FileStateStore(join(d.path, 'missing.json')).load(), undefined);
    } finally {
      d.dispose();
    }
  });

  void it('refuses a damaged state file with TPM_PARSE_ERROR instead of starting half a TPM', async () => {
    const broken = new MemoryStateStore(Buffer.from('{"format":"trustlaunch-sim-tpm/1","objects":[]}'));
    await assert.rejects(TpmEngine.load(broken), (e) => isTrustlaunchError(e, 'TPM_PARSE_ERROR'));
    await assert.rejects(TpmEngine.load(new MemoryStateStore()), (e) => isTrustlaunchError(e, 'DEVICE_NOT_READY'));
  });
});
