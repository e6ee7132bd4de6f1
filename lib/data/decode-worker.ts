// The worker thread behind DecodeQueue: decodes its paths `concurrency` at a time, never past the index the
// main thread allows, and posts each result with the time it took (measured here, where the event loop is idle).
import { parentPort, workerData } from 'node:worker_threads';
import sharp from 'sharp';
import { decodeImage } from './image-folder.ts';

const { paths, concurrency, ahead } = workerData as { paths: string[]; concurrency: number; ahead: number };
let started = 0;
let running = 0;
let allowed = ahead;

sharp.concurrency(1); // parallelism comes from concurrent decodes, one libvips thread each

function pump(): void {
  while (running < concurrency && started < paths.length && started < allowed) {
    const index = started++;
    const t0 = performance.now();
    running++;
    decodeImage(paths[index]!).then(
      (image) => parentPort!.postMessage({ index, ms: performance.now() - t0, image }),
      (error: Error) => parentPort!.postMessage({ index, ms: performance.now() - t0, error: error.message }),
    ).finally(() => {
      running--;
      pump();
    });
  }
}

parentPort!.on('message', (m: { allowed: number }) => {
  allowed = m.allowed;
  pump();
});
pump();
