// Batches from a dataset: seeded shuffling, drop-last, augmentation, and a queue of the next
// batches being prepared while the current one trains (asynchronous sources such as decoded image
// folders load concurrently; CUDA batches travel from pinned memory with non-blocking copies).
import { Tensor, dispose, tidy, type Device } from '../tensor.ts';
import { tensor } from '../creation.ts';
import { Rng, permutation } from './rng.ts';
import { sizeOf, type ArrayDataset } from './dataset.ts';
import type { Transform } from './transforms.ts';

/** Images as float NCHW in [0, 1] and int64 labels. */
export interface Batch {
  x: Tensor;
  y: Tensor;
}

/** Anything that can load samples by index. */
export interface BatchSource {
  readonly length: number;
  load(indices: Int32Array): Batch | Promise<Batch>;
}

/** A batch source over an in-memory dataset. */
export function arraySource(d: ArrayDataset): BatchSource {
  const [c, h, w] = d.shape;
  const per = c * h * w;
  return {
    length: sizeOf(d),
    load(indices) {
      const px = new Uint8Array(indices.length * per);
      const labels = new BigInt64Array(indices.length);
      indices.forEach((k, i) => {
        px.set(d.images.subarray(k * per, (k + 1) * per), i * per);
        labels[i] = BigInt(d.labels[k]!);
      });
      return tidy(() => ({ x: tensor(px, { shape: [indices.length, c, h, w] }).to('float32').div(255), y: tensor(labels) }));
    },
  };
}

export interface LoaderOptions {
  batchSize: number;
  shuffle?: boolean;
  dropLast?: boolean;
  /** Keys the shuffling and augmentation streams. */
  seed?: number;
  transform?: Transform;
  device?: Device;
  channelsLast?: boolean;
  /** Batches prepared ahead of the one being consumed. */
  prefetch?: number;
  /**
   * Data-parallel sharding: rank r of worldSize takes every worldSize-th sample of the epoch's
   * order, as torch's DistributedSampler. With pad (for training) the order is first padded by
   * wrapping around so every rank has the same number of samples; without it (for evaluation)
   * every sample is seen exactly once over all ranks.
   */
  shard?: { rank: number; worldSize: number; pad: boolean };
}

/** One labelled batch and its position in the epoch. */
export interface LoadedBatch extends Batch {
  index: number;
}

/** Iterates a source in batches, epoch by epoch. */
export class DataLoader {
  readonly source: BatchSource;
  readonly options: Required<Omit<LoaderOptions, 'transform' | 'shard'>> & Pick<LoaderOptions, 'transform' | 'shard'>;

  constructor(source: BatchSource, o: LoaderOptions) {
    if (!Number.isInteger(o.batchSize) || o.batchSize < 1) throw new Error(`DataLoader: batchSize must be a positive integer; got ${o.batchSize}`);
    if (source.length < 1) throw new Error('DataLoader: the dataset is empty');
    if (o.shard) {
      const { rank, worldSize } = o.shard;
      if (!Number.isInteger(worldSize) || worldSize < 1 || !Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
        throw new Error(`DataLoader: shard rank ${rank} of worldSize ${worldSize} is invalid`);
      }
      if (source.length < worldSize) throw new Error(`DataLoader: ${source.length} samples cannot be shared by ${worldSize} ranks`);
    }
    this.source = source;
    this.options = { shuffle: false, dropLast: false, seed: 0, device: 'cpu', channelsLast: false, prefetch: 2, ...o };
  }

  /** Batches per epoch. */
  get numBatches(): number {
    const { batchSize, dropLast } = this.options;
    const n = this.length;
    return Math.max(1, dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize));
  }

  /** Samples per epoch seen by this loader (this rank's share when sharded). */
  get length(): number {
    const n = this.source.length;
    const s = this.options.shard;
    if (!s) return n;
    return s.pad ? Math.ceil(n / s.worldSize) : Math.floor(n / s.worldSize) + (s.rank < n % s.worldSize ? 1 : 0);
  }

  /** The sample order of an epoch (a pure function of seed, epoch and shard). */
  order(epoch: number): Int32Array {
    const n = this.source.length;
    const all = this.options.shuffle ? permutation(n, new Rng(this.options.seed, epoch)) : Int32Array.from({ length: n }, (_, i) => i);
    const s = this.options.shard;
    if (!s) return all;
    const out = new Int32Array(this.length);
    for (let i = 0; i < out.length; i++) out[i] = all[(s.rank + i * s.worldSize) % n]!;
    return out;
  }

  /** The batches of an epoch from batch `start` on; the caller disposes each batch's x and y. */
  async *epoch(epoch: number, start = 0): AsyncGenerator<LoadedBatch> {
    const order = this.order(epoch);
    const { batchSize, prefetch } = this.options;
    const total = this.numBatches;
    const queue: Promise<LoadedBatch>[] = [];
    let next = start;
    const enqueue = (): void => {
      while (queue.length <= prefetch && next < total) {
        const b = next++;
        const p = this.prepare(order.subarray(b * batchSize, Math.min((b + 1) * batchSize, order.length)), epoch, b);
        p.catch(() => undefined); // a failure surfaces when this batch is awaited
        queue.push(p);
      }
    };
    try {
      enqueue();
      while (queue.length) {
        const batch = await queue.shift()!;
        enqueue();
        yield batch;
      }
    } finally {
      for (const p of queue) p.then((b) => dispose([b.x, b.y]), () => undefined);
    }
  }

  private async prepare(indices: Int32Array, epoch: number, index: number): Promise<LoadedBatch> {
    const raw = await this.source.load(indices);
    const { transform, device, channelsLast, seed } = this.options;
    const out = tidy(() => {
      let x = transform ? transform(raw.x, new Rng(seed, epoch, index, 0x5eed + (this.options.shard?.rank ?? 0))) : raw.x.clone();
      let y = raw.y.clone();
      if (device !== 'cpu') {
        x = x.pinMemory().to(device, { nonBlocking: true });
        y = y.pinMemory().to(device, { nonBlocking: true });
      }
      if (channelsLast) x = x.contiguous('channelsLast');
      return { x, y };
    });
    dispose([raw.x, raw.y]);
    return { ...out, index };
  }
}
