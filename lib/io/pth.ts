// State dicts saved by torch.save (the zip format since PyTorch 1.6): `<archive>/data.pkl` is a pickle
// whose tensors point, by persistent id, at raw storages stored as `<archive>/data/<key>`. The pickle
// is read by the allow-list unpickler, so a file can describe tensors but never run anything.
import { closeSync, readSync } from 'node:fs';
import { native } from '../native.ts';
import { Tensor, dtypeOf, type DType } from '../tensor.ts';
import { openRegular } from './open.ts';
import { Global, Tuple, unpickle } from './pickle.ts';
import { ZipReader } from './zip.ts';

const STORAGES: Record<string, [DType, number]> = {
  FloatStorage: ['float32', 4], DoubleStorage: ['float64', 8], HalfStorage: ['float16', 2],
  BFloat16Storage: ['bfloat16', 2], LongStorage: ['int64', 8], IntStorage: ['int32', 4],
  ShortStorage: ['int16', 2], CharStorage: ['int8', 1], ByteStorage: ['uint8', 1], BoolStorage: ['bool', 1],
};
// The heap the unpickler may build. A state dict's pickle is a small part of its file (resnet152's
// is 115 KB of 242 MB and builds an estimated 1.8 MiB of objects), so the file's own size plus a
// floor for small files leaves real files far inside, and keeps a bomb's peak near the file's size.
const PICKLE_HEAP_FLOOR = 16 * 2 ** 20;
// Where trainers commonly nest the state dict inside a checkpoint.
const WRAPPERS = ['state_dict', 'model', 'model_state_dict', 'module'];

class StorageRef {
  constructor(readonly entry: string, readonly dtype: DType, readonly itemSize: number, readonly numel: number) {}
}

class TensorRef {
  constructor(readonly storage: StorageRef, readonly offset: number, readonly size: number[], readonly stride: number[]) {}
}

const storageTypes = new Map<Global, [DType, number]>();
const TENSOR_TYPES = new Set(['torch.Tensor', 'torch.nn.parameter.Parameter']);

function ints(v: unknown, what: string): number[] {
  if (!(v instanceof Tuple) || !v.items.every((x) => Number.isSafeInteger(x) && (x as number) >= 0))
    throw new Error(`${what} must be a tuple of non-negative integers`);
  return v.items as number[];
}

function rebuildTensor(args: unknown[]): TensorRef {
  const [storage, offset, size, stride, , hooks] = args;
  if (args.length < 4 || args.length > 7) throw new Error(`_rebuild_tensor_v2 takes 4 to 7 arguments, got ${args.length}`);
  if (!(storage instanceof StorageRef)) throw new Error('_rebuild_tensor_v2: the first argument is not a storage');
  if (!Number.isSafeInteger(offset) || (offset as number) < 0) throw new Error('_rebuild_tensor_v2: storage offset must be a non-negative integer');
  if (hooks instanceof Map && hooks.size) throw new Error('_rebuild_tensor_v2: tensors with backward hooks are not supported');
  const sz = ints(size, 'tensor size');
  const st = ints(stride, 'tensor stride');
  if (sz.length !== st.length) throw new Error(`tensor size ${sz.length}-d but stride ${st.length}-d`);
  return new TensorRef(storage, offset as number, sz, st);
}

function parameter(args: unknown[]): TensorRef {
  if (!(args[0] instanceof TensorRef)) throw new Error('_rebuild_parameter: the first argument is not a tensor');
  return args[0];
}

function allowList(): Map<string, Global> {
  const g = new Map<string, Global>();
  const add = (name: string, call?: (args: unknown[]) => unknown): Global => {
    const v = new Global(name, call);
    g.set(name, v);
    return v;
  };
  add('collections.OrderedDict', (args) => {
    if (args.length) throw new Error('OrderedDict with constructor arguments is not supported');
    return new Map();
  });
  add('torch._utils._rebuild_tensor_v2', rebuildTensor);
  add('torch._utils._rebuild_tensor', rebuildTensor);
  add('torch._utils._rebuild_parameter', parameter);
  add('torch._utils._rebuild_parameter_with_state', parameter);
  add('torch._tensor._rebuild_from_type_v2', ([fn, type, args]) => {
    if (!(fn instanceof Global) || !fn.call || !(type instanceof Global) || !TENSOR_TYPES.has(type.name) || !(args instanceof Tuple))
      throw new Error('_rebuild_from_type_v2 is supported for torch.Tensor and Parameter only');
    return fn.call(args.items);
  });
  add('torch.Size', ([t]) => {
    ints(t, 'torch.Size');
    return t;
  });
  for (const name of TENSOR_TYPES) add(name);
  for (const [name, info] of Object.entries(STORAGES)) storageTypes.set(add(`torch.${name}`), info);
  return g;
}
const GLOBALS = allowList();

