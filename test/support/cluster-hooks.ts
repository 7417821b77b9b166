// One cluster (CA and a node on the software TPM, test/node/support/cluster.ts) shared by
// the tests of a describe block: started in `before` — and, when the node enrolls, only
// once the CA has registered it — and disposed in `after`.
import { after, before } from 'node:test';
import { startCluster, type Cluster, type ClusterOptions } from '../node/support/cluster.js';

/** Registers the hooks in the current describe; call the returned function inside its tests. */
export function useCluster(o: ClusterOptions = {}): () => Cluster {
  let c: Cluster | undefined;
  before(async () => {
    c = await startCluster(o);
    if (o.enroll !== false) await c.waitForLog('registered');
  });
  after(async () => {
    await c?.dispose();
  });
  return () => {
    if (c === undefined) throw new Error('the cluster is not started: use it inside a test');
    return c;
  };
}
