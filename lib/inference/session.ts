// Inference off the main thread. Design: a pool of Workers, each running the model's own forward (any
// Module tree built from registered classes) on the very same parameter and buffer storages as the main
// thread — they are handed over through native.shareTensors/adoptTensors, never copied. Chosen over
// replaying a recorded op graph on libuv's pool because it runs the real JS forward (control flow,
// replaced heads, fused modules, user layers) with nothing to re-trace, and a forward blocks only its
// Worker. Inputs and outputs cross the same way (zero-copy); the main thread only posts small messages.
import { Worker } from 'node:worker_threads';
import { imagenet, type DecodedImage } from '../data/index.ts';
import { getNumThreads } from '../device.ts';
import { native } from '../native.ts';
import { Module } from '../nn/module.ts';
import { deviceOf, Tensor, type Device } from '../tensor.ts';
import type { Job, LoadMessage, Reply, WireImage } from './session-protocol.ts';
import { optimize, UnsupportedModelError } from './optimize.ts';
import { describe } from './session-transfer.ts';

/** Options of inference.session(). */
export interface SessionOptions {
  /** Where the forward runs (default: where the model's parameters are). Other devices get one copy of the weights, shared by all Workers. */
  device?: Device;
  /** libtorch intra-op threads of each Worker (default: getNumThreads() of the caller). */
  threads?: number;
  /** The largest batch one forward sees; bigger inputs run in chunks (default 32). */
  maxBatch?: number;
  /** Mixed precision in the Worker: autocast to bfloat16 or float16. */
  amp?: 'bf16' | 'fp16' | 'bfloat16' | 'float16';
  /** How many Workers run jobs concurrently (default 1). */
  workers?: number;
  /** classify()'s eval preprocessing: shorter side resized to `resize`, then a `crop` square (default 256, 224). */
  resize?: number;
  crop?: number;
  /** Class names for classify() when the model does not have ImageNet's 1000 classes. */
  categories?: readonly string[];
  /**
   * Run the fused inference copy of the model instead (inference.optimize: BatchNorm folded, oneDNN kernels with
   * weights packed once, bf16 when amp is 'bf16'; outputs equal to ~1e-5, not bit for bit) on CPU when optimize()
   * supports the model; `session.optimized` tells whether it does. Default false: the model's own forward.
   */
  optimize?: boolean;
  /**
   * Batch sizes (1 to maxBatch) each Worker runs once, on zero images of classify()'s shape [N, 3, crop, crop], before
   * the session is ready, so that the first real batches of those sizes do not pay for what a forward prepares on
   * first meeting a shape: oneDNN's kernels and reordered weights in the fused copy (60-330 ms a new batch size for
   * resnet50 at 224x224, 2 threads), libtorch's primitive caches, cuDNN's choices. Default none.
   */
  warmup?: readonly number[];
}

/** One class of a classify() result, best first. */
export interface Prediction {
  index: number;
  /** The WordNet id for ImageNet-1k models, else null. */
  wnid: string | null;
  label: string;
  probability: number;
}

/** A Grad-CAM from explain(): the class explained, its map over the crop the model saw, and that overlay as PNG. */
export interface Explanation {
  index: number;
  label: string;
  /** Side of the square crop (the session's crop). */
  size: number;
  /** [size × size] row-major, 0..1. */
  cam: Float32Array;
  /** The crop with the jet-coloured map blended over it, PNG-encoded. */
  png: Uint8Array;
}

/** An image for classify(): decoded RGB (HWC bytes) or an encoded JPEG/PNG/WebP file's bytes. */
export type ImageInput = DecodedImage | Uint8Array | ArrayBuffer;

interface Pending { job: Job; resolve: (r: Reply) => void; reject: (e: Error) => void; token?: number }
interface Slot { worker: Worker; busy: Pending | null; exited: Promise<void> }

const ERRORS: Record<string, ErrorConstructor> = { TypeError, RangeError, SyntaxError, ReferenceError };
const asError = (r: { name: string; message: string }): Error => {
  const e = new (ERRORS[r.name] ?? Error)(r.message);
  if (!ERRORS[r.name] && r.name !== 'Error') e.name = r.name;
  return e;
};

