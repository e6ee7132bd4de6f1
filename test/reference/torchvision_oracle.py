"""torchvision's ResNet family, the oracle for test/zoo-parity.test.ts and test/models.test.ts.

Run with Debian's /usr/bin/python3 (torch 1.13 + torchvision 0.14). Prints one JSON object last.

  torchvision_oracle.py count                      {name: parameter count} of the ten ImageNet builders
  torchvision_oracle.py macs NAME N,C,H,W          {"macs": conv + linear multiply-accumulates} (forward hooks)
  torchvision_oracle.py eval NAME DIR N,C,H,W      random-init weights -> DIR/NAME.pth (torch.save) and
                                                   DIR/NAME.safetensors (written by hand below); eval-mode
                                                   forward -> DIR/NAME.io.safetensors {x, y, f64.y}
  torchvision_oracle.py train NAME DIR N,C,H,W     as eval, then one train-mode step: io holds x, target,
                                                   logits, loss, grad.<param> and the updated BN buffers,
                                                   each also in float64 under an 'f64.' prefix

The weights are torchvision's random init, with BN statistics calibrated by two train-mode passes (cumulative
average) and BN affine parameters perturbed, so that loading every buffer matters to the output.
"""
import copy
import json
import struct
import sys

import torch
import torch.nn.functional as F
import torchvision

NAMES = ['resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152', 'resnext50_32x4d', 'resnext101_32x8d',
         'resnext101_64x4d', 'wide_resnet50_2', 'wide_resnet101_2']
DTYPES = {torch.float32: 'F32', torch.float64: 'F64', torch.int64: 'I64', torch.float16: 'F16'}
# Parameters whose gradients the train-mode check compares: the stem, a layer4 conv, the classifier.
GRADS = ['conv1.weight', 'layer4.0.conv2.weight', 'fc.weight', 'fc.bias']


def save_safetensors(path, tensors, metadata=None):
    """The safetensors layout: u64 little-endian header length, JSON header (padded to 8 bytes), raw bytes."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        raw = t.detach().contiguous().cpu().numpy().tobytes()
        header[name] = {'dtype': DTYPES[t.dtype], 'shape': list(t.shape), 'data_offsets': [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header['__metadata__'] = metadata
    text = json.dumps(header).encode()
    text += b' ' * (-len(text) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def build(name, shape):
    torch.manual_seed(0)
    m = getattr(torchvision.models, name)()
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


def save_weights(m, out, name):
    sd = m.state_dict()
    torch.save(sd, f'{out}/{name}.pth')
    save_safetensors(f'{out}/{name}.safetensors', sd, {'format': 'pt'})


def main():
    cmd = sys.argv[1]
    if cmd == 'count':
        print(json.dumps({n: sum(p.numel() for p in getattr(torchvision.models, n)().parameters()) for n in NAMES}))
        return
    name = sys.argv[2]
    shape = [int(v) for v in sys.argv[-1].split(',')]
    if cmd == 'macs':
        m = getattr(torchvision.models, name)().eval()
        total = [0]

        def hook(mod, inp, y):
            total[0] += y.numel() // y.shape[1] * mod.weight.numel()
        for mod in m.modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                mod.register_forward_hook(hook)
        with torch.no_grad():
            m(torch.zeros(*shape))
        print(json.dumps({'macs': total[0]}))
        return
    out = sys.argv[3]
    m = build(name, shape)
    save_weights(m, out, name)
    torch.manual_seed(1)
    x = torch.randn(*shape)
    io = {'x': x}
    # Each check runs in float32 and again in float64, where kernel rounding no longer hides a wrong wiring.
    for prefix, net, inp in [('', m, x), ('f64.', copy.deepcopy(m).double(), x.double())]:
        if cmd == 'eval':
            net.eval()
            with torch.no_grad():
                io[prefix + 'y'] = net(inp)
            continue
        net.train()
        target = torch.randint(0, 1000, (shape[0],), generator=torch.Generator().manual_seed(2))
        logits = net(inp)
        loss = F.cross_entropy(logits, target)
        loss.backward()
        params = dict(net.named_parameters())
        io.update({'target': target, prefix + 'logits': logits, prefix + 'loss': loss.reshape(1)})
        io.update({f'{prefix}grad.{k}': params[k].grad for k in GRADS})
        io.update({prefix + k: v for k, v in net.state_dict().items() if 'running' in k or 'num_batches' in k})
    save_safetensors(f'{out}/{name}.io.safetensors', io)
    print(json.dumps({'params': sum(p.numel() for p in m.parameters())}))


if __name__ == '__main__':
    main()
