// Host physical memory as 4 KiB frames, each owned by exactly one domain (or by the
// hypervisor), and each domain's view of its own frames (guest frame number → host
// frame number, the p2m). Frames are handed out in extents — the contiguous run of host
// frames one allocation returns — and materialised on first write, so a large, mostly
// empty domain costs little. Freed frames are scrubbed: nothing of a destroyed domain
// can be read by the next owner. Frame numbers are never reused.
//
// An image handed to a new domain is loaded in one step (`DomainMemory.load`): copied
// once into a fresh backing buffer, or — when the caller hands over a whole ArrayBuffer —
// transferred (the caller's buffer is detached, as a page transfer takes the pages out of
// dom0's p2m). The backing becomes the extent's first pages; nothing else holds it. Scans
// and views of a backed range are single subarrays, which is what lets the launch gate
// hash the copy at the speed of plain hashing.
import { TrustlaunchError } from '../../protocol/errors.js';
import type { DomainId } from './domain-id.js';
import { PAGE_SIZE } from './vtd/structures.js';

/** Largest single read or write through a memory view (bounds allocations from callers). */
export const MAX_ACCESS_BYTES = 256 * 1024 * 1024;
const ZERO_PAGE = new Uint8Array(PAGE_SIZE);

/** One allocation: host frames [first, first + count), one owner. */
interface Extent {
  readonly first: number;
  readonly count: number;
  readonly owner: DomainId;
  /** Pages [0, backing.length / PAGE_SIZE) are views of this buffer. */
  backing: Uint8Array | undefined;
  /** Other pages, materialised on first write. */
  readonly pages: Map<number, Uint8Array>;
  /** Pages freed one by one (the rest of the extent still lives). */
  readonly freed: Set<number>;
}

export class PhysicalMemory {
  /** Sorted by `first` (allocation order: frame numbers only grow). */
  readonly #extents: Extent[] = [];
  readonly #maxFrames: number;
  #live = 0;
  #nextHfn: number;

  constructor(options: { maxFrames: number; firstHfn?: number }) {
    if (!Number.isSafeInteger(options.maxFrames) || options.maxFrames < 1) throw new RangeError('maxFrames must be a positive integer');
    this.#maxFrames = options.maxFrames;
    // Frame numbers are never reused, so a stale host address can never name a new owner's frame.
    this.#nextHfn = options.firstHfn ?? 0x100;
  }

  /** `count` contiguous new frames for `owner`. */
  allocate(owner: DomainId, count: number): number[] {
    if (!Number.isSafeInteger(count) || count < 0) throw new RangeError(`bad frame count ${count}`);
    if (this.#live + count > this.#maxFrames) {
      throw new TrustlaunchError('CAPACITY_EXCEEDED', `host memory exhausted: ${count} frames asked, ${this.#maxFrames - this.#live} free`);
    }
    const first = this.#nextHfn;
    this.#nextHfn += count;
    if (count > 0) {
      this.#extents.push({ first, count, owner, backing: undefined, pages: new Map(), freed: new Set() });
      this.#live += count;
    }
    return Array.from({ length: count }, (_, i) => first + i);
  }

  owner(hfn: number): DomainId | undefined {
    return this.#locate(hfn)?.extent.owner;
  }

  /** Copies `length` bytes at `offset` of frame `hfn`. */
  readFrame(hfn: number, offset: number, length: number): Uint8Array {
    return this.frameView(hfn, offset, length).slice();
  }

  /** A view of the bytes (zeros for a frame never written) without copying; callers must not keep or change it. */
  frameView(hfn: number, offset: number, length: number): Uint8Array {
    const { extent, page } = this.#frame(hfn, offset, length);
    const data = pageData(extent, page);
    return data === undefined ? ZERO_PAGE.subarray(0, length) : data.subarray(offset, offset + length);
  }

  writeFrame(hfn: number, offset: number, bytes: Uint8Array): void {
    const { extent, page } = this.#frame(hfn, offset, bytes.length);
    let data = pageData(extent, page);
    if (data === undefined) {
      data = new Uint8Array(PAGE_SIZE);
      extent.pages.set(page, data);
    }
    data.set(bytes, offset);
  }

  /**
   * Backs the frames from `hfn` on with `bytes` (a whole number of pages of a buffer
   * nothing else holds): they must start an extent and never have been written.
   */
  adoptBacking(hfn: number, bytes: Uint8Array): void {
    const found = this.#locate(hfn);
    const pages = bytes.length / PAGE_SIZE;
    if (found === undefined || found.page !== 0 || !Number.isInteger(pages) || pages > found.extent.count) throw new RangeError(`frames from ${hfn} cannot take a backing of ${bytes.length} bytes`);
    const e = found.extent;
    if (e.backing !== undefined || e.freed.size > 0 || [...e.pages.keys()].some((p) => p < pages)) throw new RangeError(`frames from ${hfn} were already written`);
    e.backing = bytes;
  }

