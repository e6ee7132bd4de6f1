// The CUDA-graph training step (`train --cuda-graph`, `bench --cuda-graph`): forward, loss and backward
// are captured once into a CUDA graph on static input/target buffers and replayed for every batch, which
// removes the per-kernel launch cost that dominates small nets. This is torch.cuda.graphs' "partial
// network capture": the optimizer step runs eagerly after each replay, so learning-rate schedules,
// gradient clipping and both optimizers work unchanged, and the loss is checked (and agreed over ranks)
// before anything is updated, exactly as in the eager step.
import { CUDAGraph, cudaWarmup } from '../cuda.ts';
import { cuda } from '../device.ts';
import { keep, tidy, type Tensor } from '../tensor.ts';
import * as F from '../nn/functional.ts';
import { clipGradNorm } from '../optim/clip.ts';
import type { Batch } from '../data/loader.ts';
import { ampForward } from './evaluate.ts';
import { eagerStep, type StepFactory, type StepParts } from './step.ts';

/** A CUDA-graph step asked for where a graph cannot apply; the message says why. */
export class CudaGraphError extends Error {
  override name = 'CudaGraphError';
}

/** Why a CUDA-graph step cannot train with these parts, or null when it can. */
export function cudaGraphRefusal(p: Pick<StepParts, 'device' | 'ddp' | 'scaler' | 'amp'>): string | null {
  if (!p.device.startsWith('cuda')) return `CUDA graphs need a CUDA device; this run trains on ${p.device}`;
  if (!cuda.isBuilt()) return 'CUDA graphs need a CUDA build of libtorch; this one is CPU-only';
  if (!cuda.isAvailable()) return 'CUDA graphs need a CUDA device; none is available';
  if (p.ddp) {
    return 'CUDA graphs are not supported with data-parallel training: the DDP reducer allreduces gradient buckets from ' +
      'autograd hooks as backward runs, which a capture cannot hold (train on one process, or leave --cuda-graph out)';
  }
  if (p.scaler || p.amp === 'fp16') {
    return 'CUDA graphs are not supported with fp16: the grad scaler changes its scale between steps and a graph would ' +
      'replay the scale it captured (use --amp bf16, which needs no scaler)';
  }
  return null;
}

// Warm-up iterations on a side stream before the capture (PyTorch's docs use 3; DDP would need 11).
const WARMUP = 3;

/** What one capture holds: the static buffers it reads, the outputs it writes, the gradients it fills. */
interface Captured {
  graph: CUDAGraph;
  x: Tensor;
  y: Tensor;
  loss: Tensor;
  top1: Tensor;
  top5: Tensor;
  grads: (Tensor | null)[];
}

const sameLayout = (a: Tensor, b: Tensor): boolean =>
  a.dtype === b.dtype && a.shape.join() === b.shape.join() && a.strides.join() === b.strides.join();

/**
 * The CUDA-graph step (a StepFactory for fit): captures at the first batch; a batch of another shape
 * (the last partial one, when the loader keeps it) trains eagerly and the captured gradients are put back.
 * Throws CudaGraphError where graphs cannot apply (CPU, no CUDA device, data-parallel, fp16).
 */
export const graphStep: StepFactory = (parts) => {
  const why = cudaGraphRefusal(parts);
  if (why) throw new CudaGraphError(`--cuda-graph: ${why}`);
  const { model, optimizer, clipGradNorm: clip, labelSmoothing, amp, device } = parts;
  const params = model.parameters();
  const eager = eagerStep(parts);
  let g: Captured | undefined;

  // Forward, loss, backward and the top-1/top-5 hit counts, all as tensors (no host sync inside a capture).
  const forwardBackward = (x: Tensor, y: Tensor): [Tensor, Tensor, Tensor] => {
    const logits = ampForward((t) => model.forward(t), x, amp, device);
    const loss = F.crossEntropy(logits, y, { labelSmoothing });
    loss.backward();
    const hit = logits.detach().topk(Math.min(5, logits.shape[1]!), 1).indices.eq(y.unsqueeze(1)).to('float32');
    return [loss.detach(), hit.select(1, 0).sum(), hit.sum()];
  };

  const capture = (b: Batch): Captured => {
    const x = keep(b.x.clone());
    const y = keep(b.y.clone());
    // Warm-up moves BatchNorm's running statistics; they are put back so the run learns what eager would.
    const saved = model.buffers().map((t) => keep(t.clone()));
    cudaWarmup(() => tidy(() => void forwardBackward(x, y)), WARMUP);
    tidy(() => model.buffers().forEach((t, i) => void t.copy_(saved[i]!)));
    for (const t of saved) t.dispose();
    // Gradients must not exist at capture: backward then allocates them in the graph's pool and each
    // replay writes them afresh (with existing ones every replay would add to them).
    optimizer.zeroGrad();
    let outs: [Tensor, Tensor, Tensor] | undefined;
    const graph = new CUDAGraph().capture(() => {
      outs = tidy(() => forwardBackward(x, y).map((t) => keep(t)) as [Tensor, Tensor, Tensor]);
    });
    const [loss, top1, top5] = outs!;
    const grads = params.map((p) => {
      const grad = p.grad;
      return grad ? keep(grad) : null;
    });
    return { graph, x, y, loss, top1, top5, grads };
  };

  return (b, agree) => {
    if (g && !(sameLayout(g.x, b.x) && sameLayout(g.y, b.y))) {
      const r = eager(b, agree);
      params.forEach((p, i) => (p.grad = g!.grads[i] ?? null));
      return r;
    }
    g ??= capture(b);
    tidy(() => {
      g!.x.copy_(b.x, true);
      g!.y.copy_(b.y, true);
    });
    g.graph.replay();
    const value = agree(g.loss.item());
    if (!Number.isFinite(value)) return { loss: value, top1: 0, top5: 0 };
    tidy(() => {
      if (clip) clipGradNorm(params, clip);
      optimizer.step();
    });
    return { loss: value, top1: g.top1.item(), top5: g.top5.item() };
  };
};
