// Host physical memory as 4 KiB frames, each owned by exactly one domain (or by the
// hypervisor), and each domain's view of its own frames (guest frame number → host
// frame number, the p2m). Frames are materialised on first write, so a large, mostly
// empty domain costs little. Freed frames are scrubbed: nothing of a destroyed domain
// can be read by the next owner.
// An image handed to a new domain is loaded in one step (`DomainMemory.load`): copied
// into one fresh backing buffer, or — when the caller hands over a whole ArrayBuffer —
// transferred (the caller's buffer is detached, as a page transfer takes the pages out
// of dom0's p2m). Either way the frames are page-sized views of a backing only the
// domain's frames reach, and scans feed contiguous runs of them at once.
import { TrustlaunchError } from '../../protocol/errors.js';
import type { DomainId } from './domain-id.js';
import { PAGE_SIZE } from './vtd/structures.js';

interface Frame {
  readonly owner: DomainId;
  data: Uint8Array | undefined;
}

/** Largest single read or write through a memory view (bounds allocations from callers). */
export const MAX_ACCESS_BYTES = 256 * 1024 * 1024;
const ZERO_PAGE = new Uint8Array(PAGE_SIZE);

export class PhysicalMemory {
  readonly #frames = new Map<number, Frame>();
  readonly #maxFrames: number;
  #nextHfn: number;

  constructor(options: { maxFrames: number; firstHfn?: number }) {
    if (!Number.isSafeInteger(options.maxFrames) || options.maxFrames < 1) throw new RangeError('maxFrames must be a positive integer');
    this.#maxFrames = options.maxFrames;
    // Frame numbers are never reused, so a stale host address can never name a new owner's frame.
    this.#nextHfn = options.firstHfn ?? 0x100;
  }

  allocate(owner: DomainId, count: number): number[] {
    if (!Number.isSafeInteger(count) || count < 0) throw new RangeError(`bad frame count ${count}`);
    if (this.#frames.size + count > this.#maxFrames) {
      throw new TrustlaunchError('CAPACITY_EXCEEDED', `host memory exhausted: ${count} frames asked, ${this.#maxFrames - this.#frames.size} free`);
    }
    const hfns: number[] = [];
    for (let i = 0; i < count; i++) {
      const hfn = this.#nextHfn++;
      this.#frames.set(hfn, { owner, data: undefined });
      hfns.push(hfn);
    }
    return hfns;
  }

  owner(hfn: number): DomainId | undefined {
    return this.#frames.get(hfn)?.owner;
  }

  /** Copies `length` bytes at `offset` of frame `hfn`. */
  readFrame(hfn: number, offset: number, length: number): Uint8Array {
    const frame = this.#frame(hfn, offset, length);
    return frame.data === undefined ? new Uint8Array(length) : frame.data.slice(offset, offset + length);
  }

  /** A view of the bytes (zeros for a frame never written) without copying; callers must not keep or change it. */
  frameView(hfn: number, offset: number, length: number): Uint8Array {
    const frame = this.#frame(hfn, offset, length);
    return frame.data === undefined ? ZERO_PAGE.subarray(0, length) : frame.data.subarray(offset, offset + length);
  }

  /** Backs a never-written frame with `page` (exactly one page of a buffer nothing else holds). */
  attachFrame(hfn: number, page: Uint8Array): void {
    const frame = this.#frame(hfn, 0, PAGE_SIZE);
    if (frame.data !== undefined || page.length !== PAGE_SIZE) throw new RangeError(`frame ${hfn} cannot take a backing page`);
    frame.data = page;
  }

  writeFrame(hfn: number, offset: number, bytes: Uint8Array): void {
    const frame = this.#frame(hfn, offset, bytes.length);
    frame.data ??= new Uint8Array(PAGE_SIZE);
    frame.data.set(bytes, offset);
  }

  /** Scrubs and releases frames; they are never handed out again. */
  free(hfns: readonly number[]): void {
    for (const hfn of hfns) {
      const frame = this.#frames.get(hfn);
      if (frame?.data !== undefined) frame.data.fill(0);
      this.#frames.delete(hfn);
    }
  }

  /** Every allocated frame with its owner (for invariant checks and snapshots). */
  *frames(): IterableIterator<[hfn: number, owner: DomainId, data: Uint8Array | undefined]> {
    for (const [hfn, f] of this.#frames) yield [hfn, f.owner, f.data];
  }

  get allocated(): number {
    return this.#frames.size;
  }

  #frame(hfn: number, offset: number, length: number): Frame {
    const frame = this.#frames.get(hfn);
    if (frame === undefined) throw new RangeError(`frame ${hfn} is not allocated`);
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > PAGE_SIZE) {
      throw new RangeError(`access [${offset}, +${length}) outside a ${PAGE_SIZE}-byte frame`);
    }
    return frame;
  }
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
   * Feeds `[gpa, gpa + length)` to `fn` without copying (hashing the copy in place), in
   * runs of pages whose backing is contiguous. `fn` must not keep or change the views.
   */
  scan(gpa: number, length: number, fn: (bytes: Uint8Array) => void): void {
    this.#check(gpa, length);
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
    const full = Math.floor(bytes.length / PAGE_SIZE);
    for (let gfn = 0; gfn < full; gfn++) this.#memory.attachFrame(this.#p2m[gfn] as number, bytes.subarray(gfn * PAGE_SIZE, (gfn + 1) * PAGE_SIZE));
    // A transferred buffer may end inside a page: that page gets a frame of its own.
    if (full * PAGE_SIZE < bytes.length) this.write(full * PAGE_SIZE, bytes.subarray(full * PAGE_SIZE));
    return length;
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
