// The only place the addon is touched: loads it once and gives every native function a type.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** An opaque native tensor handle (a BigInt naming one at::Tensor in the addon's table). */
export interface Handle {
  readonly __brand: 'TensorHandle';
}
type H = Handle;
type Opt<T> = T | null | undefined;
type Ints = number | readonly number[];
type Num = number | boolean;
type TA = ArrayBufferView | ArrayBuffer;

export interface Native {
  dtypes: Record<string, number>;
  // creation and copies
  fromBytes(data: TA, shape: Ints, dtype: number): H;
  fromStorage(storage: H, size: Ints, stride: Ints, storageOffset: number): H;
  fromFile(path: string, byteOffset: number, shape: Ints, dtype: number): H;
  toArray(t: H): ArrayBufferView;
  toBytes(t: H): Buffer;
  item(t: H): number | boolean;
  zeros(shape: Ints, dtype?: Opt<number>, device?: Opt<string>): H;
  ones(shape: Ints, dtype?: Opt<number>, device?: Opt<string>): H;
  empty(shape: Ints, dtype?: Opt<number>, device?: Opt<string>): H;
  full(shape: Ints, value: Num, dtype?: Opt<number>, device?: Opt<string>): H;
  arange(start: number, end: number, step: number, dtype?: Opt<number>, device?: Opt<string>): H;
  linspace(start: number, end: number, steps: number, dtype?: Opt<number>, device?: Opt<string>): H;
  rand(shape: Ints, dtype?: Opt<number>, device?: Opt<string>): H;
  randn(shape: Ints, dtype?: Opt<number>, device?: Opt<string>): H;
  randint(low: number, high: number, shape: Ints, dtype?: Opt<number>, device?: Opt<string>): H;
  randperm(n: number, dtype?: Opt<number>, device?: Opt<string>): H;
  zerosLike(t: H): H;
  onesLike(t: H): H;
  emptyLike(t: H): H;
  clone(t: H): H;
  fill_(t: H, v: Num): H;
  zero_(t: H): H;
  normal_(t: H, mean: number, std: number): H;
  uniform_(t: H, from: number, to: number): H;
  bernoulli_(t: H, p: number): H;
  copy_(t: H, src: H, nonBlocking?: boolean): H;
  // metadata
  shape(t: H): number[];
  strides(t: H): number[];
  dtype(t: H): number;
  device(t: H): string;
  numel(t: H): number;
  dim(t: H): number;
  requiresGrad(t: H): boolean;
  isLeaf(t: H): boolean;
  isContiguous(t: H, channelsLast?: boolean): boolean;
  isPinned(t: H): boolean;
  dataPtr(t: H): number;
  dispose(t: H): void;
  isDisposed(t: H): boolean;
  isHandle(v: unknown): boolean;
  memory(): { tensors: number; storages: number; bytes: number };
  // views and layout
  view(t: H, shape: Ints): H;
  reshape(t: H, shape: Ints): H;
  permute(t: H, dims: Ints): H;
  transpose(t: H, d0: number, d1: number): H;
  flatten(t: H, start?: number, end?: number): H;
  squeeze(t: H, dim?: Opt<number>): H;
  unsqueeze(t: H, dim: number): H;
  narrow(t: H, dim: number, start: number, length: number): H;
  slice(t: H, dim: number, start: Opt<number>, end: Opt<number>, step?: number): H;
  select(t: H, dim: number, index: number): H;
  indexSelect(t: H, dim: number, index: H): H;
  gather(t: H, dim: number, index: H): H;
  cat(ts: H[], dim?: number): H;
  stack(ts: H[], dim?: number): H;
  expand(t: H, shape: Ints): H;
  contiguous(t: H, channelsLast?: boolean): H;
  to(t: H, device: Opt<string>, dtype: Opt<number>, nonBlocking?: boolean, copy?: boolean): H;
  pinMemory(t: H): H;
  detach(t: H): H;
  // math
  add(t: H, o: H | Num, alpha?: number): H;
  sub(t: H, o: H | Num, alpha?: number): H;
  mul(t: H, o: H | Num): H;
  div(t: H, o: H | Num): H;
  add_(t: H, o: H | Num, alpha?: number): H;
  sub_(t: H, o: H | Num, alpha?: number): H;
  mul_(t: H, o: H | Num): H;
  div_(t: H, o: H | Num): H;
  pow(t: H, o: H | Num): H;
  eq(t: H, o: H | Num): H;
  ne(t: H, o: H | Num): H;
  gt(t: H, o: H | Num): H;
  lt(t: H, o: H | Num): H;
  ge(t: H, o: H | Num): H;
  le(t: H, o: H | Num): H;
  maximum(t: H, o: H | Num): H;
  minimum(t: H, o: H | Num): H;
  neg(t: H): H;
  abs(t: H): H;
  exp(t: H): H;
  log(t: H): H;
  sqrt(t: H): H;
  rsqrt(t: H): H;
  relu(t: H): H;
  relu_(t: H): H;
  sigmoid(t: H): H;
  tanh(t: H): H;
  sign(t: H): H;
  floor(t: H): H;
  round(t: H): H;
  isfinite(t: H): H;
  logicalNot(t: H): H;
  clamp(t: H, min: Opt<number>, max: Opt<number>): H;
  where(cond: H, a: H, b: H): H;
  maskedFill(t: H, mask: H, value: Num): H;
  addcmul_(t: H, t1: H, t2: H, value: number): H;
  lerp_(t: H, end: H, weight: number): H;
  sum(t: H, dim?: Opt<Ints>, keepdim?: boolean, dtype?: Opt<number>): H;
  mean(t: H, dim?: Opt<Ints>, keepdim?: boolean, dtype?: Opt<number>): H;
  var(t: H, dim?: Opt<Ints>, correction?: number, keepdim?: boolean): H;
  std(t: H, dim?: Opt<Ints>, correction?: number, keepdim?: boolean): H;
  amax(t: H, dim?: Opt<Ints>, keepdim?: boolean): H;
  amin(t: H, dim?: Opt<Ints>, keepdim?: boolean): H;
  maxDim(t: H, dim: number, keepdim?: boolean): [H, H];
  minDim(t: H, dim: number, keepdim?: boolean): [H, H];
  argmax(t: H, dim?: Opt<number>, keepdim?: boolean): H;
  argmin(t: H, dim?: Opt<number>, keepdim?: boolean): H;
  topk(t: H, k: number, dim?: number, largest?: boolean, sorted?: boolean): [H, H];
  sort(t: H, dim?: number, descending?: boolean): [H, H];
  norm(t: H, p: number): H;
  matmul(t: H, o: H): H;
  allclose(t: H, o: H, rtol?: number, atol?: number): boolean;
  equal(t: H, o: H): boolean;
  // nn functional
  conv2d(x: H, w: H, b: Opt<H>, stride: Ints, padding: Ints, dilation: Ints, groups: number): H;
  batchNorm(x: H, rm: Opt<H>, rv: Opt<H>, w: Opt<H>, b: Opt<H>, training: boolean, momentum: number, eps: number): H;
  maxPool2d(x: H, k: Ints, stride: Ints, padding: Ints, dilation: Ints, ceilMode: boolean): H;
  avgPool2d(x: H, k: Ints, stride: Ints, padding: Ints, ceilMode: boolean, countIncludePad: boolean): H;
  adaptiveAvgPool2d(x: H, out: Ints): H;
  linear(x: H, w: H, b: Opt<H>): H;
  dropout(x: H, p: number, training: boolean): H;
  constantPadNd(x: H, pad: Ints, value: number): H;
  softmax(x: H, dim: number, dtype?: Opt<number>): H;
  logSoftmax(x: H, dim: number, dtype?: Opt<number>): H;
  crossEntropy(x: H, target: H, weight: Opt<H>, reduction: string, ignoreIndex: number, labelSmoothing: number): H;
  nllLoss(x: H, target: H, weight: Opt<H>, reduction: string, ignoreIndex: number): H;
  interpolateBilinear(x: H, size: Ints, antialias: boolean): H;
  // fused multi-tensor updates
  foreachMulScalar_(ts: H[], s: number): void;
  foreachAddList_(ts: H[], o: H[], alpha: number): void;
  foreachAddList(ts: H[], o: H[], alpha: number): H[];
  foreachAddScalar_(ts: H[], s: number): void;
  foreachAddcmul_(ts: H[], t1: H[], t2: H[], v: number): void;
  foreachAddcdiv_(ts: H[], t1: H[], t2: H[], v: number): void;
  foreachLerp_(ts: H[], end: H[], w: number): void;
  foreachSqrt(ts: H[]): H[];
  foreachNorm(ts: H[], ord: number): H[];
  foreachZero_(ts: H[]): void;
  foreachCopy_(ts: H[], src: H[]): void;
  foreachMulTensor_(ts: H[], s: H): void;
  // autograd, modes, RNG, threads
  requiresGrad_(t: H, on: boolean): H;
  backward(t: H, gradient: Opt<H>, retainGraph: boolean): void;
  grad(t: H): H | null;
  setGrad(t: H, g: Opt<H>): void;
  setGradEnabled(on: boolean): boolean;
  isGradEnabled(): boolean;
  autocastState(deviceType: string): [boolean, number];
  setAutocast(deviceType: string, enabled: boolean, dtype: number, entering: boolean): void;
  manualSeed(seed: number): void;
  rngState(): H;
  setRngState(state: H): void;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  torchVersion(): string;
  // devices
  cudaIsAvailable(): boolean;
  cudaDeviceCount(): number;
  cudaBuilt(): boolean;
  setCudnnBenchmark(on: boolean): void;
  cudaSynchronize(): void;
  cudaMemory(device: number): { allocated: number; reserved: number; peakAllocated: number };
  cudaResetPeak(device: number): void;
  cudaEmptyCache(): void;
  // c10d process groups (Gloo)
  distInit(backend: string, rank: number, worldSize: number, masterAddr: string, masterPort: number, timeoutMs: number): void;
  distRank(): number;
  distWorldSize(): number;
  distIsInitialized(): boolean;
  distAllreduce(ts: H[], op: 'sum' | 'max' | 'min'): void;
  distBroadcast(ts: H[], root: number): void;
  distBarrier(): void;
  distDestroy(): void;
  distReducerCreate(params: H[], bucketBytes: number): number;
  distReducerPrepare(id: number): void;
  distReducerFinish(id: number): number;
  distReducerBuckets(id: number): number[];
  distReducerDestroy(id: number): void;
  distSyncBatchNorm(x: H, weight: Opt<H>, bias: Opt<H>, runningMean: Opt<H>, runningVar: Opt<H>, eps: number, momentum: number): H;
  // serve: tensors handed between JS threads without a copy (cpp/share.cc)
  shareTensors(ts: H[]): number;
  adoptTensors(token: number): H[];
  dropShared(token: number): boolean;
  sharedCount(): number;
  // speed branch: oneDNN fused inference ops (cpp/fused.cc)
  fusedAvailable(): boolean;
  fusedBf16Supported(): boolean;
  convPack(w: H, padding: Ints, stride: Ints, dilation: Ints, groups: number, inputSize: Ints): H;
  packedLayout(packed: H): H;
  convFused(x: H, packed: H, bias: Opt<H>, padding: Ints, stride: Ints, dilation: Ints, groups: number, relu: boolean): H;
  convFusedAdd(x: H, other: H, packed: H, bias: Opt<H>, padding: Ints, stride: Ints, dilation: Ints, groups: number, relu: boolean): H;
  // speed branch: the large-block CPU cache (cpp/cpu_cache.cc)
  cpuCacheStats(): { cachedBytes: number; cachedBlocks: number; liveBlocks: number; hits: number; misses: number; limitBytes: number };
  cpuCacheEmpty(): void;
}

function load(): Native {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const path = join(root, 'build', 'Release', 'resnet_ts.node');
  if (!existsSync(path)) {
    throw new Error(`resnet-ts: the native addon is not built (${path} is missing). Run: bash scripts/setup.sh (or npm run build)`);
  }
  return createRequire(import.meta.url)(path) as Native;
}

/** The loaded addon. */
export const native: Native = load();
