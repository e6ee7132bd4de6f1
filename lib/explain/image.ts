// Grad-CAM of one decoded image as people look at it: the eval preprocessing (resize, centre crop), the map of
// one class (default the top one), and that map blended over the crop the model saw.
import { evalBatch, resizeCrop } from '../data/imagenet.ts';
import type { DecodedImage } from '../data/image-folder.ts';
import type { Module } from '../nn/module.ts';
import { tidy, type Device } from '../tensor.ts';
import { gradCam } from './grad-cam.ts';
import { overlayHeatmap, type RgbImage } from './overlay.ts';

/** Options of explainImage. */
export interface ExplainImageOptions {
  resize: number;
  crop: number;
  /** Default: defaultCamLayer(model). */
  layer?: string;
  classIndex?: number;
  device?: Device;
}

/** The layer Grad-CAM explains by default: the last stage (layer4 of ResNets, layer3 of the CIFAR nets) or DenseNets' features. */
export function defaultCamLayer(model: Module): string {
  const names = model.namedChildren().map(([n]) => n);
  const stage = names.filter((n) => /^layer\d+$/.test(n)).pop() ?? (names.includes('features') ? 'features' : undefined);
  if (!stage) throw new Error(`gradCam: ${model.constructor.name} has no layerN or features child; name the layer`);
  return stage;
}

/** The crop the model saw, as 8-bit RGB. */
export function seenCrop(img: DecodedImage, resize: number, crop: number): RgbImage {
  const data = tidy(() => resizeCrop(img, { resize, crop }).permute(1, 2, 0).contiguous().to('uint8').toArray() as Uint8Array);
  return { data, width: crop, height: crop };
}

/** Grad-CAM of one image: the class explained, its map [crop × crop] in 0..1, and the map over the crop. */
export function explainImage(model: Module, img: DecodedImage, o: ExplainImageOptions): { classIndex: number; cam: Float32Array; overlay: RgbImage } {
  const layer = o.layer ?? defaultCamLayer(model);
  const { cam, classIndex } = tidy(() => {
    const r = gradCam(model, evalBatch([img], { resize: o.resize, crop: o.crop, device: o.device }), { layer, classIndex: o.classIndex });
    return { cam: r.cam.cpu().toArray() as Float32Array, classIndex: r.classIndex[0]! };
  });
  return { classIndex, cam, overlay: overlayHeatmap(seenCrop(img, o.resize, o.crop), cam) };
}
