// A small seeded PRNG (sfc32, from PractRand) for shuffling and augmentation. Streams are keyed by
// (seed, epoch, batch), so the data pipeline's randomness is a pure function of where training is:
// resuming at a step needs no saved generator state.

/** A deterministic random stream. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /** A stream keyed by any number of integers (e.g. seed, epoch, batch). */
  constructor(...key: number[]) {
    // splitmix32-style mixing of the key into the four words.
    let h = 0x9e3779b9;
    const mix = (x: number): number => {
      h = Math.imul(h ^ (x >>> 0), 0x85ebca6b);
      h ^= h >>> 13;
      h = Math.imul(h, 0xc2b2ae35);
      h ^= h >>> 16;
      return h >>> 0;
    };
    for (const k of key) {
      mix(k);
      mix(Math.floor(k / 2 ** 32));
    }
    this.a = mix(1);
    this.b = mix(2);
    this.c = mix(3);
    this.d = mix(4);
    for (let i = 0; i < 12; i++) this.u32();
  }

  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** A uniform float in [0, 1). */
  next(): number {
    return this.u32() / 2 ** 32;
  }

  /** A uniform float in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** A uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
}

/** A random permutation of 0..n-1 (Fisher-Yates). */
export function permutation(n: number, rng: Rng): Int32Array {
  // A non-number n (e.g. [2**53]) would pass new Int32Array() and then drive the loops below for ever.
  if (!Number.isSafeInteger(n) || n < 0) throw new TypeError(`permutation: n must be a non-negative integer; got ${String(n)}`);
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = p[i]!;
    p[i] = p[j]!;
    p[j] = t;
  }
  return p;
}
