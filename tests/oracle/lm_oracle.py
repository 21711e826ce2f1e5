"""Oracle for the golden LM tests: fixed weights and tokens, one forward, the
cross-entropy loss and every parameter gradient, written as safetensors.

  lm_oracle.py gpt OUT.safetensors         the GPT of shared/peers/torch_lm.py, small sizes
                                           (its own parameter names: blocks.i.qkv, ...)
  lm_oracle.py deepseek Q OUT.safetensors  a DeepSeek-style LM written from the documented
                                           math of nn::TransformerLM (block deepseek,
                                           attention mla, dense SwiGLU) with q_lora_rank Q;
                                           parameter names are qiusuo's
  lm_oracle.py deepseek_moe OUT.safetensors  the same (q_lora_rank 0, tied) with the
                                           DeepSeek-V3 MoE of nn::MoE as feed-forward (4
                                           routed experts, top 2, 1 shared, sigmoid router,
                                           bias-steered selection, balance loss 0.01 added)

Keys: param.<name> (initial weights), input, target, logits, loss, grad.<name>."""
import math, os, sys
import torch, torch.nn as nn, torch.nn.functional as F
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "io"))
import safetensors_oracle as st  # the safetensors format on the PyTorch side

torch.manual_seed(4321)
V, D, L, H, B, N = 256, 64, 2, 4, 2, 32


def rope(x, pos, base=10000.0):  # rotate-half; x: [..., n, d]
    half = x.shape[-1] // 2
    inv = 1.0 / (base ** (torch.arange(0, half, dtype=torch.float64) / half))
    ang = pos[:, None].double() * inv[None, :]
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)


def causal_attention(q, k, v):  # [b, h, n, d]
    n = q.shape[2]
    att = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    att = att.masked_fill(torch.triu(torch.ones(n, n, dtype=torch.bool), 1), float("-inf")).softmax(-1)
    return att @ v


