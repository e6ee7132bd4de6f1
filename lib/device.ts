// Devices and threads: CUDA queries, synchronisation, memory statistics, cuDNN and thread settings,
// and the mixed-precision choice (--amp) as an autocast region on a device.
import { native } from './native.ts';
import { autocast, type Device } from './tensor.ts';

/** CUDA utilities (torch.cuda). On a CPU build every query answers "none". */
export const cuda = {
  /** Whether a CUDA device can be used. */
  isAvailable: (): boolean => native.cudaIsAvailable(),
  /** Number of CUDA devices. */
  deviceCount: (): number => native.cudaDeviceCount(),
  /** Whether the addon was built against a CUDA libtorch. */
  isBuilt: (): boolean => native.cudaBuilt(),
  /** Waits for all queued kernels on the current device. */
  synchronize: (): void => native.cudaSynchronize(),
  /** Allocated, reserved and peak bytes of the caching allocator. */
  memory: (device = 0): { allocated: number; reserved: number; peakAllocated: number } => native.cudaMemory(device),
  /** Resets the peak counter of memory(). */
  resetPeakMemory: (device = 0): void => native.cudaResetPeak(device),
  /** Resets the peak counter of memory() (torch.cuda.reset_peak_memory_stats). */
  resetPeak: (device = 0): void => native.cudaResetPeak(device),
  /** Returns cached blocks to the driver. */
  emptyCache: (): void => native.cudaEmptyCache(),
  /** torch.backends.cudnn.benchmark */
  setCudnnBenchmark: (on: boolean): void => native.setCudnnBenchmark(on),
};

/** Sets libtorch's intra-op thread count (torch.set_num_threads). */
export function setNumThreads(n: number): void {
  native.setNumThreads(n);
}

/** libtorch's intra-op thread count. */
export function getNumThreads(): number {
  return native.getNumThreads();
}

/** The libtorch version the addon was built against. */
export function torchVersion(): string {
  return native.torchVersion();
}

/** Mixed precision as the CLIs name it: bf16 or fp16 autocast. */
export type Amp = 'bf16' | 'fp16';

/** Runs fn under autocast for amp on the device's type ('cuda:1' autocasts 'cuda'); without amp, fn as it is. */
export function withAmp<T>(amp: Amp | undefined, device: Device, fn: () => T): T {
  if (!amp) return fn();
  return autocast(fn, { dtype: amp === 'bf16' ? 'bfloat16' : 'float16', device: device.startsWith('cuda') ? 'cuda' : 'cpu' });
}
