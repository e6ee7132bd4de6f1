// explain: where a classifier looked — Grad-CAM maps and their overlay on the image.
export { gradCam, type GradCamOptions, type GradCamResult } from './grad-cam.ts';
export { overlayHeatmap, writePng, encodePng, type RgbImage } from './overlay.ts';
export { explainImage, defaultCamLayer, seenCrop, type ExplainImageOptions } from './image.ts';
