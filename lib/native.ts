// The only place the addon is touched: the op table, which declares every native function once,
// and the loader.
import { createRequire } from 'node:module';
import { SetupError, loadAddon } from './addon.ts';
import { CudaOutOfMemoryError } from './cuda-error.ts';

/** An opaque native tensor handle (a BigInt naming one at::Tensor in the addon's table). */
export interface Handle {
  readonly __brand: 'TensorHandle';
}
declare const dtypeBrand: unique symbol;
/** A dtype code of the addon (see native.dtypes). Any number is accepted; the brand marks dtype parameters in the table. */
export type DTypeCode = number & { readonly [dtypeBrand]?: 'dtype' };
/** The dtype names the addon has codes for (native.dtypes' keys). */
export const DTYPE_NAMES = ['float32', 'float64', 'float16', 'bfloat16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'] as const;
type H = Handle;
type Opt<T> = T | null | undefined;
type Ints = number | readonly number[];
type Num = number | boolean;
type TA = ArrayBufferView | ArrayBuffer;

/**
 * How the Tensor side converts a parameter: 'like' is a Tensor or a number (the second operand of
 * arithmetic), 'dtype' a DType name turned into its code; every other parameter passes as it is,
 * a Tensor (or an array of them) as its handle.
 */
export type ParamKind<T> = [T] extends [H | Num] ? ([H | Num] extends [T] ? 'like' : 'plain') : typeof dtypeBrand extends keyof NonNullable<T> ? 'dtype' : 'plain';
type ArgName<T> = ParamKind<T> extends 'plain' ? string : `${string}:${ParamKind<T>}`;
/** One name per parameter (optional ones too), suffixed with its kind where it is not plain: checked by tsc. */
type ArgNames<P extends readonly unknown[]> = { [I in keyof P]-?: ArgName<P[I]> };
/** Any native function's type. */
export type Signature = (...args: never[]) => unknown;

/** A row of the op table: the native signature F, the argument names, and whether Tensor has it as a method. */
export interface Op<F extends Signature = Signature, M extends boolean = boolean> {
  /** The argument names in order, as the C++ reads them (a `:kind` suffix as ParamKind says). */
  readonly args: readonly string[];
  /** Whether Tensor gets the op as a method (its first argument is the receiver). */
  readonly method: M;
  /** Type only: the native signature. */
  readonly signature?: F;
}
const fn = <F extends Signature>(...args: ArgNames<Parameters<F>>): Op<F, false> => ({ args, method: false });
const method = <F extends Signature>(...args: ArgNames<Parameters<F>>): Op<F, true> => ({ args, method: true });

/**
 * The op table: every native function, declared once. Its rows give the typed signatures of
 * `native` (type Native), the Tensor methods (installed and typed from the `method` rows by
 * lib/tensor.ts: Tensor arguments as handles, handle results as Tensors, an op whose name ends in
 * `_` returns its receiver) and the argument names that test/native.test.ts checks against what
 * the C++ reads, position by position. A table written in TypeScript rather than generated code
 * (as tch-rs generates its shim from PyTorch's Declarations.yaml): we wrap a hundred-odd ops, many
 * with a little argument handling of their own that a generator would need escape hatches for,
 * and a TypeScript table needs no build step and cannot go stale; tsc checks each row's names
 * against its signature, and the test checks them against the addon.
 *
 * Arguments follow the order of the libtorch function a row wraps, so the C++ side is a straight
 * pass-through: batchNorm is at::batch_norm's (input, weight, bias, running_mean, running_var,
 * training, momentum, eps), distSyncBatchNorm torch's SyncBatchNorm function's (input, weight,
 * bias, running_mean, running_var, eps, momentum); creation functions end with dtype and device,
 * as at::TensorOptions does. torch.nn.functional's own orders belong to lib/nn/functional.ts.
 *
 * Adding a native function is one step on each side:
 *   1. C++: `def(env, exports, "name", [](Args& a) { ... a.tensor(0, "self") ... });` in the cpp
 *      file of its concern (an in-place op returns `at::Tensor&`: def() then hands back the
 *      caller's own handle);
 *   2. here: one row, `name: fn<(self: H, other: H, alpha?: number) => H>('self', 'other', 'alpha'),`
 *      (`method<...>` to make it a Tensor method too), with the names the C++ reads.
 */
