// Tensor, DType, Device; memory scopes (tidy/keep/dispose); grad and autocast modes.
import { DTYPE_NAMES, OPS, native, type DTypeCode, type Handle, type NativeOps, type Op, type ParamKind, type Signature } from './native.ts';

/** Element types a Tensor can hold. */
export type DType = (typeof DTYPE_NAMES)[number];
/** Where a Tensor lives. */
export type Device = 'cpu' | 'cuda' | `cuda:${number}`;
/** Sizes of each dimension. */
export type Shape = readonly number[];
/** A tensor or a number where an op takes either. */
export type TensorLike = Tensor | number | boolean;

const dtypeCode = native.dtypes as Readonly<Record<DType, DTypeCode>>;
const dtypeName = new Map<number, DType>(Object.entries(dtypeCode).map(([k, v]) => [v, k as DType]));
const DTYPES = new Set(Object.keys(dtypeCode));

/** The native dtype code of a DType name; a TypeError names a wrong one. */
export function dtypeOf(d: DType | undefined | null, what = 'dtype'): DTypeCode | undefined {
  if (d === undefined || d === null) return undefined;
  if (typeof d !== 'string' || !DTYPES.has(d)) throw new TypeError(`${what} must be one of ${[...DTYPES].join(', ')}; got ${String(d)}`);
  return dtypeCode[d];
}

/** Whether d names a device ('cpu', 'cuda', 'cuda:N'). */
export function isDevice(d: unknown): d is Device {
  return typeof d === 'string' && /^(cpu|cuda(:\d+)?)$/.test(d);
}

/** Checks a device string ('cpu', 'cuda', 'cuda:N'). */
export function deviceOf(d: Device | string | undefined | null): Device | undefined {
  if (d === undefined || d === null) return undefined;
  if (!isDevice(d)) throw new TypeError(`device must be 'cpu', 'cuda' or 'cuda:N'; got ${String(d)}`);
  return d as Device;
}

// ---- memory scopes ----

type Scope = Tensor[];
const scopes: Scope[] = [];
const KEPT = Symbol('kept');
const FREED = Symbol('freed');
// The GC backstop: frees the tensor of a Tensor that was forgotten. Disposing an already disposed
// handle is a no-op, so dispose() need not unregister.
const forgotten = new FinalizationRegistry<Handle>((h) => {
  // A cleanup callback that throws would be an uncaught exception; a forged handle is ignored.
  if (native.isHandle(h)) native.dispose(h);
});
// Registering costs more than a tiny op, and most tensors are disposed (by tidy or dispose) soon
// after they are made. So new tensors wait here, strongly held (none can be collected
// unregistered), and those still alive are registered every 256 creations or on the next turn
// of the event loop.
const nursery: Tensor[] = [];
let flushQueued = false;
function registerNursery(): void {
  for (const t of nursery) if (!t[FREED]) forgotten.register(t, t.h);
  nursery.length = 0;
}
function flushLater(): void {
  flushQueued = false;
  registerNursery();
}

/** A handle on one libtorch tensor. Free it with dispose(), or create it inside tidy(). */
export class Tensor {
  /** @internal the native handle; ops read it directly. */
  readonly h: Handle;
  /** @internal */
  declare [KEPT]?: boolean;
  /** @internal set by dispose(); saves registering a freed tensor with the GC backstop */
  declare [FREED]?: boolean;

  /** @internal Wraps a native handle; use the creation functions instead. */
  constructor(h: Handle) {
    if (typeof h !== 'bigint') throw new TypeError('Tensor: the constructor takes a native handle; use tensor(), zeros(), ... to make tensors');
    this.h = h;
    if (nursery.push(this) >= 256) registerNursery();
    else if (!flushQueued) {
      flushQueued = true;
      setImmediate(flushLater);
    }
    const s = scopes.length;
    if (s) scopes[s - 1]!.push(this);
  }

