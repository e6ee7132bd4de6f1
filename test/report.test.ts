// report.html rendered by Debian's headless Chromium: the curves are drawn (pixels in the line
// colours, against the same page with no data as the control) and the page needs no network.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { writeReport, type MetricRecord } from '../lib/train/index.ts';
import { tmp } from './helpers.ts';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const RED = [255, 99, 132];
const BLUE = [54, 162, 235];

function history(epochs: number): MetricRecord[] {
  const out: MetricRecord[] = [];
  for (let e = 0; e < epochs; e++) {
    for (let k = 1; k <= 4; k++) out.push({ kind: 'step', epoch: e, step: e * 4 + k, x: e + k / 4, loss: 2 / (1 + e + k / 4), lr: 0.1 });
    out.push({
      kind: 'epoch', epoch: e, step: (e + 1) * 4, lr: 0.1, trainLoss: 1.5 / (e + 1), trainTop1: 0.5 + 0.1 * e, trainTop5: 0.9,
      testLoss: 1.6 / (e + 1), testTop1: 0.45 + 0.12 * e, testTop5: 0.95, imagesPerSec: 500, epochTime: 10,
    });
  }
  return out;
}

/** Pixels of each line colour in a Chromium screenshot of the page. */
async function colourPixels(html: string): Promise<{ red: number; blue: number }> {
  const dir = tmp();
  const png = join(dir, 'shot.png');
  const r = spawnSync(CHROMIUM, [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run', `--user-data-dir=${join(dir, 'profile')}`,
    '--hide-scrollbars', '--window-size=1280,900', '--virtual-time-budget=5000', `--screenshot=${png}`, `file://${html}`,
  ], { encoding: 'utf8', timeout: 120_000 });
  assert.ok(existsSync(png), `chromium made no screenshot: ${r.stderr}`);
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  let red = 0;
  let blue = 0;
  const near = (i: number, c: number[]) => Math.abs(data[i]! - c[0]!) + Math.abs(data[i + 1]! - c[1]!) + Math.abs(data[i + 2]! - c[2]!) < 30;
  for (let i = 0; i < info.width * info.height * 3; i += 3) {
    if (near(i, RED)) red++;
    if (near(i, BLUE)) blue++;
  }
  return { red, blue };
}

test('report.html draws the train and test curves in headless Chromium (empty report as control)', async () => {
  const dir = tmp();
  const full = join(dir, 'report.html');
  const empty = join(dir, 'empty.html');
  writeReport(full, 'test run', history(5), { testAccuracy: 0.93, model: 'resnet20' });
  writeReport(empty, 'empty run', [], {});
  const f = await colourPixels(full);
  const e = await colourPixels(empty);
  // The legends hold the colours in both; only drawn lines add hundreds of pixels.
  assert.ok(f.red - e.red > 300, `red (test) curve pixels: ${f.red} vs ${e.red} without data`);
  assert.ok(f.blue - e.blue > 300, `blue (train) curve pixels: ${f.blue} vs ${e.blue} without data`);
});

test('report.html is self-contained: Chart.js inlined, no external scripts, data escaped', () => {
  const dir = tmp();
  const path = join(dir, 'report.html');
  writeReport(path, 'a </script> title', history(1), { model: '<b>x</b>' });
  const html = readFileSync(path, 'utf8');
  assert.not.match(html, /<script[^>]+src=/);
  assert.match(html, /Chart\.js v\d/);
  assert.not.match(html, /<b>x<\/b>/);
  assert.is(html.split('</script>').length - 1, 2);
});

test.run();
