// Data-parallel training over libtorch's c10d (Gloo): process group set-up from the torchrun
// environment, collectives, DistributedDataParallel semantics and SyncBatchNorm conversion.
import { native } from '../native.ts';
import { handles } from '../creation.ts';
import { BatchNorm2d, SyncBatchNorm } from '../nn/layers.ts';
import type { Module } from '../nn/module.ts';
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
 * torch's nn.SyncBatchNorm.convert_sync_batchnorm: every BatchNorm2d in the module becomes a
 * SyncBatchNorm on the same parameters and buffers (shared, so the state-dict keys, an optimizer
 * made before and the values stay), whose training-mode statistics cover the whole global batch.
 * Returns the module, or the SyncBatchNorm when the module itself is a BatchNorm2d.
 */
export function convertSyncBatchNorm<M extends Module>(module: M): M {
  if (module instanceof BatchNorm2d && !(module instanceof SyncBatchNorm)) return SyncBatchNorm.convert(module) as Module as M;
  for (const [name, child] of module.namedChildren()) {
    const converted = convertSyncBatchNorm(child);
    if (converted !== child) module.setChild(name, converted);
  }
  return module;
}

export { syncBatchNorm } from '../nn/functional.ts';
