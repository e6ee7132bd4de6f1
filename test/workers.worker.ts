// A Worker of workers.test.ts / workers.child.ts; what it does is workerData.job:
//   hold:    a matmul whose exact result the parent knows, then a 64 MiB tensor (every page
//            written); reports both and exits still holding the tensor.
//   foreign: uses a handle made by the parent thread (workerData.handle), then sends back one of its own.
import { parentPort, workerData } from 'node:worker_threads';
import { arange, ones } from '../lib/creation.ts';
import { memory, tidy, Tensor } from '../lib/tensor.ts';
import { native, type Handle } from '../lib/native.ts';

const job = workerData.job as 'hold' | 'foreign';
const errorOf = (f: () => unknown): string => {
  try {
    f();
    return 'no error';
  } catch (e) {
    return (e as Error).message;
  }
};

if (job === 'hold') {
  const n = workerData.n as number;
  const product = tidy(() => {
    const a = arange(0, n * n).reshape([n, n]);
    return a.matmul(a).sum().item();
  });
  const t = ones([16 * 2 ** 20]);
  parentPort!.postMessage({ product, memory: memory(), sum: t.sum().item() });
} else {
  // Fill this thread's table so the parent's slot numbers are live here too.
  const mine = Array.from({ length: 8 }, (_, i) => ones([2]).mul(i + 100));
  const h = workerData.handle as Handle;
  parentPort!.postMessage({
    toArray: errorOf(() => native.toArray(h)),
    add: errorOf(() => new Tensor(h).add(1)),
    dispose: errorOf(() => native.dispose(h)),
    isHandle: native.isHandle(h),
    own: mine[0]!.h,
    ownValues: Array.from(mine[0]!.toArray() as Float32Array),
  });
}
