// Images by name: a raw image (one blob: a process-VM guest program, a disk) or a bundle
// (kernel, initrd?, cmdline? and their manifest). Names map to digests; blobs are shared
// between images and removed when the last image using them goes.
import type { Kysely } from 'kysely';
import { Readable } from 'node:stream';
import { z } from 'zod';
import { isDigest, type Digest } from '../../protocol/digest.js';
import { TrustlaunchError } from '../../protocol/errors.js';
import { transaction } from '../../store/index.js';
import type { ManagerSchema } from '../db/schema.js';
import { Mutex } from '../mutex.js';
import type { BlobStore, StoredBlob } from './blob-store.js';
import { bundleParts, encodeManifest, manifestDigest, MAX_CMDLINE_BYTES, MAX_MANIFEST_BYTES, parseManifest, type BundleManifest } from './bundle.js';

/** Image names: no colon, so a name is never mistaken for a `sha256:` digest. */
export const ImageNameSchema = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'expected an image name: a-z, 0-9, . _ - (at most 64, starting with a letter or digit)');

export type ImageKind = 'raw' | 'bundle';
export type PartRole = 'image' | 'manifest' | 'kernel' | 'initrd' | 'cmdline';

export interface ImagePart {
  readonly role: PartRole;
  readonly digest: Digest;
  readonly size: number;
}

export interface Image {
  readonly name: string;
  readonly digest: Digest;
  readonly kind: ImageKind;
  readonly size: number;
  readonly createdAt: number;
  readonly createdBy: string;
  readonly parts: readonly ImagePart[];
}

export type ImageSpec = { readonly raw: Digest } | { readonly bundle: BundleManifest };

type Db = Kysely<ManagerSchema>;

export class ImageCatalog {
  /** Keeps a blob's file from being collected while an upload of it completes (in this process). */
  readonly #blobLock = new Mutex();

  constructor(
    private readonly db: Db,
    private readonly blobs: BlobStore,
    private readonly maxBlobBytes: number,
  ) {}

