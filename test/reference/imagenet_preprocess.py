"""torchvision's ImageNet eval preprocessing, the oracle for test/imagenet-preprocess.test.ts.

Usage: python3 imagenet_preprocess.py SPEC.json
SPEC: {"resize": 256, "crop": 224, "items": [{"path": "a.jpg", "rgb": "a.rgb", "height": H, "width": W, "out": "a"}]}
For each item writes <out>.pil.f32 (PIL path: Image.open + convert('RGB') + Resize + CenterCrop + ToTensor
+ Normalize, as torchvision's ImageFolder and reference scripts do) and, when "rgb" names raw HWC bytes,
<out>.tensor.f32 (tensor path on those same pixels: F.resize(antialias=True) on a uint8 tensor, as
torchvision's ImageClassification preset does). Prints {"ok": n} last.
"""
import json
import sys

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as F

spec = json.load(open(sys.argv[1]))
mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
pil_path = T.Compose([T.Resize(spec["resize"]), T.CenterCrop(spec["crop"]), T.ToTensor(), T.Normalize(mean, std)])
for item in spec["items"]:
    with open(item["path"], "rb") as f:
        img = Image.open(f).convert("RGB")
    pil_path(img).numpy().astype("<f4").tofile(item["out"] + ".pil.f32")
    if item.get("rgb"):
        hwc = np.fromfile(item["rgb"], dtype=np.uint8).reshape(item["height"], item["width"], 3)
        x = torch.from_numpy(hwc).permute(2, 0, 1)
        x = F.resize(x, [spec["resize"]], antialias=True)
        x = F.center_crop(x, [spec["crop"]])
        x = F.normalize(F.convert_image_dtype(x, torch.float), mean, std)
        x.numpy().astype("<f4").tofile(item["out"] + ".tensor.f32")
print(json.dumps({"ok": len(spec["items"])}))