  // ---- properties ----
  get shape(): number[] { return native.shape(this.h); }
  get dtype(): DType { return dtypeName.get(native.dtype(this.h))!; }
  get device(): Device { return native.device(this.h) as Device; }
  get numel(): number { return native.numel(this.h); }
  get ndim(): number { return native.dim(this.h); }
  get requiresGrad(): boolean { return native.requiresGrad(this.h); }
  get isLeaf(): boolean { return native.isLeaf(this.h); }
  get isContiguous(): boolean { return native.isContiguous(this.h); }
  get isChannelsLast(): boolean { return native.isContiguous(this.h, true); }
  get isDisposed(): boolean { return native.isDisposed(this.h); }
  get strides(): number[] { return native.strides(this.h); }
  /** The accumulated gradient, or null. A new handle on the same memory each call. */
  get grad(): Tensor | null { const g = native.grad(this.h); return g ? new Tensor(g) : null; }
  set grad(g: Tensor | null) { native.setGrad(this.h, g ? g.h : null); }

  /** A copy of the values, as a typed array of the dtype (float16/bfloat16 as Float32Array, bool as Uint8Array). */
  toArray(): Float32Array | Float64Array | Int32Array | Int16Array | Int8Array | Uint8Array | BigInt64Array {
    return native.toArray(this.h) as Float32Array;
  }
  /** The values as nested JS arrays of numbers (int64 as numbers). */
  toList(): unknown {
    const flat = Array.from(this.toArray() as ArrayLike<number | bigint>, (v) => (typeof v === 'bigint' ? Number(v) : v));
    const shape = this.shape;
    const build = (dim: number, off: number): unknown => {
      if (dim === shape.length) return flat[off];
      const stride = shape.slice(dim + 1).reduce((a, b) => a * b, 1);
      return Array.from({ length: shape[dim]! }, (_, i) => build(dim + 1, off + i * stride));
    };
    return build(0, 0);
  }
  /** The single value of a one-element tensor. */
  item(): number { return native.item(this.h) as number; }
  /** Raw bytes of a contiguous CPU copy in this dtype. */
  toBytes(): Uint8Array { return native.toBytes(this.h); }
  /** Frees the memory now; any later use throws. */
  dispose(): void { this[FREED] = true; native.dispose(this.h); }
  [Symbol.dispose](): void { this.dispose(); }
  toString(): string { return formatTensor(this); }
  [Symbol.for('nodejs.util.inspect.custom')](): string { return this.isDisposed ? 'tensor(<disposed>)' : formatTensor(this); }

  // ---- the methods that take more than the op table's arguments; the rest come from OPS ----
  view(...shape: number[] | [Shape]): Tensor { return new Tensor(native.view(this.h, flatShape(shape))); }
  reshape(...shape: number[] | [Shape]): Tensor { return new Tensor(native.reshape(this.h, flatShape(shape))); }
  permute(...dims: number[] | [Shape]): Tensor { return new Tensor(native.permute(this.h, flatShape(dims))); }
  expand(...shape: number[] | [Shape]): Tensor { return new Tensor(native.expand(this.h, flatShape(shape))); }
  contiguous(memoryFormat: 'contiguous' | 'channelsLast' = 'contiguous'): Tensor {
    return new Tensor(native.contiguous(this.h, memoryFormat === 'channelsLast'));
  }
  /** Moves to a device and/or casts: to('cuda'), to('float16'), to({ device, dtype, nonBlocking, copy }). */
  to(target: Device | DType | { device?: Device; dtype?: DType; nonBlocking?: boolean; copy?: boolean }, options: { nonBlocking?: boolean; copy?: boolean } = {}): Tensor {
    let device: Device | undefined;
    let dtype: DType | undefined;
    let o = options;
    if (typeof target === 'string') {
      if (DTYPES.has(target)) dtype = target as DType;
      else device = deviceOf(target);
    } else if (target && typeof target === 'object') {
      device = deviceOf(target.device);
      dtype = target.dtype;
      o = { ...target, ...options };
    } else {
      throw new TypeError(`to: expected a device, a dtype or { device, dtype }; got ${String(target)}`);
    }
    return new Tensor(native.to(this.h, device, dtypeOf(dtype), o.nonBlocking ?? false, o.copy ?? false));
  }
  cpu(): Tensor { return this.to('cpu'); }
  cuda(index = 0): Tensor { return this.to(`cuda:${index}`); }
  float(): Tensor { return this.to('float32'); }

