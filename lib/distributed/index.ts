// Data-parallel training over libtorch's c10d (Gloo): process group set-up from the torchrun
// environment, collectives, DistributedDataParallel semantics and a distributed sampler.
import { native } from '../native.ts';
import { handles } from '../creation.ts';
import { BatchNorm2d } from '../nn/layers.ts';
import { Tensor, noGrad } from '../tensor.ts';

/** The torchrun variables of this process. */
export interface DistEnv {
  rank: number;
  worldSize: number;
  localRank: number;
  masterAddr: string;
  masterPort: number;
}

/** Reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; null when not launched distributed. */
export function envFromTorchrun(env: Record<string, string | undefined> = process.env): DistEnv | null {
  if (env.WORLD_SIZE === undefined || env.RANK === undefined) return null;
  const num = (k: string, dflt?: number): number => {
    const v = env[k] ?? (dflt === undefined ? undefined : String(dflt));
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n < 0) throw new Error(`distributed: environment variable ${k}=${v} is not a non-negative integer`);
    return n;
  };
  return {
    rank: num('RANK'),
    worldSize: num('WORLD_SIZE'),
    localRank: num('LOCAL_RANK', num('RANK')),
    masterAddr: env.MASTER_ADDR ?? '127.0.0.1',
    masterPort: num('MASTER_PORT', 29500),
  };
}

/**
 * Joins the process group: a TCPStore rendezvous at masterAddr:masterPort, then Gloo, or NCCL
 * (libtorch's ProcessGroupNCCL, CUDA builds) on CUDA device localRank, which becomes the current device.
 */
export function init(e: DistEnv, { backend = 'gloo', timeoutMs = 60_000 }: { backend?: 'gloo' | 'nccl'; timeoutMs?: number } = {}): void {
  native.distInit(backend, e.rank, e.worldSize, e.masterAddr, e.masterPort, timeoutMs, e.localRank);
}

/** Whether init() has run in this process. */
export const isInitialized = (): boolean => native.distIsInitialized();
/** This process's rank (0 when not distributed). */
export const rank = (): number => (native.distIsInitialized() ? native.distRank() : 0);
/** Number of processes (1 when not distributed). */
export const worldSize = (): number => (native.distIsInitialized() ? native.distWorldSize() : 1);
/** Waits for every rank. */
export const barrier = (): void => native.distBarrier();
/** Leaves the process group. */
export const destroy = (): void => native.distDestroy();

/** In-place allreduce of each tensor ('avg' divides the sum by the world size). */
export function allreduce(ts: readonly Tensor[], op: 'sum' | 'avg' | 'max' | 'min' = 'sum'): void {
  native.distAllreduce(handles(ts, 'allreduce'), op === 'avg' ? 'sum' : op);
  if (op === 'avg') {
    const n = worldSize();
    for (const t of ts) t.div_(n);
  }
}

/** In-place broadcast of each tensor from root. */
export function broadcast(ts: readonly Tensor[], root = 0): void {
  native.distBroadcast(handles(ts, 'broadcast'), root);
}

/** What DistributedDataParallel needs of a model. */
export interface Replicable {
  parameters(): Iterable<Tensor>;
  buffers(): Iterable<Tensor>;
  forward?(x: Tensor): Tensor;
}

/**
 * DistributedDataParallel semantics: on construction every rank takes rank 0's parameters and
 * buffers; forward() takes rank 0's buffers and arms the gradient reducer; during backward each
 * bucket of about bucketCapMB is allreduced as soon as all its gradients exist (overlapping the
 * communication with the rest of backward, in the same bucket order on every rank); after backward
 * syncGradients() waits for the buckets and writes the averages back, so each rank steps with the
 * same gradient and the replicas stay identical. Call dispose() when done with the wrapper.
 */
export class DistributedDataParallel<M extends Replicable> {
  readonly module: M;
  readonly bucketBytes: number;
  /** Buckets whose allreduce started while the last backward was still running. */
  overlappedBuckets = 0;
  private reducer: number | null = null;