/** Loads a state dict saved by torch.save (zip format) onto the CPU; nothing in the file is executed. */
export function loadPth(path: string): Record<string, Tensor> {
  if (typeof path !== 'string') throw new TypeError(`loadPth: path must be a string; got ${typeof path}`);
  const fail = (msg: string): never => {
    throw new Error(`loadPth: ${path}: ${msg}`);
  };
  checkMagic(path, fail);
  const zip = new ZipReader(path);
  try {
    const pkls = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
    if (pkls.length !== 1) fail(`expected one <archive>/data.pkl in the zip, found ${pkls.length}: not a torch.save file`);
    const prefix = pkls[0]!.slice(0, -'data.pkl'.length);
    if (zip.entries.has(`${prefix}byteorder`) && zip.read(`${prefix}byteorder`).toString() !== 'little')
      fail('big-endian files are not supported');
    const storages = new Map<string, StorageRef>();
    const persistentLoad = (pid: unknown): StorageRef => {
      const [kind, type, key, , numel] = pid instanceof Tuple ? pid.items : [];
      if (kind !== 'storage' || !(type instanceof Global) || typeof key !== 'string' || !Number.isSafeInteger(numel))
        fail('a persistent id is not a storage reference');
      const info = storageTypes.get(type as Global);
      if (!info) fail(`${(type as Global).name} is not a storage type`);
      const [dtype, itemSize] = info!;
      const entry = `${prefix}data/${key}`;
      const seen = storages.get(entry);
      if (seen) {
        if (seen.dtype !== dtype) fail(`storage ${key} is used as both ${seen.dtype} and ${dtype}`);
        return seen;
      }
      const e = zip.entries.get(entry);
      if (!e) fail(`storage ${entry} named by the pickle is missing from the zip`);
      if (e!.size !== (numel as number) * itemSize) fail(`storage ${entry} holds ${e!.size} bytes, not ${numel} × ${itemSize}`);
      const ref = new StorageRef(entry, dtype, itemSize, numel as number);
      storages.set(entry, ref);
      return ref;
    };
    let root: unknown;
    try {
      root = unpickle(zip.read(pkls[0]!), { globals: GLOBALS, persistentLoad, maxHeapBytes: PICKLE_HEAP_FLOOR + zip.size });
    } catch (err) {
      if ((err as Error).message.startsWith('loadPth:')) throw err;
      fail((err as Error).message);
    }
    return materialize(zip, stateDictOf(root, fail), fail);
  } finally {
    zip.close();
  }
}

// Zip archives start with a local header; a pickle protocol byte means the pre-1.6 legacy format.
function checkMagic(path: string, fail: (msg: string) => never): void {
  const { fd } = openRegular(path, 'loadPth');
  const head = Buffer.alloc(4);
  let n: number;
  try {
    n = readSync(fd, head, 0, 4, 0);
  } finally {
    closeSync(fd);
  }
  if (n === 0) fail('the file is empty');
  if (head[0] === 0x80)
    fail('legacy (pre-zip) torch.save format is not supported. Re-save it with PyTorch: ' +
      `python -c "import torch; torch.save(torch.load('old.pth', weights_only=True), 'new.pth')"`);
  if (n < 4 || head.readUInt32LE(0) !== 0x04034b50) fail('not a zip archive, so not a file written by torch.save');
}

function isTensorDict(v: unknown): v is Map<string, TensorRef> {
  if (!(v instanceof Map)) return false;
  for (const [k, t] of v) if (typeof k !== 'string' || !(t instanceof TensorRef)) return false;
  return true;
}

function stateDictOf(root: unknown, fail: (msg: string) => never): Map<string, TensorRef> {
  if (isTensorDict(root)) return root;
  if (!(root instanceof Map)) fail(`the file holds ${describe(root)}, not a state dict`);
  const m = root as Map<unknown, unknown>;
  for (const w of WRAPPERS) if (isTensorDict(m.get(w))) return m.get(w) as Map<string, TensorRef>;
  const [k, v] = [...m].find(([key, t]) => typeof key !== 'string' || !(t instanceof TensorRef))!;
  return fail(`not a state dict: key ${typeof k === 'string' ? JSON.stringify(k) : describe(k)} holds ${describe(v)}, not a tensor ` +
    `(loadPth reads a dict of tensors, or a checkpoint holding one under ${WRAPPERS.map((w) => `'${w}'`).join(', ')})`);
}

function describe(v: unknown): string {
  if (v instanceof Map) return 'a dict';
  if (v instanceof Tuple) return 'a tuple';
  if (Array.isArray(v)) return 'a list';
  if (v instanceof Global) return v.name;
  return v === null ? 'None' : `a ${typeof v}`;
}

// Reads each storage once into one tensor and makes every tensor that names it a view of it, as
// torch.load does: tensors that share a storage in the file share it in memory, and a stride-0 view
// of a one-element storage stays one element, so a load never holds more than the file's storage bytes.
function materialize(zip: ZipReader, refs: Map<string, TensorRef>, fail: (msg: string) => never): Record<string, Tensor> {
  const uses = new Map<StorageRef, number>();
  for (const r of refs.values()) uses.set(r.storage, (uses.get(r.storage) ?? 0) + 1);
  const storages = new Map<StorageRef, Tensor>();
  const out: Record<string, Tensor> = {};
  try {
    for (const [key, r] of refs) {
      const s = r.storage;
      let storage = storages.get(s);
      if (!storage) {
        storage = new Tensor(native.fromBytes(zip.read(s.entry), [s.numel], dtypeOf(s.dtype)!));
        storages.set(s, storage);
      }
      let h;
      try {
        h = native.fromStorage(storage.h, r.size, r.stride, r.offset);
      } catch (err) {
        fail(`tensor ${JSON.stringify(key)}: ${(err as Error).message}`);
      }
      Object.defineProperty(out, key, { value: new Tensor(h!), enumerable: true, writable: true, configurable: true });
      const left = uses.get(s)! - 1;
      uses.set(s, left);
      if (!left) {
        storage.dispose();
        storages.delete(s);
      }
    }
  } catch (err) {
    for (const t of Object.values(out)) t.dispose();
    throw err;
  } finally {
    for (const t of storages.values()) t.dispose();
  }
  return out;
}
