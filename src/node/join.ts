// A node joins a manager (the manager's POST /v1/nodes/join): with a one-time join token
// it hands over dom0's endpoint, the CA certificate dom0's TLS chain leads to (the manager
// pins it), and the bearer token the manager will present to dom0. The manager's own TLS
// is pinned to the certificate the operator gave for it.
import { pinnedCaAgent } from '../crypto/tls.js';
import type { Certificate } from '../crypto/x509.js';
import { JsonClient } from '../http/client.js';

export interface JoinManagerOptions {
  readonly managerUrl: string;
  readonly managerCa: Certificate;
  /** The one-time join token (a secret: in the body, never a URL or a log). */
  readonly joinToken: string;
  readonly nodeId: string;
  readonly endpoint: string;
  readonly dom0CaPem: string;
  readonly dom0Token: string;
}

export async function joinManager(o: JoinManagerOptions): Promise<unknown> {
  const agent = pinnedCaAgent({ ca: o.managerCa });
  const client = new JsonClient({ baseUrl: o.managerUrl, dispatcher: agent, timeoutMs: 15_000 });
  try {
    return await client.call('POST', '/v1/nodes/join', {
      body: { token: o.joinToken, nodeId: o.nodeId, endpoint: o.endpoint, dom0CaCertificate: o.dom0CaPem, dom0Token: o.dom0Token },
    });
  } finally {
    await client.close();
    await agent.close();
  }
}
