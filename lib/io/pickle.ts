// A restricted unpickler in the spirit of PyTorch's weights_only loader: it interprets the opcodes a
// state dict uses and resolves globals only through an allow-list of pure JS functions, so nothing
// named in a file is ever imported or run. Anything else is an Error that names it.

/** A Python tuple (kept apart from lists, which are plain arrays). */
export class Tuple {
  constructor(readonly items: unknown[]) {}
}

/** A global the allow-list admits; `call` is its JS stand-in, absent for non-callable markers. */
export class Global {
  constructor(readonly name: string, readonly call?: (args: unknown[]) => unknown) {}
}

/** What the unpickler needs from its caller. */
export interface UnpickleOptions {
  /** The allowed globals, by "module.name". */
  globals: ReadonlyMap<string, Global>;
  /** Resolves a BINPERSID id (torch: a storage reference). */
  persistentLoad: (pid: unknown) => unknown;
  /** Estimated JS heap the pickle may build (objects, memo, strings, bytes); more is an Error. */
  maxHeapBytes: number;
}

// How deep MARKs may nest; a state dict needs a handful, a bomb millions.
const MAX_MARK_DEPTH = 1000;

// Estimated V8 heap bytes of what each opcode builds, measured on Node 20 (an empty Map is 192 bytes,
// an empty array 40) and rounded up; a stack slot and a memo entry cost their share of the arrays and
// hash tables holding them.
const COST = { slot: 16, map: 200, list: 48, tuple: 72, item: 16, entry: 48, string: 32, buffer: 112 } as const;

const MARK = Symbol('mark');

// Opcode names for error messages about opcodes that state dicts never use.
const KNOWN_UNSUPPORTED: Record<number, string> = {
  0x50: 'PERSID', 0x69: 'INST', 0x6f: 'OBJ', 0x81: 'NEWOBJ', 0x92: 'NEWOBJ_EX', 0x82: 'EXT1', 0x83: 'EXT2',
  0x84: 'EXT4', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER', 0x96: 'BYTEARRAY8', 0x49: 'INT', 0x4c: 'LONG',
  0x46: 'FLOAT', 0x53: 'STRING', 0x56: 'UNICODE', 0x67: 'GET', 0x70: 'PUT',
};

