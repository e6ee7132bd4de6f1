"""torchvision's weights enums as data: the reference for lib/models/weights-table.ts and its generator.

Run with Debian's /usr/bin/python3 (torchvision 0.14). Prints one JSON object last.

  torchvision_weights.py table NAME...   {"models": {NAME: [entry, ...]}, "absent": [names torchvision lacks]}
                                         entry: every field of one weights enum member (url, file name and its
                                         sha256 prefix by torch.hub's HASH_REGEX, eval transforms, categories,
                                         metrics, parameter count, recipe, min size, whether it is DEFAULT)
"""
import json
import os
import sys
from urllib.parse import urlparse

import torch.hub
import torchvision.models as M


def entry(weights_enum, w):
    t = w.transforms()
    name = os.path.basename(urlparse(w.url).path)
    m = torch.hub.HASH_REGEX.search(name)
    metrics = w.meta['_metrics']['ImageNet-1K']
    return {
        'name': w.name,
        'enum': weights_enum.__name__,
        'url': w.url,
        'fileName': name,
        'sha256Prefix': m.group(1) if m else '',
        'transforms': {
            'resize': t.resize_size[0],
            'crop': t.crop_size[0],
            'interpolation': t.interpolation.value,
            'mean': list(t.mean),
            'std': list(t.std),
        },
        'categories': w.meta['categories'],
        'numParams': w.meta['num_params'],
        'metrics': {'acc@1': metrics['acc@1'], 'acc@5': metrics['acc@5']},
        'recipe': w.meta['recipe'],
        'minSize': list(w.meta['min_size']),
        'isDefault': weights_enum.DEFAULT is w,
    }


def main():
    cmd, names = sys.argv[1], sys.argv[2:]
    if cmd != 'table':
        raise SystemExit(f'unknown command {cmd}')
    known = set(M.list_models(M))
    out, absent = {}, []
    for n in names:
        if n not in known:
            absent.append(n)
            continue
        enum = M.get_model_weights(n)
        out[n] = [entry(enum, w) for w in enum]
    print(json.dumps({'torchvision': __import__('torchvision').__version__, 'models': out, 'absent': absent}))


main()
