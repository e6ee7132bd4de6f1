// CUDA graphs and the cuDNN/TF32 switches (torch.cuda.CUDAGraph, torch.backends). Graphs need a CUDA
// build and device; on a CPU build every graph call throws an Error that says so.
import { native } from './native.ts';

export { CudaOutOfMemoryError } from './cuda-error.ts';

/** A memory pool graphs can share (torch.cuda.graph_pool_handle()); opaque. */
export type GraphPool = readonly [number, number];

/** How a capture treats CUDA calls from other threads (cudaStreamCaptureMode). */
export type CaptureMode = 'global' | 'thread_local' | 'relaxed';

/** torch.backends: cuDNN autotuning and TF32 math. */
export const backends = {
  cudnn: {
    /** cuDNN picks the fastest algorithm per input shape (on by default here: shapes are fixed). */
    get benchmark(): boolean {
      return native.cudnnBenchmark();
    },
    set benchmark(on: boolean) {
      native.setCudnnBenchmark(on);
    },
    /** TF32 tensor cores for convolutions (PyTorch's default: on). */
    get allowTF32(): boolean {
      return native.allowTF32()[0];
    },
    set allowTF32(on: boolean) {
      native.setAllowTF32(on, native.allowTF32()[1]);
    },
  },
  cuda: {
    matmul: {
      /** TF32 tensor cores for matmuls (PyTorch's default: off). */
      get allowTF32(): boolean {
        return native.allowTF32()[1];
      },
      set allowTF32(on: boolean) {
        native.setAllowTF32(native.allowTF32()[0], on);
      },
    },
  },
};

/** A fresh memory pool to capture several graphs into (torch.cuda.graph_pool_handle). */
export function graphPoolHandle(): GraphPool {
  return native.cudaGraphPoolHandle();
}

/**
 * Runs fn(i) `iters` times on a side stream, ordered after the work already queued and before what
 * follows: the warm-up PyTorch's docs prescribe before a capture, so lazy set-up stays out of the graph.
 */
export function cudaWarmup(fn: (i: number) => void, iters = 3): void {
  native.cudaWarmup(fn, iters);
}

/**
 * One captured CUDA graph (torch.cuda.CUDAGraph). capture() records the kernels fn queues, on a side
 * stream, into memory from the graph's pool; replay() launches them again on the same memory. Tensors fn
 * creates and the caller keeps (with keep()) are the graph's static outputs; inputs are tensors made
 * before the capture and refilled with copy_() before each replay.
 */
export class CUDAGraph {
  private id: number | null;

  /** keepGraph: keep the captured graph after instantiation (torch's keep_graph). */
  constructor({ keepGraph = false }: { keepGraph?: boolean } = {}) {
    this.id = native.cudaGraphNew(keepGraph);
  }

  private live(): number {
    if (this.id === null) throw new Error('CUDAGraph: used after dispose()');
    return this.id;
  }

  /** Captures fn (torch.cuda.graph); `pool` shares memory with other graphs. A throw inside fn ends the capture and resets the graph. */
  capture(fn: () => void, { pool, captureMode = 'global' }: { pool?: GraphPool; captureMode?: CaptureMode } = {}): this {
    native.cudaGraphCapture(this.live(), fn, pool, captureMode);
    return this;
  }

  /** Launches the captured work again. */
  replay(): void {
    native.cudaGraphReplay(this.live());
  }

  /** Frees the captured graph and its memory; capture() may be called again. */
  reset(): void {
    native.cudaGraphReset(this.live());
  }

  /** The graph's memory pool, for capturing another graph into the same memory. */
  pool(): GraphPool {
    return native.cudaGraphPool(this.live());
  }

  /** Frees the graph now (also reset). A second call is a no-op. */
  dispose(): void {
    if (this.id !== null) native.cudaGraphDispose(this.id);
    this.id = null;
  }
}
