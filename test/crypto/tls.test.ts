import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { request, type Agent } from 'undici';
import { generateKeyPair } from '../../src/crypto/keys.js';
import { issueTlsServerCertificate, pinnedCaAgent, serverTlsOptions, type TlsServerCertificate } from '../../src/crypto/tls.js';
import { createSelfSignedCa, issueCertificate, type Certificate } from '../../src/crypto/x509.js';

async function newCa(commonName: string): Promise<{ certificate: Certificate; privateKey: ReturnType<typeof generateKeyPair>['privateKey'] }> {
  const { privateKey } = generateKeyPair('ecdsa-p256');
  return { certificate: await createSelfSignedCa({ commonName, privateKey }), privateKey };
}

async function listen(identity: TlsServerCertificate): Promise<{ server: Server; port: number }> {
  const server = createServer(serverTlsOptions(identity.chain, identity.privateKey), (_req, res) => {
    res.end('hello over pinned TLS');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

async function get(url: string, dispatcher: Agent): Promise<string> {
  const res = await request(url, { dispatcher });
  return res.body.text();
}

describe('TLS helpers with a real https server on 127.0.0.1', () => {
  const agents: Agent[] = [];
  const servers: Server[] = [];
  let ca: Awaited<ReturnType<typeof newCa>>;
  let other: Awaited<ReturnType<typeof newCa>>;
  let port: number;
  const agent = (a: Agent): Agent => {
    agents.push(a);
    return a;
  };

  before(async () => {
    ca = await newCa('trustlaunch test CA');
    other = await newCa('some other CA');
    const started = await listen(await issueTlsServerCertificate({ issuer: ca, names: ['ca.trustlaunch.test'] }));
    servers.push(started.server);
    port = started.port;
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.close()));
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  });

  it('connects when the server chains to the pinned CA, by IP and by a name in the certificate', async () => {
    assert.equal(await get(`https://127.0.0.1:${port}/`, agent(pinnedCaAgent({ ca: ca.certificate }))), 'hello over pinned TLS');
    assert.equal(await get(`https://127.0.0.1:${port}/`, agent(pinnedCaAgent({ ca: ca.certificate, serverName: 'ca.trustlaunch.test' }))), 'hello over pinned TLS');
  });

  it('fails against a server certificate from another CA', async () => {
    await assert.rejects(get(`https://127.0.0.1:${port}/`, agent(pinnedCaAgent({ ca: other.certificate }))), (e: Error & { code?: string }) => {
      assert.match(String(e.code), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER/);
      return true;
    });
  });

  it('fails when the certificate does not name the server', async () => {
    await assert.rejects(get(`https://127.0.0.1:${port}/`, agent(pinnedCaAgent({ ca: ca.certificate, serverName: 'evil.trustlaunch.test' }))), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
      return true;
    });
    // a certificate valid only for another name, served on 127.0.0.1
    const { publicKey, privateKey } = generateKeyPair('ecdsa-p256');
    const elsewhere = await issueCertificate({ issuer: ca, subjectPublicKey: publicKey, commonName: 'elsewhere.test', profile: 'server', dnsNames: ['elsewhere.test'] });
    const started = await listen({ certificate: elsewhere, privateKey, chain: [elsewhere] });
    servers.push(started.server);
    await assert.rejects(get(`https://127.0.0.1:${started.port}/`, agent(pinnedCaAgent({ ca: ca.certificate }))), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
      return true;
    });
  });

  it('fails against an expired server certificate', async () => {
    const { publicKey, privateKey } = generateKeyPair('ecdsa-p256');
    const expired = await issueCertificate({
      issuer: ca,
      subjectPublicKey: publicKey,
      commonName: 'localhost',
      profile: 'server',
      ipAddresses: ['127.0.0.1'],
      notBefore: new Date(Date.now() - 7200_000),
      notAfter: new Date(Date.now() - 3600_000),
    });
    const started = await listen({ certificate: expired, privateKey, chain: [expired] });
    servers.push(started.server);
    await assert.rejects(get(`https://127.0.0.1:${started.port}/`, agent(pinnedCaAgent({ ca: ca.certificate }))), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'CERT_HAS_EXPIRED');
      return true;
    });
  });

  it('refuses a key that does not belong to the leaf', async () => {
    const identity = await issueTlsServerCertificate({ issuer: ca });
    assert.throws(() => serverTlsOptions(identity.chain, generateKeyPair('ecdsa-p256').privateKey), TypeError);
  });
});