  /** Variance with Bessel's correction by default (correction=1), as torch.var. */
  var(dim?: number | Shape | null, { correction = 1, keepdim = false } = {}): Tensor { return new Tensor(native.var(this.h, dim, correction, keepdim)); }
  std(dim?: number | Shape | null, { correction = 1, keepdim = false } = {}): Tensor { return new Tensor(native.std(this.h, dim, correction, keepdim)); }
  /** max() over everything, or max(dim) → { values, indices }. */
  max(): Tensor;
  max(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
  max(dim?: number, keepdim = false): Tensor | { values: Tensor; indices: Tensor } {
    if (dim === undefined) return new Tensor(native.amax(this.h, null, false));
    const [v, i] = native.maxDim(this.h, dim, keepdim);
    return { values: new Tensor(v), indices: new Tensor(i) };
  }
  min(): Tensor;
  min(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
  min(dim?: number, keepdim = false): Tensor | { values: Tensor; indices: Tensor } {
    if (dim === undefined) return new Tensor(native.amin(this.h, null, false));
    const [v, i] = native.minDim(this.h, dim, keepdim);
    return { values: new Tensor(v), indices: new Tensor(i) };
  }

  /** Accumulates gradients into the leaves; gradient defaults to ones for a scalar. */
  backward(gradient?: Tensor, { retainGraph = false } = {}): void { native.backward(this.h, gradient?.h, retainGraph); }
}

// ---- the op table's method rows, installed on Tensor ----

type Tail<P> = P extends readonly [unknown, ...infer R] ? R : never;
/** A native parameter or result type as the Tensor side sees it. */
type Outer<T> = T extends Handle ? Tensor : T extends readonly Handle[] ? readonly Tensor[] : T;
type OuterParam<T> = ParamKind<T> extends 'like' ? TensorLike : ParamKind<T> extends 'dtype' ? DType | null | undefined : Outer<T>;
type OuterParams<P extends readonly unknown[]> = { [I in keyof P]: OuterParam<P[I]> };
type MethodOf<K, F> = F extends (...a: infer P) => infer R
  ? K extends `${string}_`
    ? <T extends Tensor>(this: T, ...args: OuterParams<Tail<P>>) => T
    : (...args: OuterParams<Tail<P>>) => R extends [Handle, Handle] ? { values: Tensor; indices: Tensor } : Outer<R>
  : never;
type MethodRows = { [K in keyof typeof OPS as (typeof OPS)[K] extends Op<Signature, true> ? K : never]: (typeof OPS)[K] };
/** The Tensor methods the op table declares: the native op with the receiver as its first argument. */
export type TensorMethods = { [K in keyof MethodRows]: MethodOf<K, NativeOps[K]> };
/** The op table's function `name` over Tensors (Tensor arguments and lists as handles, handle results as Tensors). */
export type TensorFunction<F> = F extends (...a: infer P) => infer R ? (...args: OuterParams<P>) => R extends readonly Handle[] ? Tensor[] : Outer<R> : never;
export interface Tensor extends TensorMethods {}

function other(o: unknown): unknown {
  if (o instanceof Tensor) return o.h;
  if (typeof o === 'number' || typeof o === 'boolean') return o;
  throw new TypeError(`expected a Tensor or a number; got ${o === null ? 'null' : typeof o}`);
}
function plain(v: unknown): unknown {
  if (v instanceof Tensor) return v.h;
  return Array.isArray(v) && v[0] instanceof Tensor ? v.map((t) => (t instanceof Tensor ? t.h : t)) : v;
}
const CONVERT: Record<string, (v: unknown) => unknown> = { like: other, dtype: (v) => dtypeOf(v as DType), plain };
const converters = (op: Op): ((v: unknown) => unknown)[] => op.args.map((a) => CONVERT[a.split(':')[1] ?? 'plain']!);
const tensorsOf = (r: unknown): unknown => (typeof r === 'bigint' ? new Tensor(r as unknown as Handle) : r);

/** @internal The op table's function `name` over Tensors. */
export function tensorFunction<K extends keyof NativeOps>(name: K): TensorFunction<NativeOps[K]> {
  const f = native[name] as (...a: unknown[]) => unknown;
  const conv = converters(OPS[name]);
  return ((...args: unknown[]) => {
    for (let i = 0; i < args.length && i < conv.length; i++) args[i] = conv[i]!(args[i]);
    const r = f(...args);
    return Array.isArray(r) ? r.map(tensorsOf) : tensorsOf(r);
  }) as TensorFunction<NativeOps[K]>;
}

const methodResult = (r: unknown): unknown =>
  typeof r === 'bigint' ? new Tensor(r as unknown as Handle) : Array.isArray(r) ? { values: new Tensor(r[0]), indices: new Tensor(r[1]) } : r;

// One closure per arity rather than rest parameters: a method call then costs what a hand-written one does.
function installMethod(name: string, op: Op): void {
  type Fn = (...a: unknown[]) => unknown;
  const f = native[name as keyof NativeOps] as Fn;
  const conv = converters(op).slice(1);
  const [c0, c1, c2] = conv as [Fn, Fn, Fn];
  const convert = (args: unknown[]): unknown[] => args.map((v, i) => (i < conv.length ? conv[i]!(v) : v));
  // In place (torch's trailing underscore): the receiver is the result.
  const value = name.endsWith('_')
    ? [
        function (this: Tensor) { f(this.h); return this; },
        function (this: Tensor, a: unknown) { f(this.h, c0(a)); return this; },
        function (this: Tensor, a: unknown, b: unknown) { f(this.h, c0(a), c1(b)); return this; },
        function (this: Tensor, a: unknown, b: unknown, c: unknown) { f(this.h, c0(a), c1(b), c2(c)); return this; },
      ][conv.length] ?? function (this: Tensor, ...a: unknown[]) { f(this.h, ...convert(a)); return this; }
    : [
        function (this: Tensor) { return methodResult(f(this.h)); },
        function (this: Tensor, a: unknown) { return methodResult(f(this.h, c0(a))); },
        function (this: Tensor, a: unknown, b: unknown) { return methodResult(f(this.h, c0(a), c1(b))); },
        function (this: Tensor, a: unknown, b: unknown, c: unknown) { return methodResult(f(this.h, c0(a), c1(b), c2(c))); },
      ][conv.length] ?? function (this: Tensor, ...a: unknown[]) { return methodResult(f(this.h, ...convert(a))); };
  Object.defineProperty(value, 'name', { value: name });
  Object.defineProperty(Tensor.prototype, name, { value, writable: true, configurable: true });
}
for (const [name, op] of Object.entries(OPS) as [string, Op][]) if (op.method) installMethod(name, op);

function flatShape(args: number[] | [Shape]): readonly number[] {
  return args.length === 1 && Array.isArray(args[0]) ? (args[0] as Shape) : (args as number[]);
}

// ---- scopes ----

function collect(v: unknown, into: Set<Tensor>, depth = 0): void {
  if (v instanceof Tensor) into.add(v);
  else if (depth < 4 && Array.isArray(v)) for (const x of v) collect(x, into, depth + 1);
  else if (depth < 4 && v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    for (const x of Object.values(v)) collect(x, into, depth + 1);
  }
}

/**
 * Runs fn and disposes every tensor created inside it, except those it returns (in an array or
 * plain object too) and those passed to keep(). Returned tensors pass to the enclosing scope.
 */
export function tidy<T>(fn: () => T): T {
  if (typeof fn !== 'function') throw new TypeError('tidy: argument must be a function');
  const scope: Scope = [];
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of scope) if (!t[KEPT]) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) throw new TypeError('tidy: fn must be synchronous (it returned a Promise)');
  const out = new Set<Tensor>();
  collect(result, out);
  const parent = scopes[scopes.length - 1];
  for (const t of scope) {
    if (out.has(t)) parent?.push(t);
    else if (!t[KEPT]) t.dispose();
  }
  return result;
}

