// The thread behind an InferenceSession: rebuilds the model around the main thread's own parameter and
// buffer storages (adopted from native.shareTensors, not copied), then runs one job at a time. Grad mode,
// autocast and the intra-op thread count are per-thread in libtorch, so they are set here, where ops run.
import { parentPort } from 'node:worker_threads';
import { cat, zeros } from '../creation.ts';
import { decodeImage, imagenet, type DecodedImage } from '../data/index.ts';
import { setNumThreads } from '../device.ts';
import { native } from '../native.ts';
import { softmax } from '../nn/functional.ts';
import type { Module } from '../nn/module.ts';
import { autocast, noGrad, tidy, Tensor, type Device } from '../tensor.ts';
import type { Job, LoadMessage, Reply, WireImage } from './session-protocol.ts';
import { rebuild } from './session-transfer.ts';
import { explainImage } from '../explain/image.ts';
import { encodePng } from '../explain/overlay.ts';
import { classifier } from '../models/weights.ts';

const port = parentPort!;
let model: Module | undefined;
let config: LoadMessage;

/** The model's forward in eval mode, maxBatch images at a time, under the session's autocast. */
function forward(x: Tensor): Tensor {
  const { maxBatch, amp, device } = config;
  const once = (c: Tensor): Tensor => (amp ? autocast(() => model!.forward(c), { dtype: amp, device: device.startsWith('cuda') ? 'cuda' : 'cpu' }) : model!.forward(c));
  return noGrad(() => {
    const n = x.ndim > 0 ? x.shape[0]! : 0;
    if (n <= maxBatch) return once(x);
    const parts: Tensor[] = [];
    for (let i = 0; i < n; i += maxBatch) parts.push(once(x.narrow(0, i, Math.min(maxBatch, n - i))));
    return cat(parts, 0);
  });
}

const isDecoded = (im: WireImage): im is DecodedImage => !ArrayBuffer.isView(im) && !(im instanceof ArrayBuffer);

async function decodeAll(images: WireImage[], what: string): Promise<DecodedImage[]> {
  return Promise.all(images.map(async (im, i) => {
    if (isDecoded(im)) return im;
    try {
      return await decodeImage(ArrayBuffer.isView(im) ? Buffer.from(im.buffer, im.byteOffset, im.byteLength) : Buffer.from(im));
    } catch (e) {
      throw new Error(`${what}: image ${i} cannot be decoded: ${(e as Error).message}`);
    }
  }));
}

async function classify(images: WireImage[], k: number): Promise<Reply> {
  const decoded = await decodeAll(images, 'classify');
  return tidy(() => {
    const x = imagenet.evalBatch(decoded, { resize: config.resize, crop: config.crop, device: config.device as Device });
    const logits = forward(x);
    if (logits.ndim !== 2) throw new Error(`classify: the model gave logits of shape [${logits.shape.join(', ')}], expected [N, classes]`);
    const classes = logits.shape[1]!;
    const top = softmax(logits.float(), 1).topk(Math.min(k, classes), 1);
    return { type: 'top', classes, k: Math.min(k, classes), indices: Array.from(top.indices.toArray() as BigInt64Array, Number), probabilities: Array.from(top.values.toArray() as Float32Array) };
  });
}

function run(token: number): Reply {
  const y = tidy(() => {
    const [h] = native.adoptTensors(token);
    const x = new Tensor(h!);
    return forward(x.to(config.device as Device));
  });
  const out = native.shareTensors([y.h]);
  y.dispose();
  return { type: 'tensor', token: out };
}

// Grad-CAM runs a backward from the class score to the layer's activations, in float32; the parameters are this
// thread's own detached aliases (see load), so neither their requiresGrad nor any gradient reaches the caller's.
async function explain(job: Extract<Job, { type: 'explain' }>): Promise<Reply> {
  const [img] = await decodeAll([job.image], 'explain');
  const classes = classifier(model!)?.[1].outFeatures;
  if (job.classIndex !== undefined && classes !== undefined && job.classIndex >= classes) {
    throw new RangeError(`explain: classIndex must be an integer from 0 to ${classes - 1}; got ${job.classIndex}`);
  }
  const { classIndex, cam, overlay } = explainImage(model!, img!, { resize: config.resize, crop: config.crop, layer: job.layer, classIndex: job.classIndex, device: config.device as Device });
  const png = await encodePng(overlay);
  return { type: 'cam', classes: classes ?? 0, index: classIndex, size: config.crop, cam, png: new Uint8Array(png.buffer, png.byteOffset, png.byteLength) };
}

async function handle(job: Job): Promise<Reply> {
  if (job.type === 'run') return run(job.token);
  if (job.type === 'explain') return explain(job);
  return classify(job.images, job.k);
}

port.on('message', (m: LoadMessage | Job | { type: 'close' }) => {
  if (m.type === 'load') {
    try {
      config = m;
      native.setGradEnabled(false); // thread-local: this thread never records autograd graphs
      setNumThreads(m.threads);
      void Promise.all(m.urls.map((u) => import(u))).then(() => {
        // Detached aliases: the same storages (no copy), but requiresGrad and .grad of this thread's own.
        const tensors = native.adoptTensors(m.token).map((h) => {
          const shared = new Tensor(h);
          const alias = shared.detach();
          shared.dispose();
          return alias;
        });
        model = rebuild(m.root, tensors).eval();
        for (const n of m.warmup) {
          try {
            tidy(() => void forward(zeros([n, 3, m.crop, m.crop], { device: m.device as Device })));
          } catch (e) {
            throw new Error(`warm-up at batch ${n} (zero images of 3 x ${m.crop} x ${m.crop}): ${(e as Error).message}`);
          }
        }
        port.postMessage({ type: 'ready' } satisfies Reply);
      }).catch((e: Error) => port.postMessage({ type: 'error', name: e.name, message: e.message } satisfies Reply));
    } catch (e) {
      port.postMessage({ type: 'error', name: (e as Error).name, message: (e as Error).message } satisfies Reply);
    }
    return;
  }
  if (m.type === 'close') {
    // The session's references go now; the main thread's own handles keep the weights alive.
    model?.dispose();
    model = undefined;
    port.close();
    return;
  }
  handle(m).then(
    (r) => port.postMessage(r),
    (e: Error) => port.postMessage({ type: 'error', name: e?.name ?? 'Error', message: e?.message ?? String(e) } satisfies Reply),
  );
});