  /** The backing of `hfn`'s extent from that frame on, when it has one (contiguous host memory). */
  backedRun(hfn: number): Uint8Array | undefined {
    const found = this.#locate(hfn);
    const backing = found?.extent.backing;
    if (found === undefined || backing === undefined || found.page * PAGE_SIZE >= backing.length) return undefined;
    return backing.subarray(found.page * PAGE_SIZE);
  }

  /** Scrubs and releases frames; they are never handed out again. */
  free(hfns: readonly number[]): void {
    for (const hfn of hfns) {
      const found = this.#locate(hfn);
      if (found === undefined) continue;
      const { extent: e, page } = found;
      pageData(e, page)?.fill(0);
      e.pages.delete(page);
      e.freed.add(page);
      this.#live--;
      if (e.freed.size === e.count) this.#extents.splice(this.#extents.indexOf(e), 1);
    }
  }

  /** Every allocated frame with its owner (for invariant checks and snapshots). */
  *frames(): IterableIterator<[hfn: number, owner: DomainId, data: Uint8Array | undefined]> {
    for (const e of this.#extents) {
      for (let page = 0; page < e.count; page++) if (!e.freed.has(page)) yield [e.first + page, e.owner, pageData(e, page)];
    }
  }

  get allocated(): number {
    return this.#live;
  }

  #locate(hfn: number): { extent: Extent; page: number } | undefined {
    const xs = this.#extents;
    let lo = 0;
    let hi = xs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const e = xs[mid] as Extent;
      if (hfn < e.first) hi = mid - 1;
      else if (hfn >= e.first + e.count) lo = mid + 1;
      else return e.freed.has(hfn - e.first) ? undefined : { extent: e, page: hfn - e.first };
    }
    return undefined;
  }

  #frame(hfn: number, offset: number, length: number): { extent: Extent; page: number } {
    const found = this.#locate(hfn);
    if (found === undefined) throw new RangeError(`frame ${hfn} is not allocated`);
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > PAGE_SIZE) {
      throw new RangeError(`access [${offset}, +${length}) outside a ${PAGE_SIZE}-byte frame`);
    }
    return found;
  }
}

