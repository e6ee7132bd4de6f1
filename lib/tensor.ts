// Tensor, DType, Device; memory scopes (tidy/keep/dispose); grad and autocast modes.
import { native, type Handle } from './native.ts';

/** Element types a Tensor can hold. */
export type DType = 'float32' | 'float64' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';
/** Where a Tensor lives. */
export type Device = 'cpu' | 'cuda' | `cuda:${number}`;
/** Sizes of each dimension. */
export type Shape = readonly number[];
/** A tensor or a number where an op takes either. */
export type TensorLike = Tensor | number | boolean;

const dtypeCode = native.dtypes as Record<DType, number>;
const dtypeName = new Map<number, DType>(Object.entries(dtypeCode).map(([k, v]) => [v, k as DType]));
const DTYPES = new Set(Object.keys(dtypeCode));

/** The native dtype code of a DType name; a TypeError names a wrong one. */
export function dtypeOf(d: DType | undefined | null, what = 'dtype'): number | undefined {
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

  // ---- views and layout ----
  view(...shape: number[] | [Shape]): Tensor { return new Tensor(native.view(this.h, flatShape(shape))); }
  reshape(...shape: number[] | [Shape]): Tensor { return new Tensor(native.reshape(this.h, flatShape(shape))); }
  permute(...dims: number[] | [Shape]): Tensor { return new Tensor(native.permute(this.h, flatShape(dims))); }
  transpose(d0: number, d1: number): Tensor { return new Tensor(native.transpose(this.h, d0, d1)); }
  flatten(startDim = 0, endDim = -1): Tensor { return new Tensor(native.flatten(this.h, startDim, endDim)); }
  squeeze(dim?: number): Tensor { return new Tensor(native.squeeze(this.h, dim)); }
  unsqueeze(dim: number): Tensor { return new Tensor(native.unsqueeze(this.h, dim)); }
  narrow(dim: number, start: number, length: number): Tensor { return new Tensor(native.narrow(this.h, dim, start, length)); }
  /** Python's t[start:end:step] along dim. */
  slice(dim: number, start?: number | null, end?: number | null, step = 1): Tensor {
    return new Tensor(native.slice(this.h, dim, start, end, step));
  }
  select(dim: number, index: number): Tensor { return new Tensor(native.select(this.h, dim, index)); }
  indexSelect(dim: number, index: Tensor): Tensor { return new Tensor(native.indexSelect(this.h, dim, index.h)); }
  gather(dim: number, index: Tensor): Tensor { return new Tensor(native.gather(this.h, dim, index.h)); }
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
  pinMemory(): Tensor { return new Tensor(native.pinMemory(this.h)); }
  clone(): Tensor { return new Tensor(native.clone(this.h)); }
  detach(): Tensor { return new Tensor(native.detach(this.h)); }

  // ---- math (a Tensor or a number as the other operand) ----
  add(o: TensorLike, alpha?: number): Tensor { return new Tensor(native.add(this.h, other(o), alpha)); }
  sub(o: TensorLike, alpha?: number): Tensor { return new Tensor(native.sub(this.h, other(o), alpha)); }
  mul(o: TensorLike): Tensor { return new Tensor(native.mul(this.h, other(o))); }
  div(o: TensorLike): Tensor { return new Tensor(native.div(this.h, other(o))); }
  add_(o: TensorLike, alpha?: number): this { this.drop(native.add_(this.h, other(o), alpha)); return this; }
  sub_(o: TensorLike, alpha?: number): this { this.drop(native.sub_(this.h, other(o), alpha)); return this; }
  mul_(o: TensorLike): this { this.drop(native.mul_(this.h, other(o))); return this; }
  div_(o: TensorLike): this { this.drop(native.div_(this.h, other(o))); return this; }
  pow(o: TensorLike): Tensor { return new Tensor(native.pow(this.h, other(o))); }
  eq(o: TensorLike): Tensor { return new Tensor(native.eq(this.h, other(o))); }
  ne(o: TensorLike): Tensor { return new Tensor(native.ne(this.h, other(o))); }
  gt(o: TensorLike): Tensor { return new Tensor(native.gt(this.h, other(o))); }
  lt(o: TensorLike): Tensor { return new Tensor(native.lt(this.h, other(o))); }
  ge(o: TensorLike): Tensor { return new Tensor(native.ge(this.h, other(o))); }
  le(o: TensorLike): Tensor { return new Tensor(native.le(this.h, other(o))); }
  maximum(o: TensorLike): Tensor { return new Tensor(native.maximum(this.h, other(o))); }
  minimum(o: TensorLike): Tensor { return new Tensor(native.minimum(this.h, other(o))); }
  neg(): Tensor { return new Tensor(native.neg(this.h)); }
  abs(): Tensor { return new Tensor(native.abs(this.h)); }
  exp(): Tensor { return new Tensor(native.exp(this.h)); }
  log(): Tensor { return new Tensor(native.log(this.h)); }
  sqrt(): Tensor { return new Tensor(native.sqrt(this.h)); }
  rsqrt(): Tensor { return new Tensor(native.rsqrt(this.h)); }
  relu(): Tensor { return new Tensor(native.relu(this.h)); }
  relu_(): this { this.drop(native.relu_(this.h)); return this; }
  sigmoid(): Tensor { return new Tensor(native.sigmoid(this.h)); }
  tanh(): Tensor { return new Tensor(native.tanh(this.h)); }
  sign(): Tensor { return new Tensor(native.sign(this.h)); }
  floor(): Tensor { return new Tensor(native.floor(this.h)); }
  round(): Tensor { return new Tensor(native.round(this.h)); }
  isfinite(): Tensor { return new Tensor(native.isfinite(this.h)); }
  logicalNot(): Tensor { return new Tensor(native.logicalNot(this.h)); }
  clamp(min?: number | null, max?: number | null): Tensor { return new Tensor(native.clamp(this.h, min, max)); }
  maskedFill(mask: Tensor, value: number | boolean): Tensor { return new Tensor(native.maskedFill(this.h, mask.h, value)); }
  matmul(o: Tensor): Tensor { return new Tensor(native.matmul(this.h, o.h)); }
  fill_(v: number | boolean): this { this.drop(native.fill_(this.h, v)); return this; }
  zero_(): this { this.drop(native.zero_(this.h)); return this; }
  normal_(mean = 0, std = 1): this { this.drop(native.normal_(this.h, mean, std)); return this; }
  uniform_(from = 0, to = 1): this { this.drop(native.uniform_(this.h, from, to)); return this; }
  copy_(src: Tensor, nonBlocking = false): this { this.drop(native.copy_(this.h, src.h, nonBlocking)); return this; }

  // ---- reductions (dim omitted: over everything) ----
  sum(dim?: number | Shape | null, keepdim = false, dtype?: DType): Tensor { return new Tensor(native.sum(this.h, dim, keepdim, dtypeOf(dtype))); }
  mean(dim?: number | Shape | null, keepdim = false, dtype?: DType): Tensor { return new Tensor(native.mean(this.h, dim, keepdim, dtypeOf(dtype))); }
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
  argmax(dim?: number, keepdim = false): Tensor { return new Tensor(native.argmax(this.h, dim, keepdim)); }
  argmin(dim?: number, keepdim = false): Tensor { return new Tensor(native.argmin(this.h, dim, keepdim)); }
  topk(k: number, dim = -1, largest = true, sorted = true): { values: Tensor; indices: Tensor } {
    const [v, i] = native.topk(this.h, k, dim, largest, sorted);
    return { values: new Tensor(v), indices: new Tensor(i) };
  }
  sort(dim = -1, descending = false): { values: Tensor; indices: Tensor } {
    const [v, i] = native.sort(this.h, dim, descending);
    return { values: new Tensor(v), indices: new Tensor(i) };
  }
  norm(p = 2): Tensor { return new Tensor(native.norm(this.h, p)); }
  allclose(o: Tensor, rtol = 1e-5, atol = 1e-8): boolean { return native.allclose(this.h, o.h, rtol, atol); }
  equal(o: Tensor): boolean { return native.equal(this.h, o.h); }

  /** @internal In-place ops hand back a second handle on this tensor; release it so it cannot leak. */
  private drop(h: Handle | undefined): void {
    if (h && h !== this.h) native.dispose(h);
  }

  // ---- autograd ----
  requiresGrad_(on = true): this { this.drop(native.requiresGrad_(this.h, on)); return this; }
  /** Accumulates gradients into the leaves; gradient defaults to ones for a scalar. */
  backward(gradient?: Tensor, { retainGraph = false } = {}): void { native.backward(this.h, gradient?.h, retainGraph); }
}

function other(o: TensorLike): Handle | number | boolean {
  if (o instanceof Tensor) return o.h;
  if (typeof o === 'number' || typeof o === 'boolean') return o;
  throw new TypeError(`expected a Tensor or a number; got ${o === null ? 'null' : typeof o}`);
}

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
