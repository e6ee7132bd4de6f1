"""PyTorch side of `npm run bench`: the same cases as scripts/bench.ts, timed in this process.

Run by scripts/bench.ts with the Python of the very torch build the addon links. torchvision is
not importable beside the pip CPU torch here, so the ResNet/ResNeXt below follow torchvision's
models/resnet.py layer for layer (same shapes, same ops, same state-dict keys); inference cases load the
torchvision oracle's weights (case "weights", a .pth) that resnet-ts and onnxruntime-node run too.
Inference is eager under no_grad: float32 as models come (NCHW), bf16 as PyTorch's CPU recipe has it
(channels-last and autocast).

It stays up for the whole case, so the bench can alternate the sides in short rounds (the Peer class in scripts/bench.ts
drives it): python bench_torch.py '<json case>'
  -> {"ready": true, "torch": "..."}   after building the case and its warm-up steps
  <- "time N"  -> {"seconds": [...], "span": [t0, t1]}   one untimed step, then N timed ones (micro: seconds
                                                       per call); span: when the turn began and ended, ms since the epoch
  <- "end"     -> {"peakBytes": N}      and exits
"""
import json
import sys
import time

import torch
import torch.nn as nn


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self, block, layers, groups=1, width_per_group=64, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, groups=self.groups, base_width=self.base_width) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


MODELS = {
    'resnet18': lambda: ResNet(BasicBlock, [2, 2, 2, 2]),
    'resnet50': lambda: ResNet(Bottleneck, [3, 4, 6, 3]),
    'resnext50_32x4d': lambda: ResNet(Bottleneck, [3, 4, 6, 3], groups=32, width_per_group=4),
}


def sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def status_bytes(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak():
    """Resets the resident set's high-water mark (as bench.ts does) and returns the current RSS."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        pass
    return status_bytes('VmRSS')


def setup(case):
    """Builds the case; returns (step, per, peak): one step, the number of calls a step makes, the peak so far."""
    torch.set_num_threads(case['threads'])
    base = reset_peak()
    device = case.get('device', 'cpu')

    def host_peak():
        return max(0, status_bytes('VmHWM') - base)

    if case['kind'] == 'micro':
        x = torch.ones(1, device=device)
        n = case['calls']
        for _ in range(1000):
            x + x

        def calls():
            for _ in range(n):
                x + x
        return calls, n, host_peak
    torch.manual_seed(0)
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    model = MODELS[case['model']]()
    if case.get('weights'):
        model.load_state_dict(torch.load(case['weights'], map_location='cpu', weights_only=True))
    model = model.to(device)
    cl = case.get('channelsLast', False)
    if cl:
        model = model.to(memory_format=torch.channels_last)
    b, s = case['batch'], case['size']
    x = torch.randn(b, 3, s, s, device=device)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    amp = case.get('amp')
    ac = (lambda: torch.autocast(device_type=device.split(':')[0], dtype=torch.bfloat16)) if amp == 'bf16' else None
    if case['kind'] == 'infer':
        model.eval()

        def step():
            with torch.no_grad():
                if ac:
                    with ac():
                        model(x)
                else:
                    model(x)
    else:
        model.train()
        y = torch.randint(0, 1000, (b,), device=device)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4,
                              foreach=True)

        def step():
            opt.zero_grad(set_to_none=True)
            if ac:
                with ac():
                    loss = nn.functional.cross_entropy(model(x), y)
            else:
                loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()

    def synced():
        step()
        sync(device)
    for _ in range(case['warmup']):
        synced()
    return synced, 1, (torch.cuda.max_memory_allocated if device.startswith('cuda') else host_peak)


def reply(obj):
    sys.stdout.write(json.dumps(obj) + '\n')
    sys.stdout.flush()


def serve(case):
    step, per, peak = setup(case)
    capability = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, 'cpu') else None
    reply({'ready': True, 'torch': torch.__version__, 'capability': capability})
    for line in sys.stdin:
        cmd = line.split()
        if cmd and cmd[0] == 'time':
            t0 = time.time() * 1000
            step()
            out = []
            for _ in range(int(cmd[1])):
                t = time.perf_counter()
                step()
                out.append((time.perf_counter() - t) / per)
            reply({'seconds': out, 'span': [t0, time.time() * 1000]})
        elif cmd == ['end']:
            break
        else:
            raise ValueError(f'bench_torch: unknown command {line!r}')
    reply({'peakBytes': peak()})


if __name__ == '__main__':
    serve(json.loads(sys.argv[1]))
