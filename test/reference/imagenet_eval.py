"""torchvision's ImageNet evaluation, the oracle for test/eval-imagenet.test.ts.

Usage: python3 imagenet_eval.py SPEC.json
SPEC: {"arch": "resnet18", "weights": "w.pth", "resize": R, "crop": C, "init_seed": S (optional),
       "root": DIR (ImageFolder layout) or "images": [paths] (labels all 0)}
With init_seed, first saves torchvision's random-init weights for arch to "weights" (torch.save).
Lists like torchvision's ImageFolder (find_classes + make_dataset, empty class folders allowed), loads
with PIL convert('RGB') and applies the eval preset on the tensor (ImageClassification: antialiased
bilinear resize, center crop, [0,1], normalize), as the weights' transforms() do. Files PIL cannot
read are skipped. Prints {"top1", "top5", "images", "skipped", "preds": [[path, label, top5...]]}.
"""
import json
import sys

import torch
import torchvision
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from torchvision.transforms import functional as F
from torchvision.transforms._presets import ImageClassification

spec = json.load(open(sys.argv[1]))
if "init_seed" in spec:
    torch.manual_seed(spec["init_seed"])
    torch.save(getattr(torchvision.models, spec["arch"])().state_dict(), spec["weights"])
model = getattr(torchvision.models, spec["arch"])()
model.load_state_dict(torch.load(spec["weights"]))
model.eval()
preset = ImageClassification(crop_size=spec["crop"], resize_size=spec["resize"])

if "root" in spec:
    classes, c2i = find_classes(spec["root"])
    samples = []
    for c in classes:  # make_dataset refuses empty classes as a whole, so ask class by class
        try:
            samples += make_dataset(spec["root"], {c: c2i[c]}, IMG_EXTENSIONS)
        except FileNotFoundError:
            pass
else:
    samples = [(p, 0) for p in spec["images"]]

preds, c1, c5, skipped = [], 0, 0, 0
with torch.no_grad():
    for path, label in samples:
        try:
            with open(path, "rb") as f:
                img = Image.open(f).convert("RGB")
        except OSError:
            skipped += 1
            continue
        logits = model(preset(F.pil_to_tensor(img)).unsqueeze(0))
        top5 = logits.topk(5, 1).indices[0].tolist()
        c1 += top5[0] == label
        c5 += label in top5
        preds.append([path, label] + top5)
n = len(preds)
print(json.dumps({"top1": c1 / n, "top5": c5 / n, "images": n, "skipped": skipped, "preds": preds}))
