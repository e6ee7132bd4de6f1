// Creating tensors: from JS data, filled, ranges, random; joining; RNG seed and state.
import { native } from './native.ts';
import { Tensor, deviceOf, dtypeOf, type DType, type Device, type Shape } from './tensor.ts';

/** Options shared by the creation functions. */
export interface CreateOptions {
  dtype?: DType;
  device?: Device;
  requiresGrad?: boolean;
}

type Data = ArrayLike<number> | ArrayLike<bigint> | ArrayLike<boolean> | number | boolean | NestedArray;
interface NestedArray extends ReadonlyArray<number | boolean | NestedArray> {}

const arrayFor: Record<DType, (n: ArrayLike<number> | Iterable<number>) => ArrayBufferView> = {
  float32: (a) => Float32Array.from(a as ArrayLike<number>),
  float64: (a) => Float64Array.from(a as ArrayLike<number>),
  float16: (a) => Float32Array.from(a as ArrayLike<number>),
  bfloat16: (a) => Float32Array.from(a as ArrayLike<number>),
  int64: (a) => BigInt64Array.from(Array.from(a as ArrayLike<number>, (v) => BigInt(Math.trunc(Number(v))))),
  int32: (a) => Int32Array.from(a as ArrayLike<number>),
  int16: (a) => Int16Array.from(a as ArrayLike<number>),
  int8: (a) => Int8Array.from(a as ArrayLike<number>),
  uint8: (a) => Uint8Array.from(a as ArrayLike<number>),
  bool: (a) => Uint8Array.from(Array.from(a as ArrayLike<number>, (v) => (v ? 1 : 0))),
};

function typedDtype(v: ArrayBufferView): DType | undefined {
  if (v instanceof Float32Array) return 'float32';
  if (v instanceof Float64Array) return 'float64';
  if (v instanceof Int32Array) return 'int32';
  if (v instanceof Int16Array) return 'int16';
  if (v instanceof Int8Array) return 'int8';
  if (v instanceof BigInt64Array) return 'int64';
  if (v instanceof Uint8Array || v instanceof Uint8ClampedArray) return 'uint8';
  return undefined;
}

function inferShape(data: unknown): number[] {
  const shape: number[] = [];
  let d: unknown = data;
  while (Array.isArray(d)) {
    shape.push(d.length);
    d = d[0];
  }
  return shape;
}

/** A tensor from numbers, nested arrays or a typed array, with an optional shape (default: inferred). */
export function tensor(data: Data, options: CreateOptions & { shape?: Shape } = {}): Tensor {
  const device = deviceOf(options.device);
  let flat: ArrayLike<number> | ArrayBufferView;
  let shape: readonly number[];
  let dtype = options.dtype;
  if (typeof data === 'number' || typeof data === 'boolean') {
    flat = [Number(data)];
    shape = options.shape ?? [];
    dtype ??= typeof data === 'boolean' ? 'bool' : 'float32';
  } else if (ArrayBuffer.isView(data)) {
    flat = data as ArrayBufferView;
    shape = options.shape ?? [(data as unknown as ArrayLike<number>).length];
    dtype ??= typedDtype(data as ArrayBufferView);
    if (!dtype) throw new TypeError('tensor: unsupported typed array');
  } else if (Array.isArray(data)) {
    const inferred = inferShape(data);
    const values = (data as unknown[]).flat(Infinity) as (number | boolean)[];
    for (const v of values) if (typeof v !== 'number' && typeof v !== 'boolean') throw new TypeError(`tensor: data must hold numbers or booleans; got ${typeof v}`);
    flat = values.map(Number);
    shape = options.shape ?? inferred;
    dtype ??= values.length && typeof values[0] === 'boolean' ? 'bool' : 'float32';
  } else {
    throw new TypeError('tensor: data must be a number, an array or a typed array');
  }
  const code = dtypeOf(dtype)!;
  const wantView = dtype === 'float16' || dtype === 'bfloat16' ? 'float32' : dtype;
  const bytes = ArrayBuffer.isView(flat) && typedDtype(flat) === wantView ? flat : arrayFor[dtype](flat as ArrayLike<number>);
  const stored = dtype === 'float16' || dtype === 'bfloat16' ? dtypeOf('float32')! : code;
  let h = native.fromBytes(bytes, shape, stored);
  if (stored !== code || (device && device !== 'cpu')) {
    const moved = native.to(h, device, code, false, false);
    native.dispose(h);
    h = moved;
  }
  const t = new Tensor(h);
  if (options.requiresGrad) t.requiresGrad_(true);
  return t;
}