  /** Streams one blob in; its bytes must hash to `expected`. */
  async putBlob(source: Readable, expected: Digest): Promise<StoredBlob> {
    const stored = await this.blobs.write(source, { expected, maxBytes: this.maxBlobBytes });
    await this.#blobLock.run(async () => {
      // A collection may have removed the file between rename and here; writing again is cheap
      // compared with an image whose blob is missing.
      if ((await this.blobs.size(stored.digest)) === undefined) throw new TrustlaunchError('CONFLICT', 'the blob was removed while it was uploaded; push again');
      await this.db
        .insertInto('mgr_blobs')
        .values({ digest: stored.digest, size: stored.size, created_at: Date.now() })
        .onConflict((oc) => oc.column('digest').doNothing())
        .execute();
    });
    return stored;
  }

  /** The stored size of a blob, or undefined. Only blobs with their file and their row count. */
  async blobSize(digest: Digest): Promise<number | undefined> {
    const row = await this.db.selectFrom('mgr_blobs').select('size').where('digest', '=', digest).executeTakeFirst();
    if (row === undefined) return undefined;
    return (await this.blobs.size(digest)) === row.size ? row.size : undefined;
  }

  /** Names an image. CONFLICT when the name exists with other content, unless `replace`. */
  async create(name: string, spec: ImageSpec, createdBy: string, replace = false): Promise<Image> {
    const { digest, kind, parts } = await this.#partsOf(spec);
    const size = parts.reduce((n, p) => n + p.size, 0);
    await transaction(this.db, async (trx) => {
      const existing = await trx.selectFrom('mgr_images').select('digest').where('name', '=', name).executeTakeFirst();
      if (existing !== undefined) {
        if (existing.digest === digest) return;
        if (!replace) throw new TrustlaunchError('CONFLICT', `image ${name} exists with other content (${existing.digest}); replace it explicitly`);
        await trx.deleteFrom('mgr_images').where('name', '=', name).execute();
      }
      await trx.insertInto('mgr_images').values({ name, digest, kind, size, created_at: Date.now(), created_by: createdBy }).execute();
      await trx
        .insertInto('mgr_image_parts')
        .values(parts.map((p) => ({ image_name: name, role: p.role, digest: p.digest })))
        .execute();
    });
    if (replace) await this.collect();
    const image = await this.find(name);
    if (image === undefined) throw new TrustlaunchError('CONFLICT', `image ${name} was removed while it was created`);
    return image;
  }

  async list(): Promise<Image[]> {
    const rows = await this.db.selectFrom('mgr_images').selectAll().orderBy('name').execute();
    return Promise.all(rows.map((r) => this.#withParts(r)));
  }

  async find(name: string): Promise<Image | undefined> {
    const row = await this.db.selectFrom('mgr_images').selectAll().where('name', '=', name).executeTakeFirst();
    return row === undefined ? undefined : this.#withParts(row);
  }

  /** An image by name, or by digest (any name it carries). NOT_FOUND otherwise. */
  async resolve(ref: string): Promise<Image> {
    const row = isDigest(ref)
      ? await this.db.selectFrom('mgr_images').selectAll().where('digest', '=', ref).orderBy('name').limit(1).executeTakeFirst()
      : await this.db.selectFrom('mgr_images').selectAll().where('name', '=', ref).executeTakeFirst();
    if (row === undefined) throw new TrustlaunchError('NOT_FOUND', `no image ${ref}`);
    return this.#withParts(row);
  }

  /** Removes a name, then every blob no image uses any more. */
  async remove(name: string): Promise<void> {
    const result = await this.db.deleteFrom('mgr_images').where('name', '=', name).executeTakeFirst();
    if (result.numDeletedRows === 0n) throw new TrustlaunchError('NOT_FOUND', `no image ${name}`);
    await this.collect();
  }

  /** Deletes blobs (rows, then files) that no image refers to. Returns their digests. */
  async collect(): Promise<Digest[]> {
    return this.#blobLock.run(async () => {
      const unused = await this.db
        .selectFrom('mgr_blobs')
        .select('digest')
        .where((eb) =>
          eb.not(eb.exists(eb.selectFrom('mgr_image_parts').select('mgr_image_parts.digest').whereRef('mgr_image_parts.digest', '=', 'mgr_blobs.digest'))),
        )
        .execute();
      const removed: Digest[] = [];
      for (const { digest } of unused) {
        if (!isDigest(digest)) continue;
        // Deleted only if still unused: an image created meanwhile keeps it (its part row holds a foreign key).
        const gone = await this.db
          .deleteFrom('mgr_blobs')
          .where('digest', '=', digest)
          .where((eb) => eb.not(eb.exists(eb.selectFrom('mgr_image_parts').select('digest').where('digest', '=', digest))))
          .executeTakeFirst();
        if (gone.numDeletedRows === 0n) continue;
        await this.blobs.remove(digest);
        removed.push(digest);
      }
      return removed;
    });
  }

  async #partsOf(spec: ImageSpec): Promise<{ digest: Digest; kind: ImageKind; parts: ImagePart[] }> {
    if ('raw' in spec) {
      return { digest: spec.raw, kind: 'raw', parts: [{ role: 'image', digest: spec.raw, size: await this.#requireBlob(spec.raw) }] };
    }
    const manifest = spec.bundle;
    if (manifest.cmdline !== undefined) {
      const size = await this.#requireBlob(manifest.cmdline);
      if (size > MAX_CMDLINE_BYTES) throw new TrustlaunchError('MALFORMED_REQUEST', `a kernel command line is at most ${MAX_CMDLINE_BYTES} bytes, this one ${size}`);
    }
    const digest = manifestDigest(manifest);
    await this.putBlob(Readable.from([encodeManifest(manifest)]), digest);
    const parts: ImagePart[] = [];
    for (const p of bundleParts(manifest, digest)) parts.push({ ...p, size: await this.#requireBlob(p.digest) });
    return { digest, kind: 'bundle', parts };
  }

  async #requireBlob(digest: Digest): Promise<number> {
    const size = await this.blobSize(digest);
    if (size === undefined) throw new TrustlaunchError('NOT_FOUND', `blob ${digest} has not been uploaded`, { detail: { digest } });
    return size;
  }

  async #withParts(row: ManagerSchema['mgr_images']): Promise<Image> {
    const parts = await this.db
      .selectFrom('mgr_image_parts')
      .innerJoin('mgr_blobs', 'mgr_blobs.digest', 'mgr_image_parts.digest')
      .select(['mgr_image_parts.role', 'mgr_image_parts.digest', 'mgr_blobs.size'])
      .where('mgr_image_parts.image_name', '=', row.name)
      .execute();
    const order: PartRole[] = ['image', 'manifest', 'kernel', 'initrd', 'cmdline'];
    return {
      name: row.name,
      digest: row.digest as Digest,
      kind: row.kind,
      size: row.size,
      createdAt: row.created_at,
      createdBy: row.created_by,
      parts: parts
        .map((p) => ({ role: p.role, digest: p.digest as Digest, size: p.size }))
        .sort((a, b) => order.indexOf(a.role) - order.indexOf(b.role)),
    };
  }
}

/** Reads a bundle's manifest back from its blob (checking it is canonical). */
export async function readManifest(blobs: BlobStore, digest: Digest): Promise<BundleManifest> {
  const { stream } = await blobs.read(digest);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > MAX_MANIFEST_BYTES) {
      stream.destroy();
      throw new TrustlaunchError('INTERNAL', `manifest blob ${digest} is too large`);
    }
    chunks.push(chunk as Buffer);
  }
  return parseManifest(Buffer.concat(chunks));
}