export const OPS = {
  // ---- creation and copies (cpp/tensor.cc, cpp/ops.cc) ----
  fromBytes: fn<(data: TA, shape: Ints, dtype: DTypeCode) => H>('data', 'shape', 'dtype:dtype'),
  fromStorage: fn<(storage: H, size: Ints, stride: Ints, storageOffset: number) => H>('storage', 'size', 'stride', 'storageOffset'),
  fromFile: fn<(path: string, byteOffset: number, shape: Ints, dtype: DTypeCode) => H>('path', 'byteOffset', 'shape', 'dtype:dtype'),
  toArray: fn<(self: H) => ArrayBufferView>('self'),
  toBytes: fn<(self: H) => Uint8Array>('self'),
  item: fn<(self: H) => number | boolean>('self'),
  zeros: fn<(shape: Ints, dtype?: Opt<DTypeCode>, device?: Opt<string>) => H>('shape', 'dtype:dtype', 'device'),
  ones: fn<(shape: Ints, dtype?: Opt<DTypeCode>, device?: Opt<string>) => H>('shape', 'dtype:dtype', 'device'),
  empty: fn<(shape: Ints, dtype?: Opt<DTypeCode>, device?: Opt<string>) => H>('shape', 'dtype:dtype', 'device'),
  full: fn<(shape: Ints, value: Num, dtype?: Opt<DTypeCode>, device?: Opt<string>) => H>('shape', 'value', 'dtype:dtype', 'device'),
  arange: fn<(start: number, end: number, step: number, dtype?: Opt<DTypeCode>, device?: Opt<string>) => H>('start', 'end', 'step', 'dtype:dtype', 'device'),
  linspace: fn<(start: number, end: number, steps: number, dtype?: Opt<DTypeCode>, device?: Opt<string>) => H>('start', 'end', 'steps', 'dtype:dtype', 'device'),
  rand: fn<(shape: Ints, dtype?: Opt<DTypeCode>, device?: Opt<string>) => H>('shape', 'dtype:dtype', 'device'),
  randn: fn<(shape: Ints, dtype?: Opt<DTypeCode>, device?: Opt<string>) => H>('shape', 'dtype:dtype', 'device'),
  randint: fn<(low: number, high: number, shape: Ints, dtype?: Opt<DTypeCode>, device?: Opt<string>) => H>('low', 'high', 'shape', 'dtype:dtype', 'device'),
  randperm: fn<(n: number, dtype?: Opt<DTypeCode>, device?: Opt<string>) => H>('n', 'dtype:dtype', 'device'),
  zerosLike: fn<(self: H) => H>('self'),
  onesLike: fn<(self: H) => H>('self'),
  emptyLike: fn<(self: H) => H>('self'),
  /** A copy with its own memory (same strides). */
  clone: method<(self: H) => H>('self'),
  /** Fills with value. */
  fill_: method<(self: H, value: Num) => H>('self', 'value'),
  /** Fills with zeros. */
  zero_: method<(self: H) => H>('self'),
  /** Fills with normal samples (mean 0, std 1 by default). */
  normal_: method<(self: H, mean?: number, std?: number) => H>('self', 'mean', 'std'),
  /** Fills with uniform samples in [from, to) ([0, 1) by default). */
  uniform_: method<(self: H, from?: number, to?: number) => H>('self', 'from', 'to'),
  bernoulli_: fn<(self: H, p: number) => H>('self', 'p'),
  /** Copies src's values in (broadcasting, converting dtype and device). */
  copy_: method<(self: H, src: H, nonBlocking?: boolean) => H>('self', 'src', 'nonBlocking'),

  // ---- metadata and handles (cpp/tensor.cc) ----
  shape: fn<(self: H) => number[]>('self'),
  strides: fn<(self: H) => number[]>('self'),
  dtype: fn<(self: H) => DTypeCode>('self'),
  device: fn<(self: H) => string>('self'),
  numel: fn<(self: H) => number>('self'),
  dim: fn<(self: H) => number>('self'),
  requiresGrad: fn<(self: H) => boolean>('self'),
  isLeaf: fn<(self: H) => boolean>('self'),
  isContiguous: fn<(self: H, channelsLast?: boolean) => boolean>('self', 'channelsLast'),
  isPinned: fn<(self: H) => boolean>('self'),
  dataPtr: fn<(self: H) => number>('self'),
  dispose: fn<(self: H) => void>('self'),
  isDisposed: fn<(self: H) => boolean>('self'),
  isHandle: fn<(value: unknown) => boolean>('value'),
  memory: fn<() => { tensors: number; storages: number; bytes: number }>(),

  // ---- views and layout ----
  view: fn<(self: H, shape: Ints) => H>('self', 'shape'),
  reshape: fn<(self: H, shape: Ints) => H>('self', 'shape'),
  permute: fn<(self: H, dims: Ints) => H>('self', 'dims'),
  /** Swaps two dimensions (a view). */
  transpose: method<(self: H, dim0: number, dim1: number) => H>('self', 'dim0', 'dim1'),
  /** Flattens dimensions startDim..endDim (0..-1 by default) into one. */
  flatten: method<(self: H, startDim?: number, endDim?: number) => H>('self', 'startDim', 'endDim'),
  /** Drops dimension dim if it has size 1, or every size-1 dimension. */
  squeeze: method<(self: H, dim?: Opt<number>) => H>('self', 'dim'),
  /** Inserts a dimension of size 1 at dim. */
  unsqueeze: method<(self: H, dim: number) => H>('self', 'dim'),
  /** length elements of dimension dim from start (a view). */
  narrow: method<(self: H, dim: number, start: number, length: number) => H>('self', 'dim', 'start', 'length'),
  /** Python's t[start:end:step] along dim (step 1 by default). */
  slice: method<(self: H, dim: number, start?: Opt<number>, end?: Opt<number>, step?: number) => H>('self', 'dim', 'start', 'end', 'step'),
  /** The index-th slice along dim, without that dimension. */
  select: method<(self: H, dim: number, index: number) => H>('self', 'dim', 'index'),
  /** The slices along dim at the int64 indices. */
  indexSelect: method<(self: H, dim: number, index: H) => H>('self', 'dim', 'index'),
  /** Values along dim at the int64 indices (torch.gather). */
  gather: method<(self: H, dim: number, index: H) => H>('self', 'dim', 'index'),
  cat: fn<(tensors: readonly H[], dim?: number) => H>('tensors', 'dim'),
  stack: fn<(tensors: readonly H[], dim?: number) => H>('tensors', 'dim'),
  expand: fn<(self: H, shape: Ints) => H>('self', 'shape'),
  contiguous: fn<(self: H, channelsLast?: boolean) => H>('self', 'channelsLast'),
  to: fn<(self: H, device: Opt<string>, dtype: Opt<DTypeCode>, nonBlocking?: boolean, copy?: boolean) => H>('self', 'device', 'dtype:dtype', 'nonBlocking', 'copy'),
  /** A copy in page-locked memory (for asynchronous copies to CUDA). */
  pinMemory: method<(self: H) => H>('self'),
  /** The same values, cut from the autograd graph. */
  detach: method<(self: H) => H>('self'),

  // ---- elementwise math: the second operand is a Tensor or a number ----
  /** self + alpha × other */
  add: method<(self: H, other: H | Num, alpha?: number) => H>('self', 'other:like', 'alpha'),
  /** self − alpha × other */
  sub: method<(self: H, other: H | Num, alpha?: number) => H>('self', 'other:like', 'alpha'),
  mul: method<(self: H, other: H | Num) => H>('self', 'other:like'),
  div: method<(self: H, other: H | Num) => H>('self', 'other:like'),
  add_: method<(self: H, other: H | Num, alpha?: number) => H>('self', 'other:like', 'alpha'),
  sub_: method<(self: H, other: H | Num, alpha?: number) => H>('self', 'other:like', 'alpha'),
  mul_: method<(self: H, other: H | Num) => H>('self', 'other:like'),
  div_: method<(self: H, other: H | Num) => H>('self', 'other:like'),
  pow: method<(self: H, other: H | Num) => H>('self', 'other:like'),
  eq: method<(self: H, other: H | Num) => H>('self', 'other:like'),
  ne: method<(self: H, other: H | Num) => H>('self', 'other:like'),
  gt: method<(self: H, other: H | Num) => H>('self', 'other:like'),
  lt: method<(self: H, other: H | Num) => H>('self', 'other:like'),
  ge: method<(self: H, other: H | Num) => H>('self', 'other:like'),
  le: method<(self: H, other: H | Num) => H>('self', 'other:like'),
  /** Elementwise maximum (with a number: clamp from below). */
  maximum: method<(self: H, other: H | Num) => H>('self', 'other:like'),
  /** Elementwise minimum (with a number: clamp from above). */
  minimum: method<(self: H, other: H | Num) => H>('self', 'other:like'),
  neg: method<(self: H) => H>('self'),
  abs: method<(self: H) => H>('self'),
  exp: method<(self: H) => H>('self'),
  log: method<(self: H) => H>('self'),
  sqrt: method<(self: H) => H>('self'),
  rsqrt: method<(self: H) => H>('self'),
  relu: method<(self: H) => H>('self'),
  relu_: method<(self: H) => H>('self'),
  sigmoid: method<(self: H) => H>('self'),
  tanh: method<(self: H) => H>('self'),
  sign: method<(self: H) => H>('self'),
  floor: method<(self: H) => H>('self'),
  /** Rounds half to even, as torch.round. */
  round: method<(self: H) => H>('self'),
  isfinite: method<(self: H) => H>('self'),
  logicalNot: method<(self: H) => H>('self'),
  /** Limits values to [min, max]; either bound may be omitted. */
  clamp: method<(self: H, min?: Opt<number>, max?: Opt<number>) => H>('self', 'min', 'max'),
  where: fn<(condition: H, self: H, other: H) => H>('condition', 'self', 'other'),
  /** value where mask is true, self elsewhere. */
  maskedFill: method<(self: H, mask: H, value: Num) => H>('self', 'mask', 'value'),
  addcmul_: fn<(self: H, tensor1: H, tensor2: H, value: number) => H>('self', 'tensor1', 'tensor2', 'value'),
  lerp_: fn<(self: H, end: H, weight: number) => H>('self', 'end', 'weight'),

  // ---- reductions: an omitted dim reduces over everything ----
  /** Sum over dim (all by default), optionally in another dtype. */
  sum: method<(self: H, dim?: Opt<Ints>, keepdim?: boolean, dtype?: Opt<DTypeCode>) => H>('self', 'dim', 'keepdim', 'dtype:dtype'),
  /** Mean over dim (all by default), optionally in another dtype. */
  mean: method<(self: H, dim?: Opt<Ints>, keepdim?: boolean, dtype?: Opt<DTypeCode>) => H>('self', 'dim', 'keepdim', 'dtype:dtype'),
  var: fn<(self: H, dim?: Opt<Ints>, correction?: number, keepdim?: boolean) => H>('self', 'dim', 'correction', 'keepdim'),
  std: fn<(self: H, dim?: Opt<Ints>, correction?: number, keepdim?: boolean) => H>('self', 'dim', 'correction', 'keepdim'),
  amax: fn<(self: H, dim?: Opt<Ints>, keepdim?: boolean) => H>('self', 'dim', 'keepdim'),
  amin: fn<(self: H, dim?: Opt<Ints>, keepdim?: boolean) => H>('self', 'dim', 'keepdim'),
  maxDim: fn<(self: H, dim: number, keepdim?: boolean) => [H, H]>('self', 'dim', 'keepdim'),
  minDim: fn<(self: H, dim: number, keepdim?: boolean) => [H, H]>('self', 'dim', 'keepdim'),
  /** Index of the largest value (over everything, or along dim). */
  argmax: method<(self: H, dim?: Opt<number>, keepdim?: boolean) => H>('self', 'dim', 'keepdim'),
  /** Index of the smallest value (over everything, or along dim). */
  argmin: method<(self: H, dim?: Opt<number>, keepdim?: boolean) => H>('self', 'dim', 'keepdim'),
  /** The k largest (or smallest) values along dim (the last by default) and their indices. */
  topk: method<(self: H, k: number, dim?: number, largest?: boolean, sorted?: boolean) => [H, H]>('self', 'k', 'dim', 'largest', 'sorted'),
  /** Values sorted along dim (the last by default) and their original indices. */
  sort: method<(self: H, dim?: number, descending?: boolean) => [H, H]>('self', 'dim', 'descending'),
  /** The p-norm of all elements (p = 2 by default). */
  norm: method<(self: H, p?: number) => H>('self', 'p'),
  /** Matrix product with torch.matmul's broadcasting. */
  matmul: method<(self: H, other: H) => H>('self', 'other'),
  /** Whether all elements are close: |self − other| ≤ atol + rtol × |other| (1e-5, 1e-8 by default). */
  allclose: method<(self: H, other: H, rtol?: number, atol?: number) => boolean>('self', 'other', 'rtol', 'atol'),
  /** Whether shapes and all values are equal. */
  equal: method<(self: H, other: H) => boolean>('self', 'other'),

  // ---- torch.nn.functional ----
  conv2d: fn<(input: H, weight: H, bias: Opt<H>, stride: Ints, padding: Ints, dilation: Ints, groups: number) => H>('input', 'weight', 'bias', 'stride', 'padding', 'dilation', 'groups'),
  batchNorm: fn<(input: H, weight: Opt<H>, bias: Opt<H>, runningMean: Opt<H>, runningVar: Opt<H>, training: boolean, momentum: number, eps: number) => H>('input', 'weight', 'bias', 'runningMean', 'runningVar', 'training', 'momentum', 'eps'),
  maxPool2d: fn<(input: H, kernelSize: Ints, stride: Ints, padding: Ints, dilation: Ints, ceilMode: boolean) => H>('input', 'kernelSize', 'stride', 'padding', 'dilation', 'ceilMode'),
  avgPool2d: fn<(input: H, kernelSize: Ints, stride: Ints, padding: Ints, ceilMode: boolean, countIncludePad: boolean) => H>('input', 'kernelSize', 'stride', 'padding', 'ceilMode', 'countIncludePad'),
  adaptiveAvgPool2d: fn<(input: H, outputSize: Ints) => H>('input', 'outputSize'),
  linear: fn<(input: H, weight: H, bias: Opt<H>) => H>('input', 'weight', 'bias'),
  dropout: fn<(input: H, p: number, training: boolean) => H>('input', 'p', 'training'),
  constantPadNd: fn<(input: H, pad: Ints, value: number) => H>('input', 'pad', 'value'),
  softmax: fn<(input: H, dim: number, dtype?: Opt<DTypeCode>) => H>('input', 'dim', 'dtype:dtype'),
  logSoftmax: fn<(input: H, dim: number, dtype?: Opt<DTypeCode>) => H>('input', 'dim', 'dtype:dtype'),
  crossEntropy: fn<(input: H, target: H, weight: Opt<H>, reduction: string, ignoreIndex: number, labelSmoothing: number) => H>('input', 'target', 'weight', 'reduction', 'ignoreIndex', 'labelSmoothing'),
  nllLoss: fn<(input: H, target: H, weight: Opt<H>, reduction: string, ignoreIndex: number) => H>('input', 'target', 'weight', 'reduction', 'ignoreIndex'),
  interpolateBilinear: fn<(input: H, size: Ints, antialias: boolean) => H>('input', 'size', 'antialias'),

  // ---- fused multi-tensor updates (optimizers): lists of tensors, in place where the name ends in _ ----
  foreachMulScalar_: fn<(self: readonly H[], scalar: number) => void>('self', 'scalar'),
  foreachAddList_: fn<(self: readonly H[], other: readonly H[], alpha?: number) => void>('self', 'other', 'alpha'),
  foreachAddList: fn<(self: readonly H[], other: readonly H[], alpha?: number) => H[]>('self', 'other', 'alpha'),
  foreachAddScalar_: fn<(self: readonly H[], scalar: number) => void>('self', 'scalar'),
  foreachAddcmul_: fn<(self: readonly H[], tensor1: readonly H[], tensor2: readonly H[], value: number) => void>('self', 'tensor1', 'tensor2', 'value'),
  foreachAddcdiv_: fn<(self: readonly H[], tensor1: readonly H[], tensor2: readonly H[], value: number) => void>('self', 'tensor1', 'tensor2', 'value'),
  foreachLerp_: fn<(self: readonly H[], end: readonly H[], weight: number) => void>('self', 'end', 'weight'),
  foreachSqrt: fn<(self: readonly H[]) => H[]>('self'),
  foreachNorm: fn<(self: readonly H[], ord: number) => H[]>('self', 'ord'),
  foreachZero_: fn<(self: readonly H[]) => void>('self'),
  foreachCopy_: fn<(self: readonly H[], src: readonly H[]) => void>('self', 'src'),
  foreachMulTensor_: fn<(self: readonly H[], scalar: H) => void>('self', 'scalar'),
  fusedSgd_: fn<(self: readonly H[], grads: readonly H[], momentumBuffers: readonly H[], weightDecay: number, momentum: number, lr: number, dampening: number, nesterov: boolean, isFirstStep: boolean) => void>(
    'self', 'grads', 'momentumBuffers', 'weightDecay', 'momentum', 'lr', 'dampening', 'nesterov', 'isFirstStep'),
  fusedAdamw_: fn<(self: readonly H[], grads: readonly H[], expAvgs: readonly H[], expAvgSqs: readonly H[], stateSteps: readonly H[], lr: number, beta1: number, beta2: number, weightDecay: number, eps: number) => void>(
    'self', 'grads', 'expAvgs', 'expAvgSqs', 'stateSteps', 'lr', 'beta1', 'beta2', 'weightDecay', 'eps'),

  // ---- autograd, modes, RNG, threads (cpp/autograd.cc) ----
  /** Turns gradient recording for this tensor on (default) or off. */
  requiresGrad_: method<(self: H, requiresGrad?: boolean) => H>('self', 'requiresGrad'),
  backward: fn<(self: H, gradient: Opt<H>, retainGraph: boolean) => void>('self', 'gradient', 'retainGraph'),
  grad: fn<(self: H) => H | null>('self'),
  setGrad: fn<(self: H, grad: Opt<H>) => void>('self', 'grad'),
  setGradEnabled: fn<(enabled: boolean) => boolean>('enabled'),
  isGradEnabled: fn<() => boolean>(),
  autocastState: fn<(deviceType: string) => [boolean, DTypeCode]>('deviceType'),
  setAutocast: fn<(deviceType: string, enabled: boolean, dtype: DTypeCode, entering: boolean) => void>('deviceType', 'enabled', 'dtype:dtype', 'entering'),
  manualSeed: fn<(seed: number) => void>('seed'),
  rngState: fn<() => H>(),
  setRngState: fn<(state: H) => void>('state'),
  setNumThreads: fn<(n: number) => void>('n'),
  getNumThreads: fn<() => number>(),
  releaseThreadPool: fn<() => boolean>(),
  torchVersion: fn<() => string>(),

  // ---- devices (cpp/cuda.cc) ----
  cudaIsAvailable: fn<() => boolean>(),
  cudaDeviceCount: fn<() => number>(),
  cudaBuilt: fn<() => boolean>(),
  setCudnnBenchmark: fn<(enabled: boolean) => void>('enabled'),
  cudaSynchronize: fn<() => void>(),
  cudaMemory: fn<(device?: number) => { allocated: number; reserved: number; peakAllocated: number }>('device'),
  cudaResetPeak: fn<(device?: number) => void>('device'),
  cudaEmptyCache: fn<() => void>(),
  cudnnBenchmark: fn<() => boolean>(),
  /** TF32 for convolutions (cuDNN) and matmuls (cuBLAS). */
  setAllowTF32: fn<(cudnn: boolean, cublas: boolean) => void>('cudnn', 'cublas'),
  allowTF32: fn<() => [boolean, boolean]>(),
  /** The class CUDA out-of-memory errors are made of (CudaOutOfMemoryError). */
  cudaSetErrorClass: fn<(ctor: new (message: string) => Error) => void>('ctor'),
  // CUDA graphs (torch.cuda.CUDAGraph); a pool is the pair of ids graph_pool_handle() gives.
  cudaGraphNew: fn<(keepGraph: boolean) => number>('keepGraph'),
  cudaGraphCapture: fn<(graph: number, fn: () => void, pool: Opt<readonly [number, number]>, captureMode: string) => void>('graph', 'fn', 'pool', 'captureMode'),
  cudaGraphReplay: fn<(graph: number) => void>('graph'),
  cudaGraphReset: fn<(graph: number) => void>('graph'),
  cudaGraphPool: fn<(graph: number) => [number, number]>('graph'),
  cudaGraphDispose: fn<(graph: number) => void>('graph'),
  cudaGraphPoolHandle: fn<() => [number, number]>(),
  /** fn(i) `iters` times on a side stream (the warm-up before a capture). */
  cudaWarmup: fn<(fn: (i: number) => void, iters: number) => void>('fn', 'iters'),

  // ---- c10d process groups, Gloo and NCCL (cpp/distributed.cc) ----
  /** deviceIndex: the rank's CUDA device for NCCL (made current). */
  distInit: fn<(backend: string, rank: number, worldSize: number, masterAddr: string, masterPort: number, timeoutMs: number, deviceIndex?: number) => void>('backend', 'rank', 'worldSize', 'masterAddr', 'masterPort', 'timeoutMs', 'deviceIndex'),
  distRank: fn<() => number>(),
  distWorldSize: fn<() => number>(),
  distIsInitialized: fn<() => boolean>(),
  distAllreduce: fn<(tensors: readonly H[], op: 'sum' | 'max' | 'min') => void>('tensors', 'op'),
  distBroadcast: fn<(tensors: readonly H[], root: number) => void>('tensors', 'root'),
  distBarrier: fn<() => void>(),
  distDestroy: fn<() => void>(),
  distReducerCreate: fn<(params: readonly H[], bucketBytes: number) => number>('params', 'bucketBytes'),
  distReducerPrepare: fn<(reducer: number) => void>('reducer'),
  distReducerFinish: fn<(reducer: number) => number>('reducer'),
  distReducerBuckets: fn<(reducer: number) => number[]>('reducer'),
  distReducerDestroy: fn<(reducer: number) => void>('reducer'),
  /** Training-mode batch norm with statistics over all ranks, in the order of torch's SyncBatchNorm function. */
  distSyncBatchNorm: fn<(input: H, weight: Opt<H>, bias: Opt<H>, runningMean: Opt<H>, runningVar: Opt<H>, eps: number, momentum: number) => H>('input', 'weight', 'bias', 'runningMean', 'runningVar', 'eps', 'momentum'),

  // ---- tensors handed between JS threads without a copy (cpp/share.cc) ----
  shareTensors: fn<(tensors: readonly H[]) => number>('tensors'),
  adoptTensors: fn<(token: number) => H[]>('token'),
  dropShared: fn<(token: number) => boolean>('token'),
  sharedCount: fn<() => number>(),

  // ---- oneDNN fused inference (cpp/fused.cc) and the large-block CPU cache (cpp/cpu_cache.cc) ----
  fusedAvailable: fn<() => boolean>(),
  fusedBf16Supported: fn<() => boolean>(),
  convPack: fn<(weight: H, padding: Ints, stride: Ints, dilation: Ints, groups: number, inputSize: Ints) => H>('weight', 'padding', 'stride', 'dilation', 'groups', 'inputSize'),
  packedLayout: fn<(packed: H) => H>('packed'),
  convFused: fn<(input: H, weight: H, bias: Opt<H>, padding: Ints, stride: Ints, dilation: Ints, groups: number, relu: boolean) => H>('input', 'weight', 'bias', 'padding', 'stride', 'dilation', 'groups', 'relu'),
  convFusedAdd: fn<(input: H, other: H, weight: H, bias: Opt<H>, padding: Ints, stride: Ints, dilation: Ints, groups: number, relu: boolean) => H>('input', 'other', 'weight', 'bias', 'padding', 'stride', 'dilation', 'groups', 'relu'),
  // ---- convolutions planned once on the system oneDNN (cpp/dnnl_conv.cc; only where the addon was built with it) ----
  dnnlAvailable: fn<() => boolean>(),
  dnnlVersion: fn<() => string>(),
  dnnlConvPlan: fn<(weight: H, bias: Opt<H>, padding: Ints, stride: Ints, dilation: Ints, groups: number, inputSize: Ints, relu: boolean, add: boolean, like: Opt<H> | H[], inPlace?: boolean, winograd?: boolean) => H>('weight', 'bias', 'padding', 'stride', 'dilation', 'groups', 'inputSize', 'relu', 'add', 'like', 'inPlace', 'winograd'),
  dnnlPlanImpl: fn<(plan: H) => string>('plan'),
  dnnlPlanSameLayout: fn<(a: H, b: H) => boolean>('a', 'b'),
  dnnlPlanSameWeight: fn<(a: H, b: H) => boolean>('a', 'b'),
  dnnlConvRun: fn<(plan: H, input: H, other: Opt<H>) => H>('plan', 'input', 'other'),
  dnnlMaxPool: fn<(input: H, kernel: Ints, stride: Ints, padding: Ints) => H>('input', 'kernel', 'stride', 'padding'),
  cpuCacheStats: fn<() => { cachedBytes: number; cachedBlocks: number; liveBlocks: number; hits: number; misses: number; limitBytes: number }>(),
  cpuCacheEmpty: fn<() => void>(),
};