function finish(h: ReturnType<typeof native.zeros>, o: CreateOptions): Tensor {
  const t = new Tensor(h);
  if (o.requiresGrad) t.requiresGrad_(true);
  return t;
}

/** A tensor of zeros. */
export const zeros = (shape: Shape, o: CreateOptions = {}): Tensor => finish(native.zeros(shape, dtypeOf(o.dtype), deviceOf(o.device)), o);
/** A tensor of ones. */
export const ones = (shape: Shape, o: CreateOptions = {}): Tensor => finish(native.ones(shape, dtypeOf(o.dtype), deviceOf(o.device)), o);
/** An uninitialised tensor. */
export const empty = (shape: Shape, o: CreateOptions = {}): Tensor => finish(native.empty(shape, dtypeOf(o.dtype), deviceOf(o.device)), o);
/** A tensor filled with value. */
export const full = (shape: Shape, value: number | boolean, o: CreateOptions = {}): Tensor =>
  finish(native.full(shape, value, dtypeOf(o.dtype), deviceOf(o.device)), o);
/** Uniform samples in [0, 1). */
export const rand = (shape: Shape, o: CreateOptions = {}): Tensor => finish(native.rand(shape, dtypeOf(o.dtype), deviceOf(o.device)), o);
/** Standard normal samples. */
export const randn = (shape: Shape, o: CreateOptions = {}): Tensor => finish(native.randn(shape, dtypeOf(o.dtype), deviceOf(o.device)), o);
/** Integers in [low, high). */
export const randint = (low: number, high: number, shape: Shape, o: CreateOptions = {}): Tensor =>
  finish(native.randint(low, high, shape, dtypeOf(o.dtype), deviceOf(o.device)), o);
/** A random permutation of 0..n-1. */
export const randperm = (n: number, o: CreateOptions = {}): Tensor => finish(native.randperm(n, dtypeOf(o.dtype), deviceOf(o.device)), o);
/** zeros with the shape, dtype and device of t. */
export const zerosLike = (t: Tensor): Tensor => new Tensor(native.zerosLike(t.h));
/** ones with the shape, dtype and device of t. */
export const onesLike = (t: Tensor): Tensor => new Tensor(native.onesLike(t.h));

/** arange(end) or arange(start, end, step), int64 unless a dtype is given. */
export function arange(start: number, end?: number, step = 1, o: CreateOptions = {}): Tensor {
  if (end === undefined) [start, end] = [0, start];
  return finish(native.arange(start, end, step, dtypeOf(o.dtype), deviceOf(o.device)), o);
}

/** steps evenly spaced values from start to end inclusive. */
export const linspace = (start: number, end: number, steps: number, o: CreateOptions = {}): Tensor =>
  finish(native.linspace(start, end, steps, dtypeOf(o.dtype), deviceOf(o.device)), o);

/** Concatenates along an existing dimension. */
export const cat = (ts: readonly Tensor[], dim = 0): Tensor => new Tensor(native.cat(handles(ts, 'cat'), dim));
/** Stacks along a new dimension. */
export const stack = (ts: readonly Tensor[], dim = 0): Tensor => new Tensor(native.stack(handles(ts, 'stack'), dim));
/** Elementwise choice: a where condition holds, else b. */
export const where = (condition: Tensor, a: Tensor, b: Tensor): Tensor => new Tensor(native.where(condition.h, a.h, b.h));

/** @internal Handles of a tensor array, checked. */
export function handles(ts: readonly Tensor[], fn: string) {
  if (!Array.isArray(ts)) throw new TypeError(`${fn}: expected an array of Tensors`);
  return ts.map((t) => {
    if (!(t instanceof Tensor)) throw new TypeError(`${fn}: expected an array of Tensors`);
    return t.h;
  });
}

/** Seeds every generator (CPU and CUDA), as torch.manual_seed. */
export function manualSeed(seed: number): void {
  native.manualSeed(seed);
}

/** The CPU generator's state (a uint8 tensor), for checkpoints. */
export function getRngState(): Tensor {
  return new Tensor(native.rngState());
}

/** Restores a state from getRngState(). */
export function setRngState(state: Tensor): void {
  native.setRngState(state.h);
}