/** Exempts a tensor from every enclosing tidy(); returns it. */
export function keep<T extends Tensor>(t: T): T {
  if (!(t instanceof Tensor)) throw new TypeError('keep: argument must be a Tensor');
  t[KEPT] = true;
  return t;
}

/** Disposes a tensor, or every tensor in an array or plain object. */
export function dispose(v: unknown): void {
  const all = new Set<Tensor>();
  collect(v, all);
  for (const t of all) t.dispose();
}

/** Live native tensor handles and the bytes of the storages they hold. */
export function memory(): { tensors: number; storages: number; bytes: number } {
  return native.memory();
}

// ---- modes ----

/** Runs fn with gradient recording off (torch.no_grad). */
export function noGrad<T>(fn: () => T): T {
  const prev = native.setGradEnabled(false);
  try {
    return fn();
  } finally {
    native.setGradEnabled(prev);
  }
}

/** Runs fn with gradient recording on (torch.enable_grad). */
export function enableGrad<T>(fn: () => T): T {
  const prev = native.setGradEnabled(true);
  try {
    return fn();
  } finally {
    native.setGradEnabled(prev);
  }
}

/** Whether gradients are being recorded. */
export function isGradEnabled(): boolean {
  return native.isGradEnabled();
}

/** Runs fn under mixed precision (torch.autocast): bf16 by default, on 'cuda' or 'cpu'. */
export function autocast<T>(fn: () => T, { dtype = 'bfloat16', device = 'cuda', enabled = true }: { dtype?: 'bfloat16' | 'float16'; device?: 'cuda' | 'cpu'; enabled?: boolean } = {}): T {
  const code = dtypeOf(dtype)!;
  const [wasOn, wasDtype] = native.autocastState(device);
  native.setAutocast(device, enabled, code, true);
  try {
    return fn();
  } finally {
    native.setAutocast(device, wasOn, wasDtype, false);
  }
}