  constructor(module: M, { bucketCapMB = 25 }: { bucketCapMB?: number } = {}) {
    if (!(bucketCapMB > 0)) throw new Error(`DistributedDataParallel: bucketCapMB must be > 0; got ${bucketCapMB}`);
    this.module = module;
    this.bucketBytes = Math.max(1, bucketCapMB * 2 ** 20);
    noGrad(() => broadcast([...module.parameters(), ...module.buffers()], 0));
    const trainable = [...module.parameters()].filter((p) => p.requiresGrad);
    if (worldSize() > 1 && trainable.length) this.reducer = native.distReducerCreate(handles(trainable, 'DistributedDataParallel'), this.bucketBytes);
  }

  /** Number of parameters in each gradient bucket, in launch order (the last parameters first). */
  get buckets(): number[] {
    return this.reducer === null ? [] : native.distReducerBuckets(this.reducer);
  }

  /** Copies rank 0's buffers (BatchNorm running statistics) to every rank. */
  broadcastBuffers(): void {
    const bufs = [...this.module.buffers()];
    if (worldSize() > 1 && bufs.length) noGrad(() => broadcast(bufs, 0));
  }

  /**
   * The module's forward after taking rank 0's buffers, as torch's DDP does with
   * broadcast_buffers=True, so every replica normalises with the same running statistics. With
   * gradients enabled it arms the reducer for the backward that follows.
   */
  forward(x: Tensor): Tensor {
    if (!this.module.forward) throw new Error('DistributedDataParallel.forward: the module has no forward()');
    this.broadcastBuffers();
    if (this.reducer !== null && native.isGradEnabled()) native.distReducerPrepare(this.reducer);
    return this.module.forward(x);
  }

  /**
   * Averages the gradients of all trainable parameters over the ranks (call after backward, before
   * step). Buckets that backward already launched are only waited for; the rest start now.
   */
  syncGradients(): void {
    if (this.reducer === null) return;
    this.overlappedBuckets = native.distReducerFinish(this.reducer);
  }

  /** Removes the gradient hooks. */
  dispose(): void {
    if (this.reducer !== null) native.distReducerDestroy(this.reducer);
    this.reducer = null;
  }
}

/**
 * torch's nn.SyncBatchNorm.convert_sync_batchnorm: every BatchNorm2d in the model computes its
 * training-mode batch statistics over the whole global batch (all ranks) instead of its own part.
 * The modules, parameters and state-dict keys stay as they are. Returns how many were switched.
 */
export function convertSyncBatchNorm(model: { namedModules(): Iterable<readonly [string, unknown]> }): number {
  let n = 0;
  for (const [, m] of model.namedModules()) {
    if (m instanceof BatchNorm2d) {
      m.syncAcrossRanks = true;
      n++;
    }
  }
  return n;
}

export { syncBatchNorm } from '../nn/functional.ts';

/** Seeded 32-bit PRNG (mulberry32): the same permutation on every rank for a given seed and epoch. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * torch's DistributedSampler: each epoch a seeded permutation (same on every rank), padded to a
 * multiple of the world size (or trimmed with dropLast), of which rank r takes every worldSize-th.
 */
export class DistributedSampler {
  epoch = 0;
  constructor(
    readonly size: number,
    readonly opts: { rank?: number; worldSize?: number; shuffle?: boolean; seed?: number; dropLast?: boolean } = {},
  ) {}

  /** Changes the permutation (call at the start of each epoch). */
  setEpoch(epoch: number): void {
    this.epoch = epoch;
  }

  /** This rank's sample indices for the current epoch. */
  indices(): number[] {
    const { rank: r = rank(), worldSize: w = worldSize(), shuffle = true, seed = 0, dropLast = false } = this.opts;
    const all = Array.from({ length: this.size }, (_, i) => i);
    if (shuffle) {
      const rand = mulberry32(seed * 1000003 + this.epoch);
      for (let i = all.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [all[i], all[j]] = [all[j]!, all[i]!];
      }
    }
    const perRank = dropLast ? Math.floor(this.size / w) : Math.ceil(this.size / w);
    const total = perRank * w;
    const padded = dropLast ? all.slice(0, total) : [...all, ...all.slice(0, total - all.length)];
    while (padded.length < total) padded.push(...all.slice(0, total - padded.length));
    return padded.filter((_, i) => i % w === r);
  }
}
