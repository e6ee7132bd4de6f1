// onnxruntime-node's side of `npm run bench`: one inference case timed in this fresh process (CPU execution
// provider, the case's thread count, sequential execution), on the ONNX file the torchvision oracle exported
// from the same weights the other sides load.
//   node --import tsx scripts/bench_onnx.ts '<json case>'  ->  prints {"seconds": [...], "peakBytes": N, "version": "..."}
import { readFileSync, writeFileSync } from 'node:fs';
import ort from 'onnxruntime-node';

interface OnnxCase { onnx: string; batch: number; size: number; threads: number; iters: number; warmup: number }

const c = JSON.parse(process.argv[2] ?? '{}') as OnnxCase;
const status = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) * 1024;
try {
  writeFileSync('/proc/self/clear_refs', '5');
} catch {
  // an older kernel: the peak then includes start-up
}
const base = status('VmRSS');
const session = await ort.InferenceSession.create(c.onnx, {
  intraOpNumThreads: c.threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
});
const data = new Float32Array(c.batch * 3 * c.size * c.size);
for (let i = 0; i < data.length; i++) data[i] = Math.random() * 2 - 1;
const feeds = { [session.inputNames[0]!]: new ort.Tensor('float32', data, [c.batch, 3, c.size, c.size]) };
for (let i = 0; i < c.warmup; i++) await session.run(feeds);
const seconds: number[] = [];
for (let i = 0; i < c.iters; i++) {
  const t = process.hrtime.bigint();
  await session.run(feeds);
  seconds.push(Number(process.hrtime.bigint() - t) / 1e9);
}
await session.release();
console.log(JSON.stringify({ seconds, peakBytes: Math.max(0, status('VmHWM') - base), version: ort.env.versions.node ?? ort.env.versions.common }));
