// onnxruntime-node's side of `npm run bench`: one inference case in this process (CPU execution provider, the
// case's thread count, sequential execution), on the ONNX file the torchvision oracle exported from the same
// weights the other sides load. It stays up for the whole case so the bench can alternate the sides in short
// rounds (the Peer class in scripts/bench.ts drives it):
//   node --import tsx scripts/bench_onnx.ts '<json case>'
//   -> {"ready": true, "version": "..."}   after loading the model and the case's warm-up runs
//   <- "time N"  -> {"seconds": [...], "span": [t0, t1]}   one untimed run, then N timed ones; span: when the turn
//                                                         began and ended, ms since the epoch
//   <- "end"     -> {"peakBytes": N}        and exits
import { readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import ort from 'onnxruntime-node';

interface OnnxCase { onnx: string; batch: number; size: number; threads: number; warmup: number }

const c = JSON.parse(process.argv[2] ?? '{}') as OnnxCase;
const status = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) * 1024;
const reply = (o: object): void => void process.stdout.write(`${JSON.stringify(o)}\n`);
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
reply({ ready: true, version: ort.env.versions.node ?? ort.env.versions.common });

for await (const line of createInterface({ input: process.stdin })) {
  const [cmd, n] = line.trim().split(/\s+/);
  if (cmd === 'time') {
    const t0 = Date.now();
    await session.run(feeds);
    const seconds: number[] = [];
    for (let i = 0; i < Number(n); i++) {
      const t = process.hrtime.bigint();
      await session.run(feeds);
      seconds.push(Number(process.hrtime.bigint() - t) / 1e9);
    }
    reply({ seconds, span: [t0, Date.now()] });
  } else if (cmd === 'end') {
    break;
  } else {
    throw new Error(`bench_onnx: unknown command ${JSON.stringify(line)}`);
  }
}
await session.release();
reply({ peakBytes: Math.max(0, status('VmHWM') - base) });
