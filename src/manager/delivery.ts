// Copying an image to a node (DESIGN.md §4.2 step 2): every blob of the image the node
// has not been sent yet, streamed from the blob store. Concurrent launches of one image on
// one node share a single upload.
import type { Kysely } from 'kysely';
import type { Digest } from '../protocol/digest.js';
import type { ManagerSchema } from './db/schema.js';
import type { Dom0Client } from './dom0-client.js';
import type { BlobStore } from './images/blob-store.js';
import { readManifest } from './images/catalog.js';
import { bundleParts } from './images/bundle.js';
import { abortable, SingleFlight } from './mutex.js';
import { recordDelivery, wasDelivered } from './nodes.js';

export class ImageDelivery {
  readonly #uploads = new SingleFlight<void>();

  constructor(
    private readonly db: Kysely<ManagerSchema>,
    private readonly blobs: BlobStore,
  ) {}

  /** The blobs that make up an image: itself (raw), or manifest, kernel, initrd, cmdline (bundle). */
  async blobsOf(digest: Digest, kind: 'raw' | 'bundle'): Promise<Digest[]> {
    if (kind === 'raw') return [digest];
    const manifest = await readManifest(this.blobs, digest);
    // Parts first, manifest last: a node that has the manifest has everything it names.
    return bundleParts(manifest, digest)
      .map((p) => p.digest)
      .reverse();
  }

  /** Makes sure the node holds every blob of the image. */
  async deliver(client: Dom0Client, digest: Digest, kind: 'raw' | 'bundle', signal?: AbortSignal): Promise<void> {
    for (const blob of await this.blobsOf(digest, kind)) {
      if (await wasDelivered(this.db, client.nodeId, blob)) continue;
      // The upload is shared, so one launch giving up does not cut it short for the others.
      const upload = this.#uploads.run(`${client.nodeId} ${blob}`, async () => {
        const { stream, size } = await this.blobs.read(blob);
        try {
          await client.putImage(blob, stream, size);
        } finally {
          stream.destroy();
        }
        await recordDelivery(this.db, client.nodeId, blob);
      });
      await abortable(upload, signal);
    }
  }

  /** Forgets what a node was sent (it answered that it lacks an image it was sent). */
  async forget(nodeId: string): Promise<void> {
    await this.db.deleteFrom('mgr_node_blobs').where('node_id', '=', nodeId).execute();
  }
}
