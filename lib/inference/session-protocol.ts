// The messages between an InferenceSession and its Workers.
import type { DecodedImage } from '../data/index.ts';
import type { Described } from './session-transfer.ts';

/** An image as it crosses to a Worker: decoded RGB, or the bytes of an encoded file. */
export type WireImage = DecodedImage | Uint8Array | ArrayBuffer;

/** The first message: the model (its tensors parked under token) and the thread's settings. */
export interface LoadMessage {
  type: 'load';
  root: Described['root'];
  urls: string[];
  token: number;
  device: string;
  threads: number;
  maxBatch: number;
  amp: 'bfloat16' | 'float16' | null;
  resize: number;
  crop: number;
  /** Batch sizes to run once on zero images (3 x crop x crop) before answering 'ready'. */
  warmup: number[];
}

/** One unit of work: a forward on parked input, classify on images, or a Grad-CAM of one image. */
export type Job = { type: 'run'; token: number } | { type: 'classify'; images: WireImage[]; k: number } |
  { type: 'explain'; image: WireImage; classIndex?: number; layer?: string };

/** What a Worker answers. */
export type Reply =
  | { type: 'ready' }
  | { type: 'tensor'; token: number }
  | { type: 'top'; classes: number; k: number; indices: number[]; probabilities: number[] }
  | { type: 'cam'; classes: number; index: number; size: number; cam: Float32Array; png: Uint8Array }
  | { type: 'error'; name: string; message: string };
