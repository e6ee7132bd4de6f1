// The error a CUDA allocation the device cannot satisfy becomes (torch.cuda.OutOfMemoryError).

/**
 * A CUDA out-of-memory, with the caching allocator's numbers at the moment it gave up. Catch it to
 * retry with less (a smaller batch after `cuda.emptyCache()`); nothing is left half-allocated.
 */
export class CudaOutOfMemoryError extends Error {
  override name = 'CudaOutOfMemoryError';
  /** Bytes the failed allocation asked for. */
  requestedBytes = Number.NaN;
  /** Bytes the device had free (cudaMemGetInfo) when it failed. */
  freeBytes = Number.NaN;
  /** The device's capacity in bytes (or the cap set on the allocator). */
  totalBytes = Number.NaN;
  /** The CUDA device index. */
  device = 0;
}
