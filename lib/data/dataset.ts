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

/**
 * The samples of some classes, relabelled by their position in `classes`, in dataset order; with perClass, only the
 * first perClass of each. Mean and std stay those of d, so a net sees every subset normalised alike.
 */
export function selectClasses(d: ArrayDataset, classes: readonly number[], perClass?: number): ArrayDataset {
  const to = new Map(classes.map((c, i) => [c, i]));
  if (to.size !== classes.length || classes.some((c) => !Number.isInteger(c) || c < 0 || c >= d.classes.length)) {
    throw new Error(`selectClasses: classes must be distinct indices of ${d.name}'s ${d.classes.length} classes; got ${classes.join(', ')}`);
  }
  const per = d.shape[0] * d.shape[1] * d.shape[2];
  const counts = new Array<number>(classes.length).fill(0);
  const picked: number[] = [];
  for (let i = 0; i < d.labels.length; i++) {
    const j = to.get(d.labels[i]!);
    if (j !== undefined && (perClass === undefined || counts[j]! < perClass)) {
      counts[j]!++;
      picked.push(i);
    }
  }
  const images = new Uint8Array(picked.length * per);
  picked.forEach((i, k) => images.set(d.images.subarray(i * per, (i + 1) * per), k * per));
  return { ...d, name: `${d.name} classes ${classes.join(',')}`, images, labels: Uint8Array.from(picked, (i) => to.get(d.labels[i]!)!), classes: classes.map((c) => d.classes[c]!) };
}