function pageData(e: Extent, page: number): Uint8Array | undefined {
  if (e.backing !== undefined && (page + 1) * PAGE_SIZE <= e.backing.length) return e.backing.subarray(page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
  return e.pages.get(page);
}

/**
 * One domain's memory: `pages` guest frames backed by host frames the domain owns.
 * Only the hypervisor holds these objects; a domain reaches its own memory through the
 * memory capability built on top, never another domain's.
 */
export class DomainMemory {
  readonly domain: DomainId;
  readonly pages: number;
  readonly #p2m: readonly number[];
  readonly #memory: PhysicalMemory;
  #released = false;

  constructor(memory: PhysicalMemory, domain: DomainId, pages: number) {
    this.#memory = memory;
    this.domain = domain;
    this.pages = pages;
    this.#p2m = Object.freeze(memory.allocate(domain, pages));
  }

  get size(): number {
    return this.pages * PAGE_SIZE;
  }

  /** Host frame of guest frame `gfn`, or undefined outside the domain. */
  hfn(gfn: number): number | undefined {
    return this.#released ? undefined : this.#p2m[gfn];
  }

  frames(): readonly number[] {
    return this.#released ? [] : this.#p2m;
  }

  read(gpa: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let at = 0;
    this.scan(gpa, length, (bytes) => {
      out.set(bytes, at);
      at += bytes.length;
    });
    return out;
  }

  /**
   * The bytes `[gpa, gpa + length)` without a copy when they lie in one backing (else a
   * copy). The view is the domain's own memory: valid while the domain lives (its frames
   * are scrubbed when it is destroyed), and writes through it are the domain's own.
   */
  view(gpa: number, length: number): Uint8Array {
    this.#check(gpa, length);
    const run = this.#backed(gpa, length);
    return run ?? this.read(gpa, length);
  }

  /**
   * Feeds `[gpa, gpa + length)` to `fn` without copying (hashing the copy in place): one
   * call for a backed range, else runs of pages whose storage is contiguous. `fn` must
   * not keep or change the views.
   */
  scan(gpa: number, length: number, fn: (bytes: Uint8Array) => void): void {
    this.#check(gpa, length);
    const backed = this.#backed(gpa, length);
    if (backed !== undefined) {
      if (length > 0) fn(backed);
      return;
    }
    let run: Uint8Array | undefined;
    this.#walk(gpa, length, (hfn, offset, n) => {
      const view = this.#memory.frameView(hfn, offset, n);
      if (run !== undefined && run.buffer === view.buffer && run.byteOffset + run.length === view.byteOffset) {
        run = new Uint8Array(run.buffer, run.byteOffset, run.length + view.length);
        return;
      }
      if (run !== undefined) fn(run);
      run = view;
    });
    if (run !== undefined) fn(run);
  }

  /**
   * Loads an image at guest address 0 of a domain that has never been written, in one
   * step: a Uint8Array is copied once into a fresh backing buffer; a whole ArrayBuffer is
   * transferred (detached from the caller: nothing the caller still holds reaches it).
   * Returns the image length. The caller's bytes are never read after this returns.
   */
  load(image: Uint8Array | ArrayBuffer): number {
    const incoming = image instanceof ArrayBuffer || image instanceof Uint8Array ? image.byteLength : -1;
    if (incoming > this.size || incoming > MAX_ACCESS_BYTES) throw new RangeError(`an image of ${incoming} bytes does not fit the ${this.size}-byte memory of domain ${this.domain}`);
    let bytes: Uint8Array;
    if (image instanceof ArrayBuffer) {
      // structuredClone with transfer moves the backing store and detaches `image`.
      bytes = new Uint8Array(structuredClone(image, { transfer: [image] }));
    } else if (image instanceof Uint8Array) {
      bytes = new Uint8Array(Math.ceil(incoming / PAGE_SIZE) * PAGE_SIZE);
      bytes.set(image.subarray(0, incoming));
    } else {
      throw new TypeError('an image is a Uint8Array (copied) or an ArrayBuffer (transferred)');
    }
    const length = image instanceof ArrayBuffer ? bytes.length : incoming;
    const full = Math.floor(bytes.length / PAGE_SIZE) * PAGE_SIZE;
    if (full > 0) this.#memory.adoptBacking(this.#p2m[0] as number, bytes.subarray(0, full));
    // A transferred buffer may end inside a page: that page gets a frame of its own.
    if (full < bytes.length) this.write(full, bytes.subarray(full));
    return length;
  }

  /**
   * Loads a multi-part image (kernel, initramfs, command line) at guest address 0 of a
   * domain that has never been written: the parts are copied once, in order, into one
   * fresh backing buffer, each starting on a page boundary (a whole ArrayBuffer is
   * detached from the caller after the copy: its pages leave the caller's hands). Returns
   * where each part lies. The caller's bytes are never read after this returns.
   */
  loadParts(parts: readonly (Uint8Array | ArrayBuffer)[]): { gpa: number; length: number }[] {
    const lengths = parts.map((p) => (p instanceof ArrayBuffer || p instanceof Uint8Array ? p.byteLength : -1));
    if (lengths.some((n) => n < 0)) throw new TypeError('an image part is a Uint8Array or an ArrayBuffer');
    const placed: { gpa: number; length: number }[] = [];
    let end = 0;
    for (const length of lengths) {
      placed.push({ gpa: end, length });
      end += Math.ceil(length / PAGE_SIZE) * PAGE_SIZE;
    }
    if (end > this.size || end > MAX_ACCESS_BYTES) throw new RangeError(`an image of ${end} bytes does not fit the ${this.size}-byte memory of domain ${this.domain}`);
    const backing = new Uint8Array(end);
    parts.forEach((part, i) => backing.set(part instanceof ArrayBuffer ? new Uint8Array(part) : part, (placed[i] as { gpa: number }).gpa));
    for (const part of new Set(parts)) if (part instanceof ArrayBuffer) structuredClone(part, { transfer: [part] });
    if (end > 0) this.#memory.adoptBacking(this.#p2m[0] as number, backing);
    return placed;
  }

  write(gpa: number, bytes: Uint8Array): void {
    this.#check(gpa, bytes.length);
    this.#walk(gpa, bytes.length, (hfn, offset, n, at) => this.#memory.writeFrame(hfn, offset, bytes.subarray(at, at + n)));
  }

  /** Scrubs and frees every frame (domain destruction). */
  release(): void {
    if (this.#released) return;
    this.#memory.free(this.#p2m);
    this.#released = true;
  }

  /** The range as one subarray of the domain's backing, when the backing covers it. */
  #backed(gpa: number, length: number): Uint8Array | undefined {
    const first = this.#p2m[0];
    if (first === undefined) return undefined;
    const run = this.#memory.backedRun(first);
    return run !== undefined && gpa + length <= run.length ? run.subarray(gpa, gpa + length) : undefined;
  }

  #check(gpa: number, length: number): void {
    if (this.#released) throw new RangeError(`memory of domain ${this.domain} was released`);
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(length) || gpa < 0 || length < 0 || length > MAX_ACCESS_BYTES || gpa + length > this.size) {
      throw new RangeError(`access [${gpa}, +${length}) outside the ${this.size}-byte memory of domain ${this.domain}`);
    }
  }

  #walk(gpa: number, length: number, step: (hfn: number, offset: number, n: number, at: number) => void): void {
    let at = 0;
    while (at < length) {
      const addr = gpa + at;
      const offset = addr % PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - offset, length - at);
      step(this.#p2m[Math.floor(addr / PAGE_SIZE)] as number, offset, n, at);
      at += n;
    }
  }
}
