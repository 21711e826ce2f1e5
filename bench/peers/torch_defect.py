"""Peer baseline: PyTorch (Debian python3-torch 1.13 + python3-torchvision) on the defect
detector workloads of `qiusuo bench` (bench/bench_defect.cpp): torchvision's ResNet-18 with
a one-channel first convolution, the same feature pyramid at stride 8 and FCOS-style head
(include/qiusuo/apps/detector.h), the same losses (sigmoid focal, GIoU weighted by the
centre-ness target, centre-ness BCE) on targets computed once outside the timed steps.
One JSON line per workload. Usage: torch_defect.py [THREADS]"""
import json, math, sys, time, torch, torch.nn as nn, torch.nn.functional as F, torchvision
torch.manual_seed(0)
T = int(sys.argv[1]) if len(sys.argv) > 1 else 2
torch.set_num_threads(T)

def bench(fn, warm=1, it=4):
    for _ in range(warm): fn()
    t = time.perf_counter()
    for _ in range(it): fn()
    return (time.perf_counter() - t) / it

def tower(c):
    layers = []
    for _ in range(2):
        layers += [nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
    return nn.Sequential(*layers)

class Detector(nn.Module):
    def __init__(s, C=64, K=6):
        super().__init__()
        r = torchvision.models.resnet18(weights=None)
        r.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
        s.stem = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool)
        s.l1, s.l2, s.l3, s.l4 = r.layer1, r.layer2, r.layer3, r.layer4
        s.lat3, s.lat4, s.lat5 = nn.Conv2d(128, C, 1), nn.Conv2d(256, C, 1), nn.Conv2d(512, C, 1)
        s.smooth = nn.Sequential(nn.Conv2d(C, C, 3, padding=1, bias=False), nn.BatchNorm2d(C), nn.ReLU())
        s.ct, s.rt = tower(C), tower(C)
        s.cls, s.reg, s.ctr = nn.Conv2d(C, K, 3, padding=1), nn.Conv2d(C, 4, 3, padding=1), nn.Conv2d(C, 1, 3, padding=1)
        nn.init.constant_(s.cls.bias, -math.log(99))
    def forward(s, x):
        c2 = s.l1(s.stem(x)); c3 = s.l2(c2); c4 = s.l3(c3); c5 = s.l4(c4)
        p = s.lat4(c4) + F.interpolate(s.lat5(c5), size=c4.shape[2:], mode="nearest")
        p = s.lat3(c3) + F.interpolate(p, size=c3.shape[2:], mode="nearest")
        p = s.smooth(p)
        ct, rt = s.ct(p), s.rt(p)
        return s.cls(ct), torch.exp(torch.clamp(s.reg(rt), max=8.0)) * 8.0, s.ctr(rt)

def targets(B, K, h, w, stride=8):
    """fcos_targets of bench_defect.cpp's fixed boxes (centre sampling 1.5 strides)."""
    cls = torch.zeros(B, K, h, w); reg = torch.zeros(B, 4, h, w); ctr = torch.zeros(B, 1, h, w); pos = []
    for b in range(B):
        o = 4.0 * b
        boxes = [(10 + o, 12, 50 + o, 40), (60, 64 + o, 100, 120), (80, 8, 120, 30)]
        labels = [b % 6, (b + 2) % 6, (b + 4) % 6]
        owner = {}
        for k, (x1, y1, x2, y2) in enumerate(boxes):
            cx, cy, area = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * (y2 - y1)
            for i in range(h):
                for j in range(w):
                    px, py = (j + 0.5) * stride, (i + 0.5) * stride
                    if x1 < px < x2 and y1 < py < y2 and abs(px - cx) < 1.5 * stride and abs(py - cy) < 1.5 * stride:
                        if (i, j) not in owner or area < owner[(i, j)][1]: owner[(i, j)] = (k, area)
        for (i, j), (k, _) in owner.items():
            x1, y1, x2, y2 = boxes[k]; px, py = (j + 0.5) * stride, (i + 0.5) * stride
            l, t, r, d = max(px - x1, .5), max(py - y1, .5), max(x2 - px, .5), max(y2 - py, .5)
            cls[b, labels[k], i, j] = 1; reg[b, :, i, j] = torch.tensor([l, t, r, d])
            ctr[b, 0, i, j] = math.sqrt(min(l, r) / max(l, r) * min(t, d) / max(t, d)); pos.append((b * h + i) * w + j)
    return cls, reg, ctr, torch.tensor(pos)

def loss_of(out, tg):
    lc, lr, lt = out; cls, reg, ctr, pos = tg
    n = max(1, len(pos)); p = torch.sigmoid(lc); pt = p * cls + (1 - p) * (1 - cls)
    focal = (F.binary_cross_entropy_with_logits(lc, cls, reduction="none") * (1 - pt) ** 2 *
             (0.25 * cls + 0.75 * (1 - cls))).sum() / n
    rows = lambda m: m.permute(0, 2, 3, 1).reshape(-1, m.shape[1])[pos]
    pr, gr, c = rows(lr), rows(reg), rows(ctr).reshape(-1)
    ap = (pr[:, 0] + pr[:, 2]) * (pr[:, 1] + pr[:, 3]); ag = (gr[:, 0] + gr[:, 2]) * (gr[:, 1] + gr[:, 3])
    inter = (torch.minimum(pr[:, 0], gr[:, 0]) + torch.minimum(pr[:, 2], gr[:, 2])) * \
            (torch.minimum(pr[:, 1], gr[:, 1]) + torch.minimum(pr[:, 3], gr[:, 3]))
    uni = ap + ag - inter
    enc = (torch.maximum(pr[:, 0], gr[:, 0]) + torch.maximum(pr[:, 2], gr[:, 2])) * \
          (torch.maximum(pr[:, 1], gr[:, 1]) + torch.maximum(pr[:, 3], gr[:, 3]))
    giou = inter / uni - (enc - uni) / enc
    box = ((1 - giou) * c).sum() / c.sum().clamp(min=1e-6)
    centre = F.binary_cross_entropy_with_logits(rows(lt).reshape(-1), c, reduction="sum") / n
    return focal + box + centre

m = Detector(); opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
x = torch.randn(8, 1, 128, 128)
tg = targets(8, 6, 16, 16)
def step():
    opt.zero_grad(); loss_of(m(x), tg).backward(); opt.step()
s = bench(step)
print(json.dumps({"peer": "torch", "workload": "defect_train_b8_128", "frames_per_s": 8 / s, "step_ms": s * 1e3}))
m.eval()
with torch.no_grad():
    s = bench(lambda: m(x), it=10)
print(json.dumps({"peer": "torch", "workload": "defect_infer_b8_128", "ms": s * 1e3}))
