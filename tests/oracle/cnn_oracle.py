"""Oracle for the golden CNN test: the peer CNN of shared/peers/torch_cnn.py (without
its quantisation stubs) with fixed weights, one forward in training mode, the
cross-entropy loss and every parameter gradient, written as safetensors.
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
    def forward(s, x):
        x = F.max_pool2d(F.relu(s.b1(s.c1(x))), 2)
        x = F.max_pool2d(F.relu(s.b2(s.c2(x))), 2)
        x = F.relu(s.b3(s.c3(x)))
        return s.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

m = CNN().train()
# Non-trivial batch-norm affine parameters so their gradients are exercised.
with torch.no_grad():
    for b in (m.b1, m.b2, m.b3):
        b.weight.uniform_(0.5, 1.5); b.bias.uniform_(-0.2, 0.2)
init = {k: v.clone() for k, v in m.state_dict().items()}
x = torch.randn(8, 1, 28, 28)
y = torch.randint(0, 10, (8,))
logits = m(x)
loss = F.cross_entropy(logits, y)
loss.backward()
out = {f"param.{k}": v for k, v in init.items() if not k.endswith("num_batches_tracked")}
out["input"] = x
out["target"] = y
out["logits"] = logits.detach()
out["loss"] = loss.detach().reshape(1)
for k, p in m.named_parameters():
    out[f"grad.{k}"] = p.grad
for k, v in m.state_dict().items():
    if "running" in k:
        out[f"after.{k}"] = v
st.write(sys.argv[1], out, {"torch": torch.__version__})
