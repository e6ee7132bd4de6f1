// explain: where a classifier looked — Grad-CAM maps and their overlay on the image.
export { gradCam, type GradCamOptions, type GradCamResult } from './grad-cam.ts';
export { overlayHeatmap, writePng, type RgbImage } from './overlay.ts';