// ---- printing like PyTorch's repr ----

function formatTensor(t: Tensor): string {
  const shape = t.shape;
  const dtype = t.dtype;
  const numel = shape.reduce((a, b) => a * b, 1);
  const isFloat = dtype.startsWith('float') || dtype === 'bfloat16';
  const summarize = numel > 1000;
  const edge = 3;
  const values = Array.from(t.toArray() as ArrayLike<number | bigint>, (v) => (typeof v === 'bigint' ? Number(v) : v));
  // One notation for all elements, chosen as torch/_tensor_str.py's _Formatter does.
  const mags = values.filter((v) => Number.isFinite(v) && v !== 0).map(Math.abs);
  // A loop, not Math.min(...mags): spreading ~125k arguments overflows the call stack.
  let lo = Infinity;
  let hi = -Infinity;
  for (const m of mags) {
    if (m < lo) lo = m;
    if (m > hi) hi = m;
  }
  const allInts = values.every((v) => !Number.isFinite(v) || Number.isInteger(v));
  const sci = mags.length > 0 && (hi / lo > 1000 || hi > 1e8 || (!allInts && lo < 1e-4));
  const fmt = (v: number): string => {
    if (dtype === 'bool') return v ? 'True' : 'False';
    if (!isFloat) return String(v);
    if (!Number.isFinite(v)) return Number.isNaN(v) ? 'nan' : v > 0 ? 'inf' : '-inf';
    if (sci) return v.toExponential(4).replace(/e([+-])(\d)$/, 'e$10$2');
    return allInts ? `${v.toFixed(0)}.` : v.toFixed(4);
  };
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  const cells: string[] = [];
  const visit = (dim: number, off: number): unknown => {
    if (dim === shape.length) { const s = fmt(values[off]!); cells.push(s); return s; }
    const n = shape[dim]!;
    const idx = summarize && n > 2 * edge ? [...Array(edge).keys(), -1, ...Array.from({ length: edge }, (_, i) => n - edge + i)] : [...Array(n).keys()];
    return idx.map((i) => (i < 0 ? '...' : visit(dim + 1, off + i * strides[dim]!)));
  };
  const tree = visit(0, 0);
  const width = Math.max(1, ...cells.map((c) => c.length));
  const indent = 'tensor('.length;
  const render = (node: unknown, dim: number): string => {
    if (!Array.isArray(node)) return (node as string).padStart(width);
    const sep = dim === shape.length - 1 ? ', ' : ',' + '\n'.repeat(Math.max(1, shape.length - dim - 1)) + ' '.repeat(indent + dim + 1);
    return '[' + node.map((x) => (x === '...' ? '...' : render(x, dim + 1))).join(sep) + ']';
  };
  const body = shape.length === 0 ? fmt(values[0]!) : render(tree, 0);
  const extras: string[] = [];
  if (t.device !== 'cpu') extras.push(`device='${t.device}'`);
  if (dtype !== 'float32' && dtype !== 'int64' && dtype !== 'bool') extras.push(`dtype=torch.${dtype}`);
  if (numel === 0 && shape.length !== 1) extras.unshift(`size=(${shape.join(', ')})`);
  if (t.requiresGrad) extras.push('requires_grad=True');
  return `tensor(${body}${extras.length ? ', ' + extras.join(', ') : ''})`;
}
