"""Oracle for the golden CNN test: the peer CNN of shared/peers/torch_cnn.py (without
its quantisation stubs) with fixed weights, one forward in training mode, the
cross-entropy loss and every parameter gradient, written as safetensors.

The forward's discrete decisions (which element wins each max-pool window, the sign
after each ReLU) are made by rounding where two values are within a few ulps, so a
different summation order (another CPU's kernels) can take the other, equally correct,
subgradient. The oracle therefore writes CANDIDATES data sets ("s<k>." prefixes), each
with its decisions ("s<k>.decide.<i>"), and the test compares the gradients of the first
one whose decisions its own forward repeats.
Usage: cnn_oracle.py OUT.safetensors"""
import sys, os, torch, torch.nn as nn, torch.nn.functional as F
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "io"))
import safetensors_oracle as st  # the safetensors format on the PyTorch side

torch.manual_seed(1234)

class CNN(nn.Module):
    def __init__(s):
        super().__init__()
        s.c1 = nn.Conv2d(1, 32, 3, padding=1); s.b1 = nn.BatchNorm2d(32)
        s.c2 = nn.Conv2d(32, 64, 3, padding=1); s.b2 = nn.BatchNorm2d(64)
        s.c3 = nn.Conv2d(64, 128, 3, padding=1); s.b3 = nn.BatchNorm2d(128)
        s.fc = nn.Linear(128, 10)
    def forward(s, x, decide=None):
        def relu(h):
            h = F.relu(h)
            if decide is not None: decide.append((h > 0).to(torch.uint8))
            return h
        def pool(h):
            h, idx = F.max_pool2d(h, 2, return_indices=True)
            if decide is not None: decide.append(idx)
            return h
        x = pool(relu(s.b1(s.c1(x))))
        x = pool(relu(s.b2(s.c2(x))))
        x = relu(s.b3(s.c3(x)))
        return s.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

m = CNN().train()
# Non-trivial batch-norm affine parameters so their gradients are exercised.
with torch.no_grad():
    for b in (m.b1, m.b2, m.b3):
        b.weight.uniform_(0.5, 1.5); b.bias.uniform_(-0.2, 0.2)
init = {k: v.clone() for k, v in m.state_dict().items()}
out = {f"param.{k}": v for k, v in init.items() if not k.endswith("num_batches_tracked")}
CANDIDATES = 4
for c in range(CANDIDATES):
    m.load_state_dict(init)
    m.zero_grad()
    x = torch.randn(8, 1, 28, 28)
    y = torch.randint(0, 10, (8,))
    decide = []
    logits = m(x, decide)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    p = f"s{c}."
    out[p + "input"] = x
    out[p + "target"] = y
    out[p + "logits"] = logits.detach()
    out[p + "loss"] = loss.detach().reshape(1)
    for i, d in enumerate(decide):
        out[p + f"decide.{i}"] = d
    for k, q in m.named_parameters():
        out[p + f"grad.{k}"] = q.grad.clone()
    for k, v in m.state_dict().items():
        if "running" in k:
            out[p + f"after.{k}"] = v.clone()
st.write(sys.argv[1], out, {"torch": torch.__version__, "candidates": str(CANDIDATES)})
