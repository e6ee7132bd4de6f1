// For the serve tests: `resnet-ts serve` as a child process on a loopback port, torchvision-made weights,
// and small images. The server prints its URL when it listens (--port 0 picks a free port).
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { py, root, tmp, visionPython } from './helpers.ts';

/** A running server. */
export interface Child {
  url: string;
  proc: ChildProcess;
  /** Everything it printed so far. */
  output: () => string;
  /** Resolves with the exit code (or the signal's name). */
  exited: Promise<number | string>;
}

const children: ChildProcess[] = [];

/** Starts scripts/serve.ts with args (plus --port 0) and waits for its URL. */
export function startServer(args: string[]): Promise<Child> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(root, 'scripts/serve.ts'), '--port', '0', ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  let out = '';
  const exited = new Promise<number | string>((resolve) => proc.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer): void => {
      out += d.toString();
      const m = /on (http:\/\/\S+\/)/.exec(out);
      if (m) resolve({ url: m[1]!, proc, output: () => out, exited });
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    void exited.then((code) => reject(new Error(`serve exited (${code}) before listening:\n${out}`)));
  });
}

/** Ends every server still running (for test.after). */
export function stopServers(): void {
  for (const p of children.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
}

/** torchvision's side of the serve tests: a seeded resnet18 .pth, a PNG it wrote, and its top-5 for that PNG. */
export interface Fixture {
  weights: string;
  png: string;
  indices: number[];
  labels: string[];
  probabilities: number[];
  /** The smallest gap between the top-6 logits: how well defined the top-5 order is. */
  margin: number;
}

let fixture: Fixture | undefined;

/**
 * Made once per process by Debian's torchvision (the oracle): random init seeded, BN affine parameters
 * perturbed and statistics calibrated by two train-mode passes, so that every tensor matters. The image
 * (seed 7: its top-6 logits are >= 0.06 apart, so the order is far from ties)
 * is classified as torchvision's users do (PIL + the weights' preset transforms).
 */
export function torchvisionFixture(): Fixture {
  if (fixture) return fixture;
  const dir = tmp('serve-fixture-');
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const weights = join(dir, 'resnet18.pth');
  const png = join(dir, 'tv.png');
  const top = py<Omit<Fixture, 'weights' | 'png'>>(`import json, torch, torch.nn.functional as F, torchvision
from PIL import Image
from torchvision.io import write_png
from torchvision.models import ResNet18_Weights
torch.manual_seed(0)
m = torchvision.models.resnet18()
bns = [b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]
with torch.no_grad():
    for b in bns:
        b.momentum = None
        b.weight.uniform_(0.5, 1.5)
        b.bias.normal_(0, 0.1)
    m.train()
    for _ in range(2):
        m(torch.randn(2, 3, 96, 96))
for b in bns:
    b.momentum = 0.1
m.eval()
torch.save(m.state_dict(), ${JSON.stringify(weights)})
torch.manual_seed(7)
img = (F.interpolate(torch.rand(1, 3, 6, 8), size=(240, 320), mode='bicubic', align_corners=False).clamp(0, 1) * 255).round().to(torch.uint8)[0]
write_png(img, ${JSON.stringify(png)})
w = ResNet18_Weights.IMAGENET1K_V1
with torch.no_grad():
    logits = m(w.transforms()(Image.open(${JSON.stringify(png)}).convert('RGB')).unsqueeze(0))[0]
l, i = logits.topk(6)
print(json.dumps({"indices": i[:5].tolist(), "labels": [w.meta["categories"][k] for k in i[:5]],
                  "probabilities": logits.softmax(0)[i[:5]].tolist(), "margin": min((l[:5] - l[1:6]).tolist())}))`, { python: visionPython });
  fixture = { weights, png, ...top };
  return fixture;
}

/** A smooth random JPEG of w x h (blurred noise, seeded). */
export async function jpeg(w: number, h: number, seed: number): Promise<Buffer> {
  let s = seed >>> 0;
  const px = Buffer.alloc(w * h * 3);
  for (let i = 0; i < px.length; i++) px[i] = (s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 24;
  return sharp(px, { raw: { width: w, height: h, channels: 3 } }).blur(3).jpeg({ quality: 90 }).toBuffer();
}

/** Reads one sample of a Prometheus text exposition ('' labels for none); NaN when absent. */
export function metric(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(labels ? `${name}{${labels}}` : `${name} `));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : NaN;
}