// Workers do not inherit tsx's loader on Node 20, so a TypeScript entry registers it first; compiled JS needs none.
function startWorker(): Worker {
  const self = import.meta.url;
  const entry = new URL(`./session-worker${self.slice(self.lastIndexOf('.'))}`, self).href;
  if (!entry.endsWith('.ts')) return new Worker(new URL(entry));
  const boot = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); })`;
  return new Worker(boot, { eval: true });
}

function positive(v: number | undefined, dflt: number, what: string): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1) throw new TypeError(`inference.session: ${what} must be a positive integer; got ${String(v)}`);
  return v;
}

// Only session() makes sessions: one without started Workers would queue jobs forever.
const INTERNAL = Symbol('InferenceSession');

const AMP = { bf16: 'bfloat16', bfloat16: 'bfloat16', fp16: 'float16', float16: 'float16' } as const;

/** A loaded model whose forward runs on Worker threads; made by inference.session(). */
export class InferenceSession {
  readonly device: Device;
  readonly threads: number;
  readonly maxBatch: number;
  readonly workers: number;
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private readonly categories: readonly string[] | undefined;
  private closing: Promise<void> | undefined;
  private failure: Error | undefined;
  private drained: (() => void) | undefined;

  /** @internal use inference.session() */
  constructor(
    token: symbol, device: Device, threads: number, maxBatch: number, workers: number, categories: readonly string[] | undefined,
    /** Whether the Workers run the fused inference copy of the model (SessionOptions.optimize). */
    readonly optimized = false,
  ) {
    if (token !== INTERNAL) throw new TypeError('InferenceSession: use inference.session(model, options) to start one');
    [this.device, this.threads, this.maxBatch, this.workers, this.categories] = [device, threads, maxBatch, workers, categories];
  }

  /** Why the session became unusable (a Worker died), or undefined while it works. */
  get error(): Error | undefined {
    return this.failure;
  }

  /** Jobs queued or running. */
  get pending(): number {
    return this.queue.length + this.slots.filter((s) => s.busy).length;
  }

  /** The model's forward (eval mode, no grad) on x [N, ...]; the event loop stays free. Do not modify x until it settles. */
  run(x: Tensor): Promise<Tensor> {
    if (!(x instanceof Tensor)) return Promise.reject(new TypeError('InferenceSession.run: x must be a Tensor'));
    const refused = this.refusal('run');
    if (refused) return Promise.reject(refused);
    let token: number;
    try {
      token = native.shareTensors([x.h]);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return this.submit({ type: 'run', token }, token).then((r) => {
      if (r.type !== 'tensor') throw new Error(`InferenceSession.run: unexpected reply ${r.type}`);
      return new Tensor(native.adoptTensors(r.token)[0]!);
    });
  }

  /** Top-k classes of each image with the eval preprocessing (resize, center crop, ImageNet normalization). */
  async classify(images: ImageInput | readonly ImageInput[], { k = 5 }: { k?: number } = {}): Promise<Prediction[][]> {
    const list = Array.isArray(images) ? (images as readonly ImageInput[]) : [images as ImageInput];
    if (list.length === 0) throw new TypeError('InferenceSession.classify: no images');
    if (!Number.isInteger(k) || k < 1) throw new TypeError(`InferenceSession.classify: k must be a positive integer; got ${String(k)}`);
    list.forEach((im, i) => {
      const bytes = ArrayBuffer.isView(im) || im instanceof ArrayBuffer;
      const decoded = !bytes && im && typeof im === 'object' && ArrayBuffer.isView((im as DecodedImage).data);
      if (!bytes && !decoded) throw new TypeError(`InferenceSession.classify: image ${i} must be encoded bytes or { data, width, height }`);
    });
    const refused = this.refusal('classify');
    if (refused) throw refused;
    const r = await this.submit({ type: 'classify', images: list as WireImage[], k });
    if (r.type !== 'top') throw new Error(`InferenceSession.classify: unexpected reply ${r.type}`);
    const names = this.labels(r.classes);
    return list.map((_, i) => Array.from({ length: r.k }, (_, j) => {
      const index = r.indices[i * r.k + j]!;
      return { index, wnid: r.classes === 1000 && names === imagenet.IMAGENET_CATEGORIES ? imagenet.IMAGENET_WNIDS[index]! : null, label: names[index] ?? `class ${index}`, probability: r.probabilities[i * r.k + j]! };
    }));
  }

  /**
   * Grad-CAM of one image (explain.gradCam on the Worker, the same eval preprocessing as classify): the class
   * `classIndex` (default the top one) at `layer` (default the last stage). A class out of range is a RangeError.
   */
  async explain(image: ImageInput, { classIndex, layer }: { classIndex?: number; layer?: string } = {}): Promise<Explanation> {
    const bytes = ArrayBuffer.isView(image) || image instanceof ArrayBuffer;
    if (!bytes && !(image && typeof image === 'object' && ArrayBuffer.isView((image as DecodedImage).data))) {
      throw new TypeError('InferenceSession.explain: the image must be encoded bytes or { data, width, height }');
    }
    if (classIndex !== undefined && (!Number.isInteger(classIndex) || classIndex < 0)) throw new TypeError(`InferenceSession.explain: classIndex must be a non-negative integer; got ${String(classIndex)}`);
    if (layer !== undefined && typeof layer !== 'string') throw new TypeError('InferenceSession.explain: layer must be a dotted module path');
    const refused = this.refusal('explain');
    if (refused) throw refused;
    const r = await this.submit({ type: 'explain', image: image as WireImage, classIndex, layer });
    if (r.type !== 'cam') throw new Error(`InferenceSession.explain: unexpected reply ${r.type}`);
    return { index: r.index, label: this.labels(r.classes)[r.index] ?? `class ${r.index}`, size: r.size, cam: r.cam, png: r.png };
  }

  /** Waits for queued and running work, then ends the Workers; later calls reject. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.pending) await new Promise<void>((resolve) => (this.drained = resolve));
      for (const s of this.slots) {
        s.worker.ref(); // so that code after `await close()` runs before the process may exit
        s.worker.postMessage({ type: 'close' });
      }
      await Promise.all(this.slots.map((s) => s.exited));
    })();
    return this.closing;
  }

  /** @internal starts the Workers and loads the model into each. */
  async start(model: Module, load: Omit<LoadMessage, 'type' | 'root' | 'urls' | 'token'>): Promise<void> {
    const { root, tensors, urls } = describe(model);
    // On another device the weights are moved once here and the Workers share that one copy.
    const moved = tensors.map((t) => t.to(this.device));
    try {
      for (let i = 0; i < this.workers; i++) {
        const token = native.shareTensors(moved.map((t) => t.h));
        const worker = startWorker();
        const slot: Slot = { worker, busy: null, exited: new Promise((resolve) => worker.once('exit', () => resolve())) };
        this.slots.push(slot);
        let loading = true;
        const ready = new Promise<void>((resolve, reject) => {
          const fail = (e: Error): void => {
            if (!loading) return;
            loading = false;
            native.dropShared(token);
            reject(e);
          };
          worker.once('message', (r: Reply) => (r.type === 'ready' ? resolve() : fail(r.type === 'error' ? asError(r) : new Error(`unexpected ${r.type}`))));
          worker.once('error', fail);
          worker.once('exit', (code) => fail(new Error(`inference worker exited with code ${code} while loading the model`)));
        });
        worker.postMessage({ type: 'load', root, urls, token, ...load } satisfies LoadMessage);
        await ready;
        loading = false;
        this.watch(slot);
      }
    } catch (e) {
      await Promise.all(this.slots.map((s) => s.worker.terminate()));
      throw e;
    } finally {
      moved.forEach((t, i) => t !== tensors[i] && t.dispose());
    }
  }

  private watch(slot: Slot): void {
    const { worker } = slot;
    worker.unref();
    worker.on('message', (r: Reply) => {
      const p = slot.busy;
      if (!p) return;
      slot.busy = null;
      if (r.type === 'error') p.reject(asError(r));
      else p.resolve(r);
      this.pump();
    });
    const die = (why: string): void => {
      if (this.closing && !slot.busy && !this.queue.length) return; // the ordinary end after close()
      this.failure ??= new Error(`InferenceSession: a worker ${why}; the session is unusable`);
      const lost = [...(slot.busy ? [slot.busy] : []), ...this.queue.splice(0)];
      slot.busy = null;
      for (const p of lost) this.settle(p, this.failure);
      this.pump();
    };
    worker.on('error', (e) => die(`failed: ${e.message}`));
    worker.on('exit', (code) => die(`exited with code ${code}`));
  }

  private refusal(what: string): Error | undefined {
    if (this.failure) return this.failure;
    if (this.closing) return new Error(`InferenceSession.${what}: the session is closed`);
    return undefined;
  }

  private settle(p: Pending, e: Error): void {
    if (p.token !== undefined) native.dropShared(p.token);
    p.reject(e);
  }

  private submit(job: Job, token?: number): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      this.queue.push({ job, resolve, reject, token });
      this.pump();
    });
  }

  // Hands queued jobs to idle Workers; a Worker keeps the process alive only while it has work.
  // Before a job goes, this thread's idle OpenMP workers (left by its own tensor ops) are ended: while
  // libgomp's pools hold more threads than there are CPUs it stops spin-waiting in every team, which cost a
  // Worker's 2-thread resnet50 forward 14 -> 20 ms on 2 cores. This thread's next parallel op starts them again.
  private pump(): void {
    let released = false;
    for (const slot of this.slots) {
      if (slot.busy || !this.queue.length || this.failure) continue;
      if (!released) {
        native.releaseThreadPool();
        released = true;
      }
      slot.busy = this.queue.shift()!;
      slot.worker.ref();
      slot.worker.postMessage(slot.busy.job);
    }
    for (const slot of this.slots) if (!slot.busy) slot.worker.unref();
    if (!this.pending && this.drained) {
      this.drained();
      this.drained = undefined;
    }
  }

  private labels(classes: number): readonly string[] {
    if (this.categories) {
      if (this.categories.length !== classes) throw new Error(`InferenceSession.classify: ${this.categories.length} categories given for a model with ${classes} classes`);
      return this.categories;
    }
    return classes === 1000 ? imagenet.IMAGENET_CATEGORIES : [];
  }
}

/** Starts an inference session on model (which stays usable, and in its own train/eval mode, on this thread). */
export async function session(model: Module, options: SessionOptions = {}): Promise<InferenceSession> {
  if (!(model instanceof Module)) throw new TypeError('inference.session: model must be a Module');
  const firstParam = model.parameters()[0] ?? model.buffers()[0];
  const device = deviceOf(options.device) ?? firstParam?.device ?? 'cpu';
  const threads = positive(options.threads, getNumThreads(), 'threads');
  const maxBatch = positive(options.maxBatch, 32, 'maxBatch');
  const workers = positive(options.workers, 1, 'workers');
  const resize = positive(options.resize, 256, 'resize');
  const crop = positive(options.crop, 224, 'crop');
  if (options.amp !== undefined && !(options.amp in AMP)) throw new TypeError(`inference.session: amp must be 'bf16' or 'fp16'; got ${String(options.amp)}`);
  const warmup = warmupSizes(options.warmup, maxBatch);
  const amp = options.amp === undefined ? null : AMP[options.amp];
  const fused = device === 'cpu' && options.optimize === true ? fusedCopy(model, amp) : null;
  const s = new InferenceSession(INTERNAL, device, threads, maxBatch, workers, options.categories, fused !== null);
  try {
    // A fused net computes in its own dtype, so its Workers run without autocast.
    await s.start(fused ?? model, { device, threads, maxBatch, amp: fused ? null : amp, resize, crop, warmup });
  } finally {
    fused?.dispose(); // the Workers hold their own references to its tensors
  }
  return s;
}

function warmupSizes(sizes: readonly number[] | undefined, maxBatch: number): number[] {
  if (sizes === undefined) return [];
  if (!Array.isArray(sizes)) throw new TypeError('inference.session: warmup must be an array of batch sizes');
  for (const n of sizes) {
    if (!Number.isInteger(n) || n < 1 || n > maxBatch) throw new RangeError(`inference.session: warmup batch sizes must be integers from 1 to maxBatch (${maxBatch}); got ${String(n)}`);
  }
  return [...new Set(sizes)];
}

// The fused inference copy of model (made from its eval-mode statistics whatever its mode), or null when
// optimize() does not support the model (or fp16, which it has on CUDA only).
function fusedCopy(model: Module, amp: string | null): Module | null {
  if (amp === 'float16') return null;
  const training = model.training;
  model.eval();
  try {
    return optimize(model, { amp: amp === 'bfloat16' ? 'bf16' : undefined });
  } catch (e) {
    if (!(e instanceof UnsupportedModelError)) throw e;
    return null;
  } finally {
    if (training) model.train();
  }
}
