"""Weights for `npm run bench`, made by the torchvision oracle (Debian's /usr/bin/python3, torch 1.13).

For each model name: torchvision's seeded random init, BatchNorm statistics calibrated by two train-mode
passes so folding them matters, then DIR/NAME.pth (torch.save, read by PyTorch's side and ours) and
DIR/NAME.onnx (torch.onnx.export, opset 13, dynamic batch and image size, eval mode: what onnxruntime-node runs).

Usage: /usr/bin/python3 bench_onnx_export.py DIR NAME [NAME ...]   ->  prints {"NAME": {"pth": ..., "onnx": ...}}
"""
import json
import os
import sys

import torch
import torchvision


def build(name):
    torch.manual_seed(0)
    m = getattr(torchvision.models, name)()
    with torch.no_grad():
        for b in m.modules():
            if isinstance(b, torch.nn.BatchNorm2d):
                b.momentum = None
        m.train()
        for _ in range(2):
            m(torch.randn(2, 3, 224, 224))
    return m.eval()


def main():
    out, names = sys.argv[1], sys.argv[2:]
    os.makedirs(out, exist_ok=True)
    files = {}
    for name in names:
        pth, onnx = os.path.join(out, f'{name}.pth'), os.path.join(out, f'{name}.onnx')
        if not (os.path.exists(pth) and os.path.exists(onnx)):
            m = build(name)
            torch.save(m.state_dict(), pth + '.tmp')
            torch.onnx.export(m, torch.randn(1, 3, 224, 224), onnx + '.tmp', opset_version=13, input_names=['x'],
                              output_names=['y'], dynamic_axes={'x': {0: 'n', 2: 'h', 3: 'w'}, 'y': {0: 'n'}})
            os.replace(pth + '.tmp', pth)
            os.replace(onnx + '.tmp', onnx)
        files[name] = {'pth': pth, 'onnx': onnx}
    print(json.dumps(files))


main()
