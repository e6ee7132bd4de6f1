// Image folders for training: val/ must have train/'s classes. Reference: torchvision 0.14's ImageFolder, whose
// class_to_idx on such a pair shows the label shift the check prevents; and `train` refusing the folder.
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { data } from '../lib/index.ts';
import { py, root, tmp, visionPython } from './helpers.ts';

const dir = tmp('image-folder-');

test('a val/ without one of train/\'s classes (or with another) is an error naming them, in folderSource and in train', async () => {
  for (const sub of ['train/cat', 'train/dog', 'train/emu', 'val/cat', 'val/emu', 'val/fox', 'ok/cat', 'ok/dog', 'ok/emu']) {
    mkdirSync(join(dir, sub), { recursive: true });
    await sharp({ create: { width: 8, height: 8, channels: 3, background: '#808080' } }).png().toFile(join(dir, sub, 'a.png'));
  }
  const idx = py<Record<string, Record<string, number>>>(`import json, torchvision
print(json.dumps({s: torchvision.datasets.ImageFolder('${dir}/' + s).class_to_idx for s in ('train', 'val')}))`, { python: visionPython });
  assert.ok(idx.train!.emu !== idx.val!.emu, 'torchvision gives emu another label in val/'); // the silent shift
  const train = data.folderSource(join(dir, 'train'), 8);
  assert.equal(train.classes, Object.keys(idx.train!));
  assert.throws(() => data.folderSource(join(dir, 'val'), 8, { sameClassesAs: { dir: join(dir, 'train'), classes: train.classes } }),
    (e: Error) => e.message.includes(`missing from ${join(dir, 'val')}: dog`) && e.message.includes(`not in ${join(dir, 'train')}: fox`));
  assert.equal(data.folderSource(join(dir, 'ok'), 8, { sameClassesAs: { dir: join(dir, 'train'), classes: train.classes } }).classes, train.classes);
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts/train.ts'), '--model', 'resnet18', '--data', dir, '--epochs', '1'],
    { cwd: root, encoding: 'utf8', timeout: 120_000 });
  assert.ok(r.status !== 0 && /missing from .*val: dog; not in .*train: fox/.test(r.stderr), r.stderr);
});

test.run();
