"""Small CNN classifier for Fashion-MNIST, used to measure the class-match rate of generated
images. Input: (N, 1, 28, 28) float in [0, 1] (grayscale, 28x28, i.e. the 32x32 generated image
cropped by 2 pixels on every side). Compatible with torch 1.13 (CPU) and 2.x.

Standalone: python3 classifier.py --data DIR --out classifier.safetensors [--epochs 8]
"""
import argparse
import gzip
import lzma
import os
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CLASS_NAMES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt',
               'Sneaker', 'Bag', 'Ankle boot']


def _open(path):
    for ext, op in (('', open), ('.gz', gzip.open), ('.xz', lzma.open)):
        if os.path.exists(path + ext):
            return op(path + ext, 'rb')
    raise FileNotFoundError(path)


def load_fashion_mnist(data_dir, split):
    """split 'train' or 't10k'. Returns (images uint8 (N,28,28), labels int64 (N,))."""
    with _open(os.path.join(data_dir, f'{split}-images-idx3-ubyte')) as f:
        magic, n, r, c = struct.unpack('>IIII', f.read(16))
        assert magic == 2051
        imgs = np.frombuffer(f.read(), dtype=np.uint8).reshape(n, r, c)
    with _open(os.path.join(data_dir, f'{split}-labels-idx1-ubyte')) as f:
        magic, n2 = struct.unpack('>II', f.read(8))
        assert magic == 2049 and n2 == n
        labels = np.frombuffer(f.read(), dtype=np.uint8).astype(np.int64)
    return imgs.copy(), labels


class FashionCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 32, 3, padding=1)
        self.b1 = nn.BatchNorm2d(32)
        self.c2 = nn.Conv2d(32, 64, 3, padding=1)
        self.b2 = nn.BatchNorm2d(64)
        self.c3 = nn.Conv2d(64, 128, 3, padding=1)
        self.b3 = nn.BatchNorm2d(128)
        self.c4 = nn.Conv2d(128, 128, 3, padding=1)
        self.b4 = nn.BatchNorm2d(128)
        self.fc1 = nn.Linear(128 * 3 * 3, 256)
        self.fc2 = nn.Linear(256, 10)
        self.drop = nn.Dropout(0.3)

    def forward(self, x):  # x in [0,1], (N,1,28,28)
        x = (x - 0.286) / 0.353
        x = F.relu(self.b1(self.c1(x)))
        x = F.max_pool2d(F.relu(self.b2(self.c2(x))), 2)      # 14
        x = F.max_pool2d(F.relu(self.b3(self.c3(x))), 2)      # 7
        x = F.max_pool2d(F.relu(self.b4(self.c4(x))), 2)      # 3
        x = self.drop(F.relu(self.fc1(x.flatten(1))))
        return self.fc2(x)


def train_classifier(data_dir, device, epochs=8, seed=0, log=print, limit=0):
    torch.manual_seed(seed)
    np.random.seed(seed)
    xtr, ytr = load_fashion_mnist(data_dir, 'train')
    xte, yte = load_fashion_mnist(data_dir, 't10k')
    if limit:
        xtr, ytr, xte, yte = xtr[:limit], ytr[:limit], xte[:limit], yte[:limit]
    xtr = torch.from_numpy(xtr).float().div(255).unsqueeze(1).to(device)
    ytr = torch.from_numpy(ytr).to(device)
    xte = torch.from_numpy(xte).float().div(255).unsqueeze(1).to(device)
    yte = torch.from_numpy(yte).to(device)
    net = FashionCNN().to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    bs = 256
    steps = epochs * (len(xtr) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    g = torch.Generator(device='cpu')
    g.manual_seed(seed)
    t0 = time.time()
    for ep in range(epochs):
        net.train()
        perm = torch.randperm(len(xtr), generator=g).to(device)
        for i in range(len(xtr) // bs):
            b = perm[i * bs:(i + 1) * bs]
            x = xtr[b]
            # augmentation: random horizontal flip, random shift by up to 2 px
            flip = torch.rand(x.shape[0], device=device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            dx, dy = np.random.randint(-2, 3, size=2)
            x = torch.roll(F.pad(x, (2, 2, 2, 2)), shifts=(int(dy), int(dx)), dims=(2, 3))[:, :, 2:30, 2:30]
            loss = F.cross_entropy(net(x), ytr[b], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        acc = evaluate(net, xte, yte)
        log(f'classifier epoch {ep} loss {loss.item():.4f} test acc {acc:.4f} ({time.time() - t0:.0f}s)')
    return net, acc


@torch.no_grad()
def evaluate(net, x, y, bs=1000):
    net.eval()
    correct = 0
    for i in range(0, len(x), bs):
        correct += (net(x[i:i + bs]).argmax(1) == y[i:i + bs]).sum().item()
    return correct / len(x)


@torch.no_grad()
def predict(net, x, bs=500):
    net.eval()
    out = []
    for i in range(0, len(x), bs):
        out.append(net(x[i:i + bs]).softmax(1))
    return torch.cat(out)


def load_classifier(path, device='cpu'):
    import st_io
    sd, _ = st_io.load_torch(path)
    net = FashionCNN()
    net.load_state_dict(sd)
    return net.to(device).eval()


def save_classifier(net, path, acc):
    import st_io
    sd = {k: v for k, v in net.state_dict().items()}
    st_io.save_file(sd, path, metadata={'test_accuracy': f'{acc:.4f}', 'input': 'N,1,28,28 in [0,1]',
                                        'classes': ','.join(CLASS_NAMES)})


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', default='/usr/share/datasets/fashion-mnist')
    ap.add_argument('--out', default='classifier.safetensors')
    ap.add_argument('--epochs', type=int, default=8)
    ap.add_argument('--eval-only', action='store_true', help='only report test accuracy of --out')
    a = ap.parse_args()
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    if a.eval_only:
        net = load_classifier(a.out, dev)
        xte, yte = load_fashion_mnist(a.data, 't10k')
        acc = evaluate(net, torch.from_numpy(xte).float().div(255).unsqueeze(1).to(dev),
                       torch.from_numpy(yte).to(dev))
        print(f'test accuracy {acc:.4f}')
    else:
        net, acc = train_classifier(a.data, dev, a.epochs)
        save_classifier(net, a.out, acc)
        print(f'test accuracy {acc:.4f}')