/** Interprets a pickle (protocol 2 to 5) under the allow-list and returns the object it builds. */
export function unpickle(data: Uint8Array, opts: UnpickleOptions): unknown {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  let pos = 0;
  let stack: unknown[] = [];
  const marks: unknown[][] = [];
  const memo = new Map<number, unknown>();
  let heap = 0;

  const fail = (msg: string): never => {
    throw new Error(`pickle: ${msg} (at byte ${pos})`);
  };
  // Every opcode that builds something pays for it here, so a pickle bomb (millions of EMPTY_DICT,
  // DUP, MARK or memo entries) is refused long before the JS heap runs out.
  const charge = (bytes: number): void => {
    heap += bytes;
    if (heap > opts.maxHeapBytes)
      fail(`the pickle builds more than ${Math.round(opts.maxHeapBytes / 2 ** 20)} MiB of objects, more than a state dict of this file's size needs (a pickle bomb?)`);
  };
  const push = (v: unknown, bytes = 0): void => {
    charge(COST.slot + bytes);
    stack.push(v);
  };
  const need = (n: number): number => {
    if (n > buf.length - pos) fail(`truncated: needs ${n} more bytes, ${buf.length - pos} left`);
    const at = pos;
    pos += n;
    return at;
  };
  const pop = (): unknown => {
    if (!stack.length) fail('stack underflow');
    return stack.pop();
  };
  const top = (): unknown => {
    if (!stack.length) fail('stack underflow');
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = marks.pop();
    if (!prev) fail('no MARK to pop to');
    stack = prev!;
    return items;
  };
  const utf8 = (n: number): string => {
    const at = need(n);
    charge(COST.string + 2 * n);
    return buf.toString('utf8', at, pos);
  };
  const latin1 = (n: number): string => {
    const at = need(n);
    charge(COST.string + n);
    return buf.toString('latin1', at, pos);
  };
  const bytes = (n: number): Buffer => {
    const at = need(n);
    charge(COST.buffer + n);
    return Buffer.from(buf.subarray(at, pos));
  };
  const line = (): string => {
    const end = buf.indexOf(0x0a, pos);
    if (end < 0) fail('unterminated GLOBAL');
    const s = buf.toString('utf8', pos, end);
    pos = end + 1;
    return s;
  };
  const global = (module: string, name: string): Global => {
    const full = `${module}.${name}`;
    const g = opts.globals.get(full);
    if (!g) fail(`global ${full} is not allowed (only tensors, storages and OrderedDict may appear; nothing in the file is run)`);
    return g!;
  };
  const memoize = (k: number): void => {
    if (!memo.has(k)) charge(COST.entry);
    memo.set(k, top());
  };
  const setItems = (target: unknown, items: unknown[]): void => {
    if (!(target instanceof Map)) fail('SETITEM(S) on something that is not a dict');
    if (items.length % 2) fail('SETITEMS with an odd number of items');
    charge(COST.entry * (items.length / 2));
    for (let i = 0; i < items.length; i += 2) (target as Map<unknown, unknown>).set(items[i], items[i + 1]);
  };
  const appendItems = (target: unknown, items: unknown[]): void => {
    if (!Array.isArray(target)) fail('APPEND(S) on something that is not a list');
    charge(COST.item * items.length);
    for (const it of items) (target as unknown[]).push(it);
  };

  for (;;) {
    const op = buf[need(1)]!;
    switch (op) {
      case 0x80: { // PROTO
        const v = buf[need(1)]!;
        if (v < 2 || v > 5) fail(`unsupported pickle protocol ${v}`);
        break;
      }
      case 0x95: need(8); break; // FRAME: framing is a read-ahead hint only
      case 0x2e: { // STOP
        if (stack.length !== 1 || marks.length) fail('STOP with a malformed stack');
        return stack[0];
      }
      case 0x28: { // MARK
        if (marks.length >= MAX_MARK_DEPTH) fail(`MARKs nested more than ${MAX_MARK_DEPTH} deep`);
        charge(COST.list);
        marks.push(stack);
        stack = [];
        break;
      }
      case 0x7d: push(new Map(), COST.map); break; // EMPTY_DICT
      case 0x5d: push([], COST.list); break; // EMPTY_LIST
      case 0x29: push(new Tuple([]), COST.tuple); break; // EMPTY_TUPLE
      case 0x4e: push(null); break; // NONE
      case 0x88: push(true); break; // NEWTRUE
      case 0x89: push(false); break; // NEWFALSE
      case 0x4a: push(buf.readInt32LE(need(4))); break; // BININT
      case 0x4b: push(buf[need(1)]!); break; // BININT1
      case 0x4d: push(buf.readUInt16LE(need(2))); break; // BININT2
      case 0x8a: push(long(buf, need(1), (n) => need(n)), COST.string); break; // LONG1
      case 0x8b: push(long(buf, need(4), (n) => need(n), true), COST.string); break; // LONG4
      case 0x47: push(buf.readDoubleBE(need(8)), COST.slot); break; // BINFLOAT
      case 0x58: push(utf8(buf.readUInt32LE(need(4)))); break; // BINUNICODE
      case 0x8c: push(utf8(buf[need(1)]!)); break; // SHORT_BINUNICODE
      case 0x8d: push(utf8(safe64(buf.readBigUInt64LE(need(8)), fail))); break; // BINUNICODE8
      case 0x55: push(latin1(buf[need(1)]!)); break; // SHORT_BINSTRING
      case 0x54: push(latin1(buf.readUInt32LE(need(4)))); break; // BINSTRING
      case 0x43: push(bytes(buf[need(1)]!)); break; // SHORT_BINBYTES
      case 0x42: push(bytes(buf.readUInt32LE(need(4)))); break; // BINBYTES
      // popMark() replaces `stack`, so its result is taken before `stack` is read again.
      case 0x74: { const items = popMark(); push(new Tuple(items), COST.tuple); break; } // TUPLE
      case 0x85: push(new Tuple([pop()]), COST.tuple + COST.item); break; // TUPLE1
      case 0x86: { const b = pop(); const a = pop(); push(new Tuple([a, b]), COST.tuple + 2 * COST.item); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); push(new Tuple([a, b, c]), COST.tuple + 3 * COST.item); break; } // TUPLE3
      case 0x6c: { const items = popMark(); push(items); break; } // LIST
      case 0x64: { const items = popMark(); const d = new Map(); setItems(d, items); push(d, COST.map); break; } // DICT
      case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(top(), items); break; } // SETITEMS
      case 0x61: { const v = pop(); appendItems(top(), [v]); break; } // APPEND
      case 0x65: { const items = popMark(); appendItems(top(), items); break; } // APPENDS
      case 0x71: memoize(buf[need(1)]!); break; // BINPUT
      case 0x72: memoize(buf.readUInt32LE(need(4))); break; // LONG_BINPUT
      case 0x94: memoize(memo.size); break; // MEMOIZE
      case 0x68: case 0x6a: { // BINGET, LONG_BINGET
        const k = op === 0x68 ? buf[need(1)]! : buf.readUInt32LE(need(4));
        if (!memo.has(k)) fail(`memo key ${k} was never stored`);
        push(memo.get(k));
        break;
      }
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: push(top()); break; // DUP
      case 0x63: { const module = line(); push(global(module, line())); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        push(global(module as string, name as string));
        break;
      }
      case 0x51: push(opts.persistentLoad(pop()), COST.tuple); break; // BINPERSID
      case 0x52: { // REDUCE
        const args = pop();
        const fn = pop() as Global;
        if (!isGlobal(fn) || !fn.call) fail(`REDUCE on ${isGlobal(fn) ? fn.name : 'a non-callable'}, which is not an allowed function`);
        if (!(args instanceof Tuple)) fail(`REDUCE of ${fn.name} without an argument tuple`);
        push(fn.call!((args as Tuple).items), COST.map);
        break;
      }
      case 0x62: { // BUILD: only the attribute state of a dict (OrderedDict._metadata) is accepted, and dropped
        const state = pop();
        if (!(top() instanceof Map)) fail('BUILD on an object that is not a dict');
        if (!(state instanceof Map) && !(state instanceof Tuple) && state !== null) fail('BUILD with a state that is not a dict');
        break;
      }
      default:
        fail(`opcode ${KNOWN_UNSUPPORTED[op] ?? `0x${op.toString(16).padStart(2, '0')}`} is not supported`);
    }
  }
}

function isGlobal(v: unknown): v is Global {
  return v instanceof Global;
}

function safe64(v: bigint, fail: (m: string) => never): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`length ${v} is out of range`);
  return Number(v);
}

// A little-endian two's-complement integer; a number when it is safe, else a bigint.
function long(buf: Buffer, at: number, need: (n: number) => number, four = false): number | bigint {
  const n = four ? buf.readInt32LE(at) : buf[at]!;
  // Weights never hold integers this wide; the cap keeps a crafted one from costing quadratic time.
  if (n < 0 || n > 64) throw new Error(`pickle: integer of ${n} bytes is out of range`);
  const start = need(n);
  let v = 0n;
  for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(buf[start + i]!);
  if (n && buf[start + n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}
