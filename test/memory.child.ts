// Child process of memory.test.ts (run with --expose-gc): scenarios that need a fresh heap and a
// callable gc(). Prints one JSON line.
import { ones, zeros, tidy, memory } from '../lib/index.ts';

const gc = (globalThis as { gc?: () => void }).gc!;
const turn = () => new Promise<void>((r) => setImmediate(r));

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    gc();
    await turn();
  }
}

const scenario = process.argv[2];
if (scenario === 'finalizer') {
  await settle();
  const base = memory();
  (() => {
    for (let i = 0; i < 2000; i++) zeros([256]); // forgotten: never disposed, never referenced
  })();
  const leaked = memory().tensors - base.tensors;
  await settle();
  console.log(JSON.stringify({ leaked, after: memory().tensors - base.tensors, bytesAfter: memory().bytes - base.bytes }));
} else if (scenario === 'rss') {
  const x = ones([8]);
  // Each round yields to the event loop, as a training loop between steps does.
  const round = async () => {
    tidy(() => { for (let i = 0; i < 20_000; i++) x.add(1).mul(x).relu(); });
    await settle();
  };
  for (let i = 0; i < 3; i++) await round();
  const before = process.memoryUsage().rss;
  for (let i = 0; i < 10; i++) await round();
  console.log(JSON.stringify({ growth: process.memoryUsage().rss - before, tensors: memory().tensors }));
}
