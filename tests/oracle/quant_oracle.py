"""Oracle for the float side of quantisation: PyTorch's fake quantisation (per tensor,
per channel, learnable/LSQ with gradients) and torch.ao.quantization observers on fixed
data, written as safetensors for tests/quant/test_quant_oracle.cpp.
Usage: quant_oracle.py OUT.safetensors"""
import sys, os, torch
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "io"))
import safetensors_oracle as st
from torch.ao.quantization import observer as O

torch.manual_seed(4321)
out = {}

# ---- fake quantisation, per tensor (u8 affine) and per channel (s8 symmetric, axis 1)
x = torch.randn(6, 5, 7) * 2
x.view(-1)[:8] = torch.tensor([0.25, 0.75, -0.25, -0.75, 1.25, 2.5, 100.0, -100.0])  # ties, saturation
out["fq.x"] = x.clone()
y = torch.fake_quantize_per_tensor_affine(x, 0.03125, 100, 0, 255)
out["fq.pt.y"] = y
xs = x.clone().requires_grad_(True)
w = torch.randn(6, 5, 7)
out["fq.w"] = w
torch.fake_quantize_per_tensor_affine(xs, 0.03125, 100, 0, 255).mul(w).sum().backward()
out["fq.pt.dx"] = xs.grad
cs = torch.rand(5) * 0.05 + 0.01
cz = torch.tensor([0, 0, 3, -2, 0], dtype=torch.int32)
out["fq.pc.scale"] = cs
out["fq.pc.zp"] = cz
out["fq.pc.y"] = torch.fake_quantize_per_channel_affine(x, cs, cz, 1, -128, 127)

# ---- LSQ: learnable scale and zero point (grad_factor 1: our op leaves it to the module)
# Zero points >= 0: PyTorch's backward rounds them as trunc(zp + 0.5), its forward
# half to even; the two rules agree there (we use the forward's for both). And its
# backward rounds x/s + zp where the forward rounds x/s, then adds zp: at ties (x = 2.5,
# s = 0.2) the two differ unless zp is even (we follow the forward), hence zp 6 with s 0.2.
for tag, sc, zp in (("lsq", 0.05, 3.0), ("lsq2", 0.2, 6.0)):
    xl = x.clone().requires_grad_(True)
    s = torch.tensor([sc], requires_grad=True)
    z = torch.tensor([zp], requires_grad=True)
    yl = torch._fake_quantize_learnable_per_tensor_affine(xl, s, z, -128, 127, 1.0)
    yl.mul(w).sum().backward()
    out[f"{tag}.y"], out[f"{tag}.dx"], out[f"{tag}.ds"], out[f"{tag}.dz"] = yl.detach(), xl.grad, s.grad, z.grad
xl = x.clone().requires_grad_(True)
s = cs.clone().requires_grad_(True)
z = cz.abs().float().requires_grad_(True)
yl = torch._fake_quantize_learnable_per_channel_affine(xl, s, z, 1, -128, 127, 1.0)
yl.mul(w).sum().backward()
out["lsqpc.y"], out["lsqpc.dx"], out["lsqpc.ds"], out["lsqpc.dz"] = yl.detach(), xl.grad, s.grad, z.grad

# ---- observers on three batches
batches = [torch.randn(8, 4, 5) * 1.5 + 0.3, torch.randn(8, 4, 5) * 0.7 - 0.2, torch.rand(8, 4, 5) * 4 - 1]
for i, b in enumerate(batches):
    out[f"obs.batch{i}"] = b

def record(tag, obs):
    for b in batches:
        obs(b)
    s, z = obs.calculate_qparams()
    out[f"obs.{tag}.scale"] = s.reshape(-1).float()
    out[f"obs.{tag}.zp"] = z.reshape(-1).to(torch.int32)

record("minmax_u8", O.MinMaxObserver(dtype=torch.quint8))
record("minmax_s8_sym", O.MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric))
record("minmax_u8_rr", O.MinMaxObserver(dtype=torch.quint8, reduce_range=True))
record("minmax_u8_sym", O.MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_symmetric))
record("ma_u8", O.MovingAverageMinMaxObserver(dtype=torch.quint8))
record("pc_s8_sym", O.PerChannelMinMaxObserver(ch_axis=1, dtype=torch.qint8, qscheme=torch.per_channel_symmetric))
record("pc_u8", O.PerChannelMinMaxObserver(ch_axis=1, dtype=torch.quint8, qscheme=torch.per_channel_affine))
record("mapc_s8_sym", O.MovingAveragePerChannelMinMaxObserver(ch_axis=1, dtype=torch.qint8,
                                                               qscheme=torch.per_channel_symmetric))
# Histogram: one batch (the same histogram on both sides: PyTorch 1.13 bins over
# [int(min), int(max)], so the extremes are integers), then all three (PyTorch re-bins by
# upsampling over int()-truncated ranges, we by proportional overlap: close, not identical).
big = (torch.randn(4000) * 1.2 + 0.4).clamp(-4.5, 5.5)
big[:3] = torch.tensor([6.0, -5.0, 7.0])  # outliers the MSE search should clip
out["obs.hist_batch"] = big
h = O.HistogramObserver(dtype=torch.quint8)
h(big)
s, z = h.calculate_qparams()
out["obs.hist1.scale"], out["obs.hist1.zp"] = s.reshape(-1).float(), z.reshape(-1).to(torch.int32)
h = O.HistogramObserver(dtype=torch.quint8)
for b in batches:
    h(b)
s, z = h.calculate_qparams()
out["obs.hist3.scale"], out["obs.hist3.zp"] = s.reshape(-1).float(), z.reshape(-1).to(torch.int32)

st.write(sys.argv[1], {k: v.detach().contiguous() for k, v in out.items()}, {"torch": torch.__version__})
