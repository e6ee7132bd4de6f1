// Decoding ahead of use on a worker thread, so decodes overlap a model that holds the main thread.
import { Worker } from 'node:worker_threads';
import type { DecodedImage } from './image-folder.ts';

/** One decode of a DecodeQueue: the image, or why it failed. */
export interface DecodeResult {
  index: number;
  path: string;
  image?: DecodedImage;
  error?: Error;
}

interface Message { index: number; ms: number; image?: DecodedImage; error?: string }

/**
 * Decodes files ahead of their use, `concurrency` at a time on libuv's thread pool (size it with
 * UV_THREADPOOL_SIZE), at most `ahead` past the last one taken; next() hands them out in order.
 */
export class DecodeQueue {
  private readonly worker: Worker;
  private readonly ready = new Map<number, Message>();
  private waiting: { index: number; resolve: (m: Message) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;
  private consumed = 0;
  /** Summed time of the finished decodes, in ms; divided by concurrency it is the decoders' busy time. */
  busyMs = 0;

  constructor(private readonly paths: readonly string[], private readonly concurrency = 4, private readonly ahead = 64) {
    if (!(concurrency >= 1 && ahead >= concurrency)) throw new Error(`DecodeQueue: need 1 <= concurrency <= ahead; got ${concurrency}, ${ahead}`);
    const workerData = { paths, concurrency, ahead };
    if (import.meta.url.endsWith('.js')) {
      // The compiled package (dist/): the worker is plain JavaScript beside this file.
      this.worker = new Worker(new URL('./decode-worker.js', import.meta.url), { workerData });
    } else {
      // Workers do not inherit tsx's loader from --import on Node 20, so the worker registers it first.
      const entry = JSON.stringify(new URL('./decode-worker.ts', import.meta.url).href);
      const boot = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return import(${entry}); })`;
      this.worker = new Worker(boot, { eval: true, workerData });
    }
    this.worker.on('message', (m: Message) => {
      this.busyMs += m.ms;
      if (this.waiting?.index === m.index) {
        const w = this.waiting;
        this.waiting = undefined;
        w.resolve(m);
      } else this.ready.set(m.index, m);
    });
    this.worker.on('error', (e) => {
      this.failure = new Error(`decode worker failed: ${e.message}`);
      this.waiting?.reject(this.failure);
    });
  }

  /** The next decode in path order, or null after the last (which also ends the worker). */
  async next(): Promise<DecodeResult | null> {
    const index = this.consumed;
    if (index >= this.paths.length) {
      await this.close();
      return null;
    }
    if (this.failure) throw this.failure;
    const m = this.ready.get(index) ?? (await new Promise<Message>((resolve, reject) => (this.waiting = { index, resolve, reject })));
    this.ready.delete(index);
    this.consumed++;
    this.worker.postMessage({ allowed: this.consumed + this.ahead });
    const path = this.paths[index]!;
    return m.error !== undefined ? { index, path, error: new Error(m.error) } : { index, path, image: m.image! };
  }

  /** Stops the worker (pending decodes are dropped). */
  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
