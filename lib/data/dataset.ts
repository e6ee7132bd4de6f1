// In-memory image datasets: uint8 pixels in NCHW order with integer labels, as the IDX and CIFAR
// files hold them; batches are gathered from here and turned into tensors by the loader.

/** A labelled image set held in memory. */
export interface ArrayDataset {
  readonly name: string;
  /** N*C*H*W bytes, sample-major, channels before rows. */
  readonly images: Uint8Array;
  readonly labels: Uint8Array;
  /** [C, H, W] of one sample. */
  readonly shape: readonly [number, number, number];
  readonly classes: readonly string[];
  /** Per-channel mean and std of the training pixels in [0, 1], for Normalize. */
  readonly mean: readonly number[];
  readonly std: readonly number[];
}

/** Number of samples in a dataset. */
export function sizeOf(d: ArrayDataset): number {
  return d.labels.length;
}

/** The first n samples (all when n is undefined or larger). */
export function limit(d: ArrayDataset, n?: number): ArrayDataset {
  if (n === undefined || n >= d.labels.length) return d;
  if (!Number.isInteger(n) || n < 1) throw new Error(`limit: n must be a positive integer; got ${n}`);
  const per = d.shape[0] * d.shape[1] * d.shape[2];
  return { ...d, images: d.images.subarray(0, n * per), labels: d.labels.subarray(0, n) };
}

/** Checks that images and labels agree and that labels name known classes. */
export function checkDataset(d: ArrayDataset): ArrayDataset {
  const per = d.shape[0] * d.shape[1] * d.shape[2];
  if (d.images.length !== d.labels.length * per) {
    throw new Error(`${d.name}: ${d.labels.length} labels but ${d.images.length / per} images`);
  }
  for (let i = 0; i < d.labels.length; i++) {
    if (d.labels[i]! >= d.classes.length) throw new Error(`${d.name}: label ${d.labels[i]} at index ${i} is outside 0..${d.classes.length - 1}`);
  }
  return d;
}
