// A Module tree as a structured-cloneable description (for postMessage) and its rebuild in a Worker.
// Tensors are not in the description: they are listed apart, parked with native.shareTensors, and the
// Worker adopts the same storages; the description names them by position. Shared references and
// cycles survive because postMessage keeps them and both walks memoize by object identity.
import { keep, Tensor } from '../tensor.ts';
import { Module } from '../nn/module.ts';
import { classByKey, classEntry } from './session-classes.ts';

/** One value of the tree: a primitive or a tagged node. */
type Desc = null | undefined | boolean | number | string | bigint | Node;
type Node =
  | { $: 'module'; key: string; fields: Record<string, Desc> }
  | { $: 'tensor'; index: number }
  | { $: 'array'; items: Desc[] }
  | { $: 'object'; fields: Record<string, Desc> }
  | { $: 'map'; entries: [Desc, Desc][] }
  | { $: 'set'; items: Desc[] }
  | { $: 'clone'; value: unknown };

/** What a Worker needs to rebuild a model: the tree, its tensors in index order, and the files to import. */
export interface Described {
  root: Desc;
  tensors: Tensor[];
  urls: string[];
}

// Leaves that postMessage copies (or shares, for SharedArrayBuffer) as they are.
const cloneable = (v: object): boolean => ArrayBuffer.isView(v) || v instanceof ArrayBuffer ||
  (typeof SharedArrayBuffer !== 'undefined' && v instanceof SharedArrayBuffer) || v instanceof Date || v instanceof RegExp;

/** Describes model for describe()'s receiver; a value that cannot be moved is an Error naming its path. */
export function describe(model: Module): Described {
  const tensors: Tensor[] = [];
  const urls = new Set<string>();
  const memo = new Map<object, Node>();
  const walk = (v: unknown, path: string): Desc => {
    if (v === null || v === undefined || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string' || typeof v === 'bigint') return v;
    if (typeof v !== 'object') throw new Error(`inference.session: ${path} is a ${typeof v}, which cannot be moved to a Worker (keep functions off Module fields)`);
    const seen = memo.get(v);
    if (seen) return seen;
    let node: Node;
    if (v instanceof Tensor) {
      if (v.isDisposed) throw new Error(`inference.session: ${path} is a disposed Tensor`);
      node = { $: 'tensor', index: tensors.push(v) - 1 };
      memo.set(v, node);
    } else if (v instanceof Module) {
      const entry = classEntry(v, path);
      urls.add(entry.url);
      const fields: Record<string, Desc> = {};
      node = { $: 'module', key: entry.key, fields };
      memo.set(v, node);
      for (const [k, d] of Object.entries(Object.getOwnPropertyDescriptors(v))) {
        if (!('value' in d)) throw new Error(`inference.session: ${path}.${k} is an accessor property; sessions rebuild data fields only`);
        fields[k] = walk(d.value, `${path}.${k}`);
      }
    } else if (Array.isArray(v)) {
      const items: Desc[] = [];
      node = { $: 'array', items };
      memo.set(v, node);
      v.forEach((x, i) => items.push(walk(x, `${path}[${i}]`)));
    } else if (v instanceof Map) {
      const entries: [Desc, Desc][] = [];
      node = { $: 'map', entries };
      memo.set(v, node);
      for (const [k, x] of v) entries.push([walk(k, `${path} key`), walk(x, `${path}.get(${String(k)})`)]);
    } else if (v instanceof Set) {
      const items: Desc[] = [];
      node = { $: 'set', items };
      memo.set(v, node);
      for (const x of v) items.push(walk(x, `${path} item`));
    } else if (cloneable(v)) {
      node = { $: 'clone', value: v };
      memo.set(v, node);
    } else {
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) {
        throw new Error(`inference.session: ${path} is a ${proto?.constructor?.name ?? 'class instance'}; Module fields may hold plain data, Tensors and Modules`);
      }
      const fields: Record<string, Desc> = {};
      node = { $: 'object', fields };
      memo.set(v, node);
      for (const [k, x] of Object.entries(v)) fields[k] = walk(x, `${path}.${k}`);
    }
    return node;
  };
  const root = walk(model, model.constructor.name);
  return { root, tensors, urls: [...urls] };
}

/** Rebuilds a described tree around adopted tensors (kept, so no tidy() sweeps them); no subclass constructor runs. */
export function rebuild(root: Desc, tensors: readonly Tensor[]): Module {
  const memo = new Map<Node, unknown>();
  const build = (d: Desc): unknown => {
    if (d === null || typeof d !== 'object') return d;
    const done = memo.get(d);
    if (done !== undefined) return done;
    switch (d.$) {
      case 'tensor': {
        const t = tensors[d.index];
        if (!t) throw new Error(`inference session worker: tensor ${d.index} is missing`);
        memo.set(d, keep(t));
        return t;
      }
      case 'module': {
        // Module's own constructor runs (with the class as new.target, so its fields, #private ones
        // included, exist); the subclass constructors do not, and the described fields replace the rest.
        const m = Reflect.construct(Module, [], classByKey(d.key)) as Record<string, unknown>;
        memo.set(d, m);
        for (const [k, x] of Object.entries(d.fields)) Object.defineProperty(m, k, { value: build(x), writable: true, enumerable: true, configurable: true });
        return m;
      }
      case 'array': {
        const a: unknown[] = [];
        memo.set(d, a);
        for (const x of d.items) a.push(build(x));
        return a;
      }
      case 'map': {
        const m = new Map();
        memo.set(d, m);
        for (const [k, x] of d.entries) m.set(build(k), build(x));
        return m;
      }
      case 'set': {
        const s = new Set();
        memo.set(d, s);
        for (const x of d.items) s.add(build(x));
        return s;
      }
      case 'clone':
        memo.set(d, d.value);
        return d.value;
      case 'object': {
        const o: Record<string, unknown> = {};
        memo.set(d, o);
        for (const [k, x] of Object.entries(d.fields)) o[k] = build(x);
        return o;
      }
    }
  };
  const model = build(root);
  if (!(model instanceof Module)) throw new Error('inference session worker: the described root is not a Module');
  return model;
}
