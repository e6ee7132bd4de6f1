// A run directory's files under a full disk: summary.json and report.html are replaced atomically, so a
// write that fails half-way leaves the previous file whole. The disk is simulated at the fs layer
// (every write to the named files stores half its bytes, then fails with ENOSPC, as a full disk does);
// the reference is the file's content before the failed write.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs, { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { manualSeed, tensor, tidy } from '../lib/index.ts';
import { Sequential, Conv2d, BatchNorm2d, ReLU, AdaptiveAvgPool2d, Flatten, Linear } from '../lib/nn/index.ts';
import { SGD, LRScheduler, constant } from '../lib/optim/index.ts';
import { DataLoader, type BatchSource } from '../lib/data/index.ts';
import { fit } from '../lib/train/index.ts';
import { tmp } from './helpers.ts';

/** Runs fn while writes to files whose path matches `full` store half their bytes and fail with ENOSPC. */
async function diskFullFor<T>(full: RegExp, fn: () => Promise<T>): Promise<T> {
  const { writeSync, writeFileSync } = fs;
  const enospc = (): Error => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
  fs.writeFileSync = ((file: fs.PathOrFileDescriptor, data: string | NodeJS.ArrayBufferView, ...rest: never[]) => {
    if (typeof file !== 'string' || !full.test(file)) return writeFileSync(file, data, ...rest);
    const bytes = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    writeFileSync(file, bytes.subarray(0, bytes.length >> 1));
    throw enospc();
  }) as typeof fs.writeFileSync;
  fs.writeSync = ((fd: number, buf: NodeJS.ArrayBufferView, offset?: number, length?: number, ...rest: never[]) => {
    if (!full.test(readlinkSync(`/proc/self/fd/${fd}`))) return writeSync(fd, buf, offset, length, ...rest);
    writeSync(fd, buf, offset, Math.floor((length ?? buf.byteLength) / 2));
    throw enospc();
  }) as typeof fs.writeSync;
  syncBuiltinESMExports();
  try {
    return await fn();
  } finally {
    Object.assign(fs, { writeSync, writeFileSync });
    syncBuiltinESMExports();
  }
}

/** 64 random 8x8 images with labels from their index. */
const source: BatchSource = {
  length: 64,
  load: (indices) => tidy(() => ({
    x: tensor(Float32Array.from({ length: indices.length * 64 }, (_, i) => ((indices[i >> 6]! * 131 + i * 7) % 97) / 97), { shape: [indices.length, 1, 8, 8] }),
    y: tensor(Array.from(indices, (k) => k % 10), { dtype: 'int64' }),
  })),
};

function run(dir: string, epochs: number, resume: boolean) {
  manualSeed(0);
  const model = new Sequential(new Conv2d(1, 4, 3, { padding: 1 }), new BatchNorm2d(4), new ReLU(), new AdaptiveAvgPool2d(1), new Flatten(), new Linear(4, 10));
  const optimizer = new SGD(model.parameters(), { lr: 0.05, momentum: 0.9 });
  const loader = new DataLoader(source, { batchSize: 16, shuffle: true });
  return fit({ model, optimizer, schedule: new LRScheduler(optimizer, constant()), train: loader, test: loader, epochs, outDir: dir, resume, quiet: true });
}

test('a full disk leaves report.html and summary.json as they were, never truncated', async () => {
  const dir = tmp();
  await run(dir, 1, false);
  const report = readFileSync(join(dir, 'report.html'), 'utf8');
  const summary = readFileSync(join(dir, 'summary.json'), 'utf8');
  assert.ok(report.endsWith('</html>\n') && JSON.parse(summary).epochs === 1);
  // Epoch 2 ends with its checkpoint, then the report: the report's write fails.
  await diskFullFor(/report\.html/, () => run(dir, 2, true)).then(() => assert.unreachable('the write should fail'), (e: NodeJS.ErrnoException) => assert.is(e.code, 'ENOSPC'));
  assert.is(readFileSync(join(dir, 'report.html'), 'utf8'), report);
  // The finished run only writes its summary (and report) now: the summary's write fails.
  await diskFullFor(/summary\.json/, () => run(dir, 2, true)).then(() => assert.unreachable('the write should fail'), (e: NodeJS.ErrnoException) => assert.is(e.code, 'ENOSPC'));
  assert.is(readFileSync(join(dir, 'summary.json'), 'utf8'), summary);
  assert.equal(readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'no temporary file is left behind');
  // With space again, the run completes its files.
  await run(dir, 2, true);
  assert.is(JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')).epochs, 2);
  assert.ok(existsSync(join(dir, 'report.html')));
});

test.run();