/** The typed native functions, one per row of OPS. */
export type NativeOps = { [K in keyof typeof OPS]: (typeof OPS)[K] extends Op<infer F> ? F : never };

/** The addon: the op table's functions and the dtype codes. */
export interface Native extends NativeOps {
  dtypes: Readonly<Record<string, DTypeCode>>;
}

/**
 * Set (to true) by the `resnet-ts` command before it imports a script for `--help`: the script imports
 * the library, yet answering --help calls nothing native, so a missing addon must not stop it.
 */
const deferSetupError = Symbol.for('resnet-ts.deferSetupError');

/** Stands in for the addon that failed to load: any property is itself, it has no keys, and any call throws `error`. */
function deferred(error: Error): Native {
  const stand: object = new Proxy(() => {}, {
    get: (_, key) => (key === 'dtypes' ? Object.fromEntries(DTYPE_NAMES.map((name, i) => [name, -1 - i])) : stand),
    apply: () => {
      throw error;
    },
    ownKeys: () => [],
  });
  return stand as Native;
}

function load(): Native {
  try {
    const addon = loadAddon<Native>(createRequire(import.meta.url));
    addon.cudaSetErrorClass(CudaOutOfMemoryError);
    return addon;
  } catch (e) {
    if (e instanceof SetupError && (globalThis as Record<symbol, unknown>)[deferSetupError] === true) return deferred(e);
    throw e;
  }
}

/** The loaded addon. */
export const native: Native = load();
