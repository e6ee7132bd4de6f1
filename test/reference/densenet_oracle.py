"""torchvision's DenseNets, the oracle for test/densenet.test.ts (Debian's /usr/bin/python3: torch 1.13 + torchvision 0.14).

  densenet_oracle.py DIR JOB...     prints one JSON object last: {JOB: {"params": count, "macs": count}}

A JOB is KIND:NAME:N,C,H,W with KIND one of
  count   the parameter count only
  macs    conv + linear multiply-accumulates of one forward (forward hooks, as torchvision_oracle.py)
  eval    random-init weights (BN statistics calibrated, BN affine perturbed) -> DIR/NAME-eval.pth
          and DIR/NAME-eval.legacy.pth (the keys of torchvision's original checkpoints: `norm.1`, no num_batches_tracked;
          checked here to load through torchvision's own _load_state_dict); eval forward -> DIR/NAME-eval.io.safetensors
  train   as eval (files NAME-train.*, no legacy file), then one train-mode step: logits, loss, the gradients in GRADS and the updated BN buffers
every tensor also in float64 under an 'f64.' prefix.

NAME is a torchvision builder (densenet121/161/169/201) or densenet_bc_L_kK: the paper's CIFAR DenseNet-BC, built
from torchvision's DenseNet class (growth k, (L-4)/6 layers per block, 2k stem channels) with the stem replaced by
one 3x3 convolution of C input channels, as in the authors' CIFAR code.
"""
import copy
import json
import os
import re
import sys

import torch
import torch.nn.functional as F
import torchvision
from torchvision.models import densenet as tvd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torchvision_oracle import save_safetensors  # noqa: E402

CIFAR = re.compile(r'^densenet_bc_(\d+)_k(\d+)$')


def grads(name):
    """The stem, the first dense layer, a transition, the last dense layer and the classifier."""
    m = CIFAR.match(name)
    last = f'denseblock3.denselayer{(int(m.group(1)) - 4) // 6}' if m else {
        'densenet121': 'denseblock4.denselayer16', 'densenet161': 'denseblock4.denselayer24',
        'densenet169': 'denseblock4.denselayer32', 'densenet201': 'denseblock4.denselayer32'}[name]
    return ['features.conv0.weight', 'features.denseblock1.denselayer1.norm1.weight', 'features.denseblock1.denselayer1.conv1.weight',
            'features.transition1.conv.weight', f'features.{last}.conv2.weight', 'features.norm5.bias', 'classifier.weight', 'classifier.bias']


def create(name, channels):
    m = CIFAR.match(name)
    if not m:
        return getattr(torchvision.models, name)()
    depth, k = int(m.group(1)), int(m.group(2))
    n = (depth - 4) // 6
    net = tvd.DenseNet(k, (n, n, n), 2 * k, num_classes=10)
    net.features.conv0 = torch.nn.Conv2d(channels, 2 * k, 3, padding=1, bias=False)
    torch.nn.init.kaiming_normal_(net.features.conv0.weight)
    del net.features.norm0, net.features.relu0, net.features.pool0
    return net


def build(name, shape):
    """Seeded random init; BN statistics from two train-mode passes (cumulative average), BN affine perturbed."""
    torch.manual_seed(0)
    m = create(name, shape[1])
    bns = [b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for b in bns:
            b.momentum = None
            b.weight.uniform_(0.5, 1.5)
            b.bias.normal_(0, 0.1)
        m.train()
        for _ in range(2):
            m(torch.randn(max(shape[0], 2), *shape[1:]))
    for b in bns:
        b.momentum = 0.1
    return m


class _Weights:
    """What torchvision's _load_state_dict needs of a WeightsEnum member."""
    def __init__(self, sd):
        self.sd = sd

    def get_state_dict(self, progress):
        return dict(self.sd)


def legacy(m, stem, name, x):
    """The model's weights under the pre-0.4 keys torchvision still remaps; torchvision's loader must restore m exactly."""
    old = {re.sub(r'(denselayer\d+\.(?:norm|relu|conv))([12])\.', r'\1.\2.', k): v
           for k, v in m.state_dict().items() if not k.endswith('num_batches_tracked')}
    assert any('.norm.1.' in k for k in old) and not any('norm1' in k for k in old)
    torch.save(old, f'{stem}.legacy.pth')
    fresh = create(name, x.shape[1]).eval()
    tvd._load_state_dict(fresh, _Weights(torch.load(f'{stem}.legacy.pth')), False)
    with torch.no_grad():
        assert torch.equal(fresh(x), m.eval()(x)), 'torchvision did not restore the legacy checkpoint'


def macs(m, shape):
    total = [0]

    def hook(mod, inp, y):
        total[0] += y.numel() // y.shape[1] * mod.weight.numel()
    for mod in m.modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
            mod.register_forward_hook(hook)
    with torch.no_grad():
        m.eval()(torch.zeros(*shape))
    return total[0]


def run(kind, name, shape, out):
    if kind in ('count', 'macs'):
        m = create(name, shape[1])
        return m, (macs(m, shape) if kind == 'macs' else None)
    m = build(name, shape)
    stem = f'{out}/{name}-{kind}'
    torch.save(m.state_dict(), f'{stem}.pth')
    torch.manual_seed(1)
    x = torch.randn(*shape)
    io = {'x': x}
    for prefix, net, inp in [('', m, x), ('f64.', copy.deepcopy(m).double(), x.double())]:
        if kind == 'eval':
            with torch.no_grad():
                io[prefix + 'y'] = net.eval()(inp)
            continue
        net.train()
        target = torch.randint(0, net.classifier.out_features, (shape[0],), generator=torch.Generator().manual_seed(2))
        logits = net(inp)
        loss = F.cross_entropy(logits, target)
        loss.backward()
        params = dict(net.named_parameters())
        io.update({'target': target, prefix + 'logits': logits, prefix + 'loss': loss.reshape(1)})
        io.update({f'{prefix}grad.{k}': params[k].grad for k in grads(name)})
        io.update({prefix + k: v for k, v in net.state_dict().items() if 'running' in k or 'num_batches' in k})
    if kind == 'eval':
        legacy(m, stem, name, x)
    save_safetensors(f'{stem}.io.safetensors', io)
    return m, None


def main():
    out = sys.argv[1]
    result = {}
    for job in sys.argv[2:]:
        kind, name, shape = job.split(':')
        m, mac = run(kind, name, [int(v) for v in shape.split(',')], out)
        result[job] = {'params': sum(p.numel() for p in m.parameters())}
        if mac is not None:
            result[job]['macs'] = mac
    print(json.dumps(result))


if __name__ == '__main__':
    main()
