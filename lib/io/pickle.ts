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
}

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

  const fail = (msg: string): never => {
    throw new Error(`pickle: ${msg} (at byte ${pos})`);
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
  const utf8 = (n: number): string => buf.toString('utf8', need(n), pos);
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
  const setItems = (target: unknown, items: unknown[]): void => {
    if (!(target instanceof Map)) fail('SETITEM(S) on something that is not a dict');
    if (items.length % 2) fail('SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) (target as Map<unknown, unknown>).set(items[i], items[i + 1]);
  };
  const appendItems = (target: unknown, items: unknown[]): void => {
    if (!Array.isArray(target)) fail('APPEND(S) on something that is not a list');
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
      case 0x28: marks.push(stack); stack = []; break; // MARK
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x29: stack.push(new Tuple([])); break; // EMPTY_TUPLE
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4a: stack.push(buf.readInt32LE(need(4))); break; // BININT
      case 0x4b: stack.push(buf[need(1)]!); break; // BININT1
      case 0x4d: stack.push(buf.readUInt16LE(need(2))); break; // BININT2
      case 0x8a: stack.push(long(buf, need(1), (n) => need(n))); break; // LONG1
      case 0x8b: stack.push(long(buf, need(4), (n) => need(n), true)); break; // LONG4
      case 0x47: stack.push(buf.readDoubleBE(need(8))); break; // BINFLOAT
      case 0x58: stack.push(utf8(buf.readUInt32LE(need(4)))); break; // BINUNICODE
      case 0x8c: stack.push(utf8(buf[need(1)]!)); break; // SHORT_BINUNICODE
      case 0x8d: stack.push(utf8(safe64(buf.readBigUInt64LE(need(8)), fail))); break; // BINUNICODE8
      case 0x55: stack.push(buf.toString('latin1', need(buf[need(1)]!), pos)); break; // SHORT_BINSTRING
      case 0x54: stack.push(buf.toString('latin1', need(buf.readUInt32LE(need(4))), pos)); break; // BINSTRING
      case 0x43: { const n = buf[need(1)]!; stack.push(Buffer.from(buf.subarray(need(n), pos))); break; } // SHORT_BINBYTES
      case 0x42: { const n = buf.readUInt32LE(need(4)); stack.push(Buffer.from(buf.subarray(need(n), pos))); break; } // BINBYTES
      // popMark() replaces `stack`, so its result is taken before `stack` is read again.
      case 0x74: { const items = popMark(); stack.push(new Tuple(items)); break; } // TUPLE
      case 0x85: stack.push(new Tuple([pop()])); break; // TUPLE1
      case 0x86: { const b = pop(); const a = pop(); stack.push(new Tuple([a, b])); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); stack.push(new Tuple([a, b, c])); break; } // TUPLE3
      case 0x6c: { const items = popMark(); stack.push(items); break; } // LIST
      case 0x64: { const items = popMark(); const d = new Map(); setItems(d, items); stack.push(d); break; } // DICT
      case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(top(), items); break; } // SETITEMS
      case 0x61: { const v = pop(); appendItems(top(), [v]); break; } // APPEND
      case 0x65: { const items = popMark(); appendItems(top(), items); break; } // APPENDS
      case 0x71: memo.set(buf[need(1)]!, top()); break; // BINPUT
      case 0x72: memo.set(buf.readUInt32LE(need(4)), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: case 0x6a: { // BINGET, LONG_BINGET
        const k = op === 0x68 ? buf[need(1)]! : buf.readUInt32LE(need(4));
        if (!memo.has(k)) fail(`memo key ${k} was never stored`);
        stack.push(memo.get(k));
        break;
      }
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: stack.push(top()); break; // DUP
      case 0x63: { const module = line(); stack.push(global(module, line())); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        stack.push(global(module as string, name as string));
        break;
      }
      case 0x51: stack.push(opts.persistentLoad(pop())); break; // BINPERSID
      case 0x52: { // REDUCE
        const args = pop();
        const fn = pop() as Global;
        if (!isGlobal(fn) || !fn.call) fail(`REDUCE on ${isGlobal(fn) ? fn.name : 'a non-callable'}, which is not an allowed function`);
        if (!(args instanceof Tuple)) fail(`REDUCE of ${fn.name} without an argument tuple`);
        stack.push(fn.call!((args as Tuple).items));
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
