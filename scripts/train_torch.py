#!/usr/bin/env python3
"""PyTorch counterpart of `npm run train` for CIFAR-style ResNets on Fashion-MNIST.

The same recipe in plain PyTorch, to compare accuracy and time with ours on the same machine:
ResNet-6n+2 with option-A shortcuts (He et al. 2015 sec. 4.2), SGD with momentum, per-step cosine
learning rate (optional linear warm-up), weight decay on all parameters or not on BN/bias, optional
horizontal flips. Run it with the Python of the torch the addon links (.venv/bin/python):

  .venv/bin/python scripts/train_torch.py --epochs 1 --batch-size 128 --lr 0.1 --wd 1e-4

scripts/bench-time-to-accuracy.ts runs it with --target against `npm run train` with the same recipe.
"""
import argparse
import gzip
import json
import math
import os
import struct
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return torch.frombuffer(bytearray(data[4 + 4 * ndim :]), dtype=torch.uint8).reshape(dims)


def load(dir, split):
    prefix = "train" if split == "train" else "t10k"
    find = lambda stem: next(os.path.join(dir, f) for f in (stem, stem + ".gz") if os.path.exists(os.path.join(dir, f)))
    x = read_idx(find(f"{prefix}-images-idx3-ubyte")).unsqueeze(1)
    y = read_idx(find(f"{prefix}-labels-idx1-ubyte")).long()
    return x, y


class Block(nn.Module):
    def __init__(self, inp, out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out)
        self.conv2 = nn.Conv2d(out, out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.pad = out - inp
        self.stride = stride

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        s = x[:, :, :: self.stride, :: self.stride] if self.stride != 1 else x
        if self.pad:
            s = F.pad(s, (0, 0, 0, 0, 0, self.pad))
        return F.relu(y + s)


class CifarResNet(nn.Module):
    def __init__(self, n, in_ch=1, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, inp = [], 16
        for i, planes in enumerate((16, 32, 64)):
            for j in range(n):
                layers.append(Block(inp, planes, 2 if (i > 0 and j == 0) else 1))
                inp = planes
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--depth", type=int, default=20, help="6n+2 (20, 32, 44, 56, 110)")
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--wd", type=float, default=1e-4)
    p.add_argument("--no-decay-bn-bias", action="store_true", help="no weight decay on BN weights and biases")
    p.add_argument("--warmup", type=float, default=0.0, help="linear warm-up epochs (from 0.1 x lr)")
    p.add_argument("--flip", action="store_true", help="random horizontal flips")
    p.add_argument("--amp", choices=["bf16"], help="mixed precision: torch.autocast('cpu', bfloat16) around forward and loss")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target", type=float, help="stop after the first epoch whose test accuracy (a fraction) reaches this")
    p.add_argument("--output", help="write the result as JSON here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    xtr, ytr = load(a.data_dir, "train")
    xte, yte = load(a.data_dir, "test")
    mean, std = 0.286, 0.353
    norm = lambda x: (x.float() / 255 - mean) / std
    model = CifarResNet((a.depth - 2) // 6)
    decay = [p for n, p in model.named_parameters() if not (a.no_decay_bn_bias and p.ndim <= 1)]
    no_decay = [p for n, p in model.named_parameters() if a.no_decay_bn_bias and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": a.wd}] + ([{"params": no_decay, "weight_decay": 0.0}] if no_decay else [])
    opt = torch.optim.SGD(groups, lr=a.lr, momentum=a.momentum)
    steps_per_epoch = len(xtr) // a.batch_size
    total = a.epochs * steps_per_epoch
    warm = min(round(a.warmup * steps_per_epoch), total - 1)

    def lr_at(s):
        if s < warm:
            return a.lr * (0.1 + 0.9 * s / warm)
        return a.lr * 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm)))

    # --amp bf16: forward and loss under CPU autocast, in training and evaluation alike.
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.amp == "bf16")

    t0 = time.perf_counter()
    step = 0
    history = []
    for epoch in range(a.epochs):
        epoch_start = time.perf_counter()
        model.train()
        perm = torch.randperm(len(xtr))
        for b in range(steps_per_epoch):
            idx = perm[b * a.batch_size : (b + 1) * a.batch_size]
            x, y = norm(xtr[idx]), ytr[idx]
            if a.flip:
                m = torch.rand(len(x)) < 0.5
                x[m] = x[m].flip(3)
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            with autocast():
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        train_seconds = time.perf_counter() - epoch_start
        model.eval()
        correct = 0
        with torch.no_grad():
            for b in range(0, len(xte), 500):
                with autocast():
                    logits = model(norm(xte[b : b + 500]))
                correct += (logits.argmax(1) == yte[b : b + 500]).sum().item()
        acc = correct / len(xte)
        now = time.perf_counter()
        # Per epoch: its training seconds and its seconds with the evaluation, as resnet-ts's metrics.jsonl has them.
        history.append({"epoch": epoch + 1, "testAccuracy": acc, "trainSeconds": round(train_seconds, 3), "epochSeconds": round(now - epoch_start, 3)})
        print(f"epoch {epoch + 1}/{a.epochs}: test top1 {100 * acc:.2f}% ({now - t0:.1f}s)", flush=True)
        if a.target is not None and acc >= a.target:
            break
    result = {"testAccuracy": acc, "epochs": len(history), "seconds": round(time.perf_counter() - t0, 1), "torch": torch.__version__, "threads": a.threads, "amp": a.amp, "history": history}
    print(json.dumps(result))
    if a.output:
        with open(a.output, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main()
