// TLS helpers: a server identity from a certificate chain and key, a client agent that
// trusts exactly one pinned CA certificate (the system roots are replaced, not extended)
// and checks the server name, and issuance of server certificates for local services.
import { createPublicKey, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { Agent } from 'undici';
import { exportPrivateKeyPem, generateKeyPair } from './keys.js';
import { issueCertificate, type Certificate, type CertificateIssuer } from './x509.js';

export interface TlsServerOptions {
  /** PEM chain, leaf first (the shape src/http/server.ts's TlsIdentity takes). */
  readonly cert: string;
  /** PEM PKCS#8 private key of the leaf. */
  readonly key: string;
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3';
}

/** Options for node:https / fastify from a chain (leaf first, root optional) and the leaf's private key. */
export function serverTlsOptions(chain: readonly Certificate[], privateKey: KeyObject, minVersion: 'TLSv1.2' | 'TLSv1.3' = 'TLSv1.3'): TlsServerOptions {
  const [leaf] = chain;
  if (leaf === undefined) throw new TypeError('a TLS server needs at least its leaf certificate');
  if (privateKey.type !== 'private' || !leaf.publicKey.equals(createPublicKey(privateKey))) throw new TypeError('the private key does not belong to the leaf certificate');
  return { cert: chain.map((c) => c.pem).join(''), key: exportPrivateKeyPem(privateKey), minVersion };
}

export interface PinnedAgentOptions {
  /** The one CA certificate the server's chain must lead to. */
  readonly ca: Certificate;
  /** Name the server certificate must carry, when it differs from the URL's host (also sent as SNI if a DNS name). */
  readonly serverName?: string;
  /** A client certificate chain (leaf first) and key, for mutual TLS. */
  readonly client?: { readonly chain: readonly Certificate[]; readonly privateKey: KeyObject };
  readonly minVersion?: 'TLSv1.2' | 'TLSv1.3';
}

/**
 * An undici Agent that trusts only `ca` (Node's `ca` option replaces the Mozilla roots)
 * and checks the server's name: the URL host by default, or `serverName`.
 */
export function pinnedCaAgent(opts: PinnedAgentOptions): Agent {
  const expected = opts.serverName;
  return new Agent({
    connect: {
      ca: [opts.ca.pem],
      rejectUnauthorized: true,
      minVersion: opts.minVersion ?? 'TLSv1.2',
      ...(expected !== undefined && isIP(expected) === 0 ? { servername: expected } : {}),
      ...(expected === undefined
        ? {}
        : { checkServerIdentity: (_host: string, cert: PeerCertificate): Error | undefined => checkServerIdentity(expected, cert) }),
      ...(opts.client === undefined ? {} : { cert: opts.client.chain.map((c) => c.pem).join(''), key: exportPrivateKeyPem(opts.client.privateKey) }),
    },
  });
}

export interface TlsServerCertificate {
  readonly certificate: Certificate;
  readonly privateKey: KeyObject;
  /** Leaf then the issuer: what serverTlsOptions takes. */
  readonly chain: readonly Certificate[];
}

/** Issues a P-256 server certificate for 127.0.0.1, ::1, localhost and `names` (DNS names or IP addresses). */
export async function issueTlsServerCertificate(opts: {
  readonly issuer: CertificateIssuer;
  readonly commonName?: string;
  readonly names?: readonly string[];
  readonly notAfter?: Date;
}): Promise<TlsServerCertificate> {
  const names = [...new Set(['localhost', '127.0.0.1', '::1', ...(opts.names ?? [])])];
  const { publicKey, privateKey } = generateKeyPair('ecdsa-p256');
  const certificate = await issueCertificate({
    issuer: opts.issuer,
    subjectPublicKey: publicKey,
    commonName: opts.commonName ?? names.find((n) => isIP(n) === 0 && n !== 'localhost') ?? 'localhost',
    profile: 'server',
    dnsNames: names.filter((n) => isIP(n) === 0),
    ipAddresses: names.filter((n) => isIP(n) !== 0),
    ...(opts.notAfter === undefined ? {} : { notAfter: opts.notAfter }),
  });
  return { certificate, privateKey, chain: [certificate, opts.issuer.certificate] };
}
