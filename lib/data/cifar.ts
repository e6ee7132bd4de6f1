// CIFAR-10 and CIFAR-100 from their binary versions (Krizhevsky 2009): fixed-size records of label
// byte(s) followed by 3072 pixel bytes (1024 red, 1024 green, 1024 blue, row-major 32x32).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkDataset, type ArrayDataset } from './dataset.ts';
import type { Split } from './fashion-mnist.ts';

const PIXELS = 3 * 32 * 32;
const CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

function readRecords(files: string[], labelBytes: number, labelAt: number): { images: Uint8Array; labels: Uint8Array } {
  const record = labelBytes + PIXELS;
  const bufs = files.map((f) => {
    if (!existsSync(f)) throw new Error(`missing ${f}`);
    const b = readFileSync(f);
    if (b.length === 0 || b.length % record !== 0) throw new Error(`${f}: ${b.length} bytes is not a whole number of ${record}-byte records`);
    return b;
  });
  const n = bufs.reduce((a, b) => a + b.length / record, 0);
  const images = new Uint8Array(n * PIXELS);
  const labels = new Uint8Array(n);
  let i = 0;
  for (const b of bufs) {
    for (let off = 0; off < b.length; off += record, i++) {
      labels[i] = b[off + labelAt]!;
      images.set(b.subarray(off + labelBytes, off + record), i * PIXELS);
    }
  }
  return { images, labels };
}

/** The folder holding the .bin files: dir itself or its cifar-*-batches-bin / cifar-100-binary child. */
function binDir(dir: string, child: string): string {
  return existsSync(join(dir, child)) ? join(dir, child) : dir;
}

/** CIFAR-10's train (data_batch_1..5.bin, 50,000) or test (test_batch.bin, 10,000) split. */
export function loadCifar10(split: Split, dir: string): ArrayDataset {
  const d = binDir(dir, 'cifar-10-batches-bin');
  const files = split === 'train' ? [1, 2, 3, 4, 5].map((k) => join(d, `data_batch_${k}.bin`)) : [join(d, 'test_batch.bin')];
  const { images, labels } = readRecords(files, 1, 0);
  return checkDataset({
    name: `cifar10/${split}`, images, labels, shape: [3, 32, 32], classes: CIFAR10_CLASSES,
    mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616],
  });
}

/** CIFAR-100's train.bin or test.bin with its 100 fine labels (the second label byte). */
export function loadCifar100(split: Split, dir: string): ArrayDataset {
  const d = binDir(dir, 'cifar-100-binary');
  const { images, labels } = readRecords([join(d, split === 'train' ? 'train.bin' : 'test.bin')], 2, 1);
  return checkDataset({
    name: `cifar100/${split}`, images, labels, shape: [3, 32, 32], classes: Array.from({ length: 100 }, (_, i) => String(i)),
    mean: [0.5071, 0.4865, 0.4409], std: [0.2673, 0.2564, 0.2762],
  });
}
