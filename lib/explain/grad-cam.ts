// Grad-CAM (Selvaraju et al. 2017): which parts of an image drove a class score, from the gradients that
// flow into one layer's activations. A forward hook swaps the layer's output for a detached leaf that
// requires grad, so backward stops there and its .grad is dA — no parameter gradients are touched.
import { tensor } from '../creation.ts';
import { interpolateBilinear } from '../nn/functional.ts';
import type { Module } from '../nn/module.ts';
import { enableGrad, keep, tidy, type Tensor } from '../tensor.ts';

/** Options of gradCam. */
export interface GradCamOptions {
  /** The layer whose activations are explained: a dotted module path ('layer4', 'layer3.1') or the module. */
  layer: string | Module;
  /** The class to explain, one for the batch or one per image; default each image's top class. */
  classIndex?: number | readonly number[];
}

/** Grad-CAM maps of a batch. */
export interface GradCamResult {
  /** [N, H, W] at the input's resolution, each map scaled to 0..1 (bilinear upsampling, then min-max). */
  cam: Tensor;
  /** [N, h, w] at the layer's resolution: ReLU(Σ_k α_k A_k), α_k the spatial mean of ∂score/∂A_k. */
  raw: Tensor;
  /** The class explained for each image. */
  classIndex: number[];
}

function findLayer(model: Module, layer: string | Module): Module {
  if (typeof layer !== 'string') {
    if (!model.modules().includes(layer)) throw new Error('gradCam: the layer is not a module of this model');
    return layer;
  }
  const found = model.namedModules().find(([p]) => p === layer)?.[1];
  if (!found || layer === '') {
    const names = model.namedChildren().map(([n]) => n).join(', ');
    throw new Error(`gradCam: no module '${layer}' in ${model.constructor.name} (its children: ${names}; deeper ones by dotted path)`);
  }
  return found;
}

/**
 * Grad-CAM of `model` on the batch x [N, 3, H, W] for one layer. The model runs as it is set (call eval()
 * first for inference behaviour); its parameters' requiresGrad and gradients are left as they were.
 */
export function gradCam(model: Module, x: Tensor, { layer, classIndex }: GradCamOptions): GradCamResult {
  if (x.ndim !== 4) throw new Error(`gradCam: expected a batch [N, C, H, W]; got shape [${x.shape.join(', ')}]`);
  const target = findLayer(model, layer);
  const [n, , height, width] = x.shape as [number, number, number, number];
  const params = model.parameters();
  const wanted = params.map((p) => p.requiresGrad);
  let activation: Tensor | undefined;
  const hook = target.registerForwardHook((_m, _x, y) => {
    if (y.ndim !== 4) throw new Error(`gradCam: layer output must be [N, C, h, w]; got [${y.shape.join(', ')}]`);
    activation = keep(y.detach().requiresGrad_(true));
    return activation.clone(); // a handle of its own: the caller may dispose or modify what it gets in place
  });
  try {
    model.requiresGrad_(false);
    return tidy(() => enableGrad(() => {
      const logits = model.forward(x);
      if (!activation) throw new Error('gradCam: the layer did not run in forward');
      const classes = classIndex === undefined ? Array.from(logits.argmax(1).toArray() as BigInt64Array, Number)
        : typeof classIndex === 'number' ? new Array<number>(n).fill(classIndex) : [...classIndex];
      const k = logits.shape[1]!;
      if (classes.length !== n || classes.some((c) => !Number.isInteger(c) || c < 0 || c >= k)) {
        throw new Error(`gradCam: classIndex must be ${n === 1 ? 'an integer' : `${n} integers`} in [0, ${k}); got ${JSON.stringify(classIndex)}`);
      }
      logits.gather(1, tensor(classes, { shape: [n, 1], dtype: 'int64', device: logits.device })).sum().backward();
      const grad = activation.grad!;
      const raw = activation.mul(grad.mean([2, 3], true)).sum(1).relu();
      const up = interpolateBilinear(raw.unsqueeze(1), [height, width], { antialias: false }).squeeze(1);
      const flat = up.flatten(1);
      const lo = flat.min(1, true).values.unsqueeze(2);
      const span = flat.max(1, true).values.unsqueeze(2).sub(lo);
      // A map that is zero everywhere (the class had no positive evidence) stays zero instead of 0/0.
      const cam = up.sub(lo).div(span.maskedFill(span.eq(0), 1));
      return { cam: cam.detach(), raw: raw.detach(), classIndex: classes };
    }));
  } finally {
    hook.remove();
    activation?.dispose();
    params.forEach((p, i) => p.requiresGrad_(wanted[i]!));
  }
}
