// Dynamic batching: a batch of at most maxBatch images goes when it is full, or maxDelayMs after its oldest
// image arrived or a Worker became free, whichever is later. Only `concurrency` batches run at a time (the
// session's Workers), so while they are busy arrivals gather into the next batch; counting the delay from
// the moment a Worker frees up lets the clients just answered rejoin it, instead of splitting the load
// into two alternating half-size batches.
import type { DecodedImage } from '../data/index.ts';
import type { Prediction } from '../inference/index.ts';

/** Runs one batch: the top-k of each image. */
export type BatchRunner = (images: DecodedImage[], k: number) => Promise<Prediction[][]>;

/** Settings of a Batcher. */
export interface BatcherOptions {
  maxBatch: number;
  maxDelayMs: number;
  /** Images that may wait for a batch; submit() beyond it throws QueueFullError. */
  capacity: number;
  /** Batches in flight at once. */
  concurrency: number;
  /** Called with each batch's size when it starts, and its duration in ms when it ends. */
  onBatch?: (size: number) => void;
  onBatchDone?: (size: number, ms: number) => void;
}

/** The queue has no room for the images of a request. */
export class QueueFullError extends Error {}

interface Item { image: DecodedImage; k: number; since: number; resolve: (p: Prediction[]) => void; reject: (e: Error) => void }

/** Collects single-image requests into batches for a BatchRunner. */
export class Batcher {
  private readonly waiting: Item[] = [];
  private running = 0;
  private timer: NodeJS.Timeout | undefined;
  private freeSince = 0;
  private flushing = false;
  private idle: (() => void)[] = [];

  constructor(private readonly run: BatchRunner, private readonly o: BatcherOptions) {
    if (typeof run !== 'function') throw new TypeError('Batcher: run must be a function');
    if (!o || typeof o !== 'object') throw new TypeError('Batcher: options are required');
    for (const k of ['maxBatch', 'capacity', 'concurrency'] as const) {
      if (!Number.isInteger(o[k]) || o[k] < 1) throw new TypeError(`Batcher: ${k} must be a positive integer; got ${String(o[k])}`);
    }
    if (!(o.maxDelayMs >= 0 && o.maxDelayMs <= 2 ** 31 - 1)) throw new TypeError(`Batcher: maxDelayMs must be a number of ms >= 0; got ${String(o.maxDelayMs)}`);
  }

  /** Images waiting for a batch. */
  get depth(): number {
    return this.waiting.length;
  }

  /** Batches running now. */
  get inFlight(): number {
    return this.running;
  }

  /** Queues the images of one request (all or none); resolves with each image's top-k, in order. */
  submit(images: readonly DecodedImage[], k: number): Promise<Prediction[][]> {
    if (!Array.isArray(images) || images.length === 0) throw new TypeError('Batcher.submit: images must be a non-empty array');
    if (!Number.isInteger(k) || k < 1) throw new TypeError(`Batcher.submit: k must be a positive integer; got ${String(k)}`);
    if (this.waiting.length + images.length > this.o.capacity) {
      throw new QueueFullError(`the queue is full (${this.waiting.length} of ${this.o.capacity} images waiting)`);
    }
    const now = performance.now();
    const done = Promise.all(images.map((image) => new Promise<Prediction[]>((resolve, reject) => this.waiting.push({ image, k, since: now, resolve, reject }))));
    this.#pump();
    return done;
  }

  /** From now on, batches go without waiting for the delay (used when shutting down). */
  flush(): void {
    this.flushing = true;
    this.#pump();
  }

  /** Resolves once nothing waits or runs. */
  drained(): Promise<void> {
    if (!this.waiting.length && !this.running) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  #pump(): void {
    while (this.running < this.o.concurrency && this.waiting.length && this.#due()) this.#start(this.waiting.splice(0, this.o.maxBatch));
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.waiting.length && this.running < this.o.concurrency) {
      const wait = Math.max(0, this.#opened() + this.o.maxDelayMs - performance.now());
      this.timer = setTimeout(() => this.#pump(), wait);
    }
    if (!this.waiting.length && !this.running) for (const f of this.idle.splice(0)) f();
  }

  // When the next batch's window opened: its oldest image's arrival, or a Worker freeing up after it.
  #opened(): number {
    return Math.max(this.waiting[0]!.since, this.freeSince);
  }

  #due(): boolean {
    return this.flushing || this.waiting.length >= this.o.maxBatch || performance.now() - this.#opened() >= this.o.maxDelayMs;
  }

  #start(batch: Item[]): void {
    this.running++;
    this.o.onBatch?.(batch.length);
    const t0 = performance.now();
    const k = Math.max(...batch.map((b) => b.k));
    this.run(batch.map((b) => b.image), k).then(
      (tops) => batch.forEach((b, i) => b.resolve(tops[i]!.slice(0, b.k))),
      (e: Error) => batch.forEach((b) => b.reject(e)),
    ).finally(() => {
      this.running--;
      this.freeSince = performance.now();
      this.o.onBatchDone?.(batch.length, performance.now() - t0);
      this.#pump();
    });
  }
}
