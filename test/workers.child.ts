// Child process of workers.test.ts, so RSS is this scenario's alone: a warm-up Worker, then twelve
// Workers at once, each computing a matmul and ending while it holds a 64 MiB tensor.
// Usage: node --import tsx test/workers.child.ts <n>   Prints one line: WORKERS {json}.
import { Worker } from 'node:worker_threads';
import { ones } from '../lib/creation.ts';

const rssMiB = (): number => process.memoryUsage().rss / 2 ** 20;
// Workers do not inherit tsx's loader from --import on Node 20, so each registers it first.
const boot = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(new URL('./workers.worker.ts', import.meta.url).href)}); })`;
const run = (n: number): Promise<unknown[]> => Promise.all(Array.from({ length: n }, () => new Promise<unknown>((resolve, reject) => {
  const w = new Worker(boot, { eval: true, workerData: { job: 'hold', n: Number(process.argv[2] ?? 8) } });
  let msg: unknown;
  w.on('message', (m) => (msg = m));
  w.on('error', reject);
  w.on('exit', (code) => (code === 0 ? resolve(msg) : reject(new Error(`worker exited with ${code}`))));
})));

ones([1]).dispose();
await run(1); // one-time costs of the first Worker (tsx's loader thread, libtorch's thread state)
const start = rssMiB();
const held = await run(12);
const end = rssMiB();
console.log('WORKERS ' + JSON.stringify({ start, end, held }));