# ---- the peer GPT (shared/peers/torch_lm.py), unchanged but for the sizes
class GptBlock(nn.Module):
    def __init__(s, d, h, f):
        super().__init__(); s.h = h
        s.ln1 = nn.LayerNorm(d); s.qkv = nn.Linear(d, 3 * d); s.o = nn.Linear(d, d)
        s.ln2 = nn.LayerNorm(d); s.fc = nn.Linear(d, f); s.pr = nn.Linear(f, d)

    def forward(s, x):
        b, n, d = x.shape
        q, k, v = s.qkv(s.ln1(x)).view(b, n, 3, s.h, d // s.h).permute(2, 0, 3, 1, 4)
        pos = torch.arange(n)
        y = causal_attention(rope(q, pos), rope(k, pos), v).transpose(1, 2).reshape(b, n, d)
        x = x + s.o(y)
        return x + s.pr(F.gelu(s.fc(s.ln2(x))))


class GPT(nn.Module):
    def __init__(s, V, d, L, h, f):
        super().__init__(); s.emb = nn.Embedding(V, d)
        s.blocks = nn.ModuleList([GptBlock(d, h, f) for _ in range(L)])
        s.ln = nn.LayerNorm(d); s.head = nn.Linear(d, V, bias=False)

    def forward(s, idx):
        x = s.emb(idx)
        for b in s.blocks: x = b(x)
        return s.head(s.ln(x))


# ---- DeepSeek-style LM, following include/qiusuo/nn/transformer.h
class RMSNorm(nn.Module):  # y = x / sqrt(mean(x^2) + eps) * weight
    def __init__(s, d, eps):
        super().__init__(); s.weight = nn.Parameter(torch.ones(d)); s.eps = eps

    def forward(s, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + s.eps) * s.weight


class MLA(nn.Module):
    def __init__(s, d, h, q_lora, r, dn, dr, dv, eps):
        super().__init__(); s.h, s.r, s.dn, s.dr, s.dv = h, r, dn, dr, dv
        if q_lora == 0:
            s.q_proj = nn.Linear(d, h * (dn + dr), bias=False)
        else:
            s.q_a_proj = nn.Linear(d, q_lora, bias=False); s.q_a_layernorm = RMSNorm(q_lora, eps)
            s.q_b_proj = nn.Linear(q_lora, h * (dn + dr), bias=False)
        s.kv_a_proj_with_mqa = nn.Linear(d, r + dr, bias=False); s.kv_a_layernorm = RMSNorm(r, eps)
        s.kv_b_proj = nn.Linear(r, h * (dn + dv), bias=False); s.o_proj = nn.Linear(h * dv, d, bias=False)

    def forward(s, x):
        b, n, _ = x.shape
        pos = torch.arange(n)
        q = s.q_proj(x) if hasattr(s, "q_proj") else s.q_b_proj(s.q_a_layernorm(s.q_a_proj(x)))
        q = q.view(b, n, s.h, s.dn + s.dr).transpose(1, 2)
        q = torch.cat([q[..., :s.dn], rope(q[..., s.dn:], pos)], -1)
        ckv = s.kv_a_proj_with_mqa(x)
        c = s.kv_a_layernorm(ckv[..., :s.r])
        k_rope = rope(ckv[..., s.r:].unsqueeze(1), pos)  # one head shared by all
        kv = s.kv_b_proj(c).view(b, n, s.h, s.dn + s.dv).transpose(1, 2)
        k = torch.cat([kv[..., :s.dn], k_rope.expand(b, s.h, n, s.dr)], -1)
        y = causal_attention(q, k, kv[..., s.dn:])
        return s.o_proj(y.transpose(1, 2).reshape(b, n, s.h * s.dv))


class SwiGLU(nn.Module):  # down(silu(gate(x)) * up(x))
    def __init__(s, d, f):
        super().__init__()
        s.gate_proj = nn.Linear(d, f, bias=False); s.up_proj = nn.Linear(d, f, bias=False)
        s.down_proj = nn.Linear(f, d, bias=False)

    def forward(s, x):
        return s.down_proj(F.silu(s.gate_proj(x)) * s.up_proj(x))


class MoE(nn.Module):  # nn::MoE (DeepSeek-V3), sigmoid scores, sequence-wise balance loss
    def __init__(s, d, de, E, S, K, alpha):
        super().__init__(); s.E, s.K, s.alpha = E, K, alpha
        s.experts = nn.ModuleList([SwiGLU(d, de) for _ in range(E)])
        s.gate = nn.Module(); s.gate.weight = nn.Parameter(torch.randn(E, d) / math.sqrt(d))
        s.gate.register_buffer("e_score_correction_bias", (torch.rand(E) - 0.5) * 0.2)  # steers the choice only
        s.shared_experts = SwiGLU(d, S * de)

    def forward(s, x):
        b, n, d = x.shape
        xf = x.reshape(-1, d)
        scores = torch.sigmoid(xf @ s.gate.weight.t())
        idx = torch.topk(scores.detach() + s.gate.e_score_correction_bias, s.K, dim=1).indices
        w = scores.gather(1, idx)
        w = w / (w.sum(1, keepdim=True) + 1e-20)
        out = torch.zeros_like(xf)
        for e in range(s.E):
            tok, slot = (idx == e).nonzero(as_tuple=True)
            if len(tok): out = out.index_add(0, tok, s.experts[e](xf[tok]) * w[tok, slot, None])
        out = out + s.shared_experts(xf)
        f = torch.zeros(b, s.E)
        for g in range(b):
            f[g] = torch.bincount(idx.reshape(b, n * s.K)[g], minlength=s.E).float() * s.E / (s.K * n)
        P = (scores / scores.sum(1, keepdim=True)).reshape(b, n, s.E).mean(1)
        s.aux = (f * P).sum(1).mean() * s.alpha
        return out.reshape(b, n, d)


class DeepSeekBlock(nn.Module):
    def __init__(s, d, eps, attn, mlp):
        super().__init__(); s.ln_1 = RMSNorm(d, eps); s.attn = attn; s.ln_2 = RMSNorm(d, eps); s.mlp = mlp

    def forward(s, x):
        x = x + s.attn(s.ln_1(x))
        return x + s.mlp(s.ln_2(x))


class DeepSeekLM(nn.Module):
    def __init__(s, q_lora, tie, eps=1e-5, moe=False):
        super().__init__(); s.wte = nn.Embedding(V, D); s.tie = tie
        f = (8 * D // 3 + 7) // 8 * 8
        ffn = (lambda: MoE(D, (f // 3 + 7) // 8 * 8, 4, 1, 2, 0.01)) if moe else (lambda: SwiGLU(D, f))
        s.blocks = nn.ModuleList([DeepSeekBlock(D, eps, MLA(D, H, q_lora, 32, D // H, 8, D // H, eps), ffn())
                                  for _ in range(L)])
        s.ln_f = RMSNorm(D, eps)
        if not tie: s.lm_head = nn.Linear(D, V, bias=False)

    def forward(s, idx):
        x = s.wte(idx)
        for b in s.blocks: x = b(x)
        x = s.ln_f(x)
        return x @ s.wte.weight.t() if s.tie else s.lm_head(x)


def main():
    if sys.argv[1] == "gpt":
        m, out_path = GPT(V, D, L, H, 4 * D), sys.argv[2]
    elif sys.argv[1] == "deepseek_moe":
        m, out_path = DeepSeekLM(0, tie=True, moe=True), sys.argv[2]
    else:
        q_lora = int(sys.argv[2])
        m, out_path = DeepSeekLM(q_lora, tie=q_lora == 0), sys.argv[3]
    # Norm weights (and biases) away from 1 (0) so their gradients are exercised.
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 1 and ("ln" in name or "layernorm" in name):
                p.uniform_(-0.2, 0.2) if name.endswith("bias") else p.uniform_(0.5, 1.5)
    init = {k: v.clone() for k, v in m.state_dict().items()}
    x = torch.randint(0, V, (B, N))
    y = torch.randint(0, V, (B, N))
    logits = m(x)
    loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
    for blk in getattr(m, "blocks", []):
        if isinstance(getattr(blk, "mlp", None), MoE): loss = loss + blk.mlp.aux
    loss.backward()
    out = {f"param.{k}": v for k, v in init.items()}
    out.update(input=x, target=y, logits=logits.detach(), loss=loss.detach().reshape(1))
    for k, p in m.named_parameters():
        out[f"grad.{k}"] = p.grad
    st.write(out_path, out, {"torch": torch.__version__})


main()
