#!/usr/bin/python3
"""PyTorch peer for bench_model: the same Dream/Qwen2-shaped bidirectional transformer (spec §1.3: RMSNorm,
RoPE half-split, GQA attention without a causal mask, SwiGLU, untied head), fp32 on the CPU, one
forward + backward of the log-probs of every position. Usage: torch_peer.py PRESET B L ITERS THREADS"""
import sys, time
import torch
import torch.nn.functional as F

PRESETS = {  # must match ModelConfig::preset (src/model/model_config.cpp)
    "tiny": dict(V=512, H=64, I=128, layers=2, heads=4, kv=2),
    "small": dict(V=16384, H=512, I=1408, layers=8, heads=8, kv=2),
}

def main():
    preset, B, L, iters, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    c = PRESETS[preset]
    V, H, I, nl, nh, nkv = c["V"], c["H"], c["I"], c["layers"], c["heads"], c["kv"]
    hd = H // nh
    g = torch.Generator().manual_seed(1)
    p = lambda *s: (torch.randn(*s, generator=g) * 0.02).requires_grad_()
    emb, head, fnorm = p(V, H), p(V, H), torch.ones(H, requires_grad=True)
    layers = [dict(ln1=torch.ones(H, requires_grad=True), wqkv=p((nh + 2 * nkv) * hd, H),
                   bqkv=torch.zeros((nh + 2 * nkv) * hd, requires_grad=True), wo=p(H, nh * hd),
                   ln2=torch.ones(H, requires_grad=True), wgu=p(2 * I, H), wd=p(H, I)) for _ in range(nl)]
    inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
    ang = torch.arange(L).float()[:, None] * inv[None]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    rot = lambda x: torch.cat([-x[..., hd // 2:], x[..., :hd // 2]], -1)
    rms = lambda x, w: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w
    ids = torch.randint(0, V, (B, L), generator=g)
    tgt = torch.randint(0, V, (B, L), generator=g)

    def step():
        h = emb[ids]
        for l in layers:
            a = rms(h, l["ln1"])
            qkv = F.linear(a, l["wqkv"], l["bqkv"])
            q, k, v = qkv.split([nh * hd, nkv * hd, nkv * hd], -1)
            q = q.view(B, L, nh, hd).transpose(1, 2)
            k = k.view(B, L, nkv, hd).transpose(1, 2)
            v = v.view(B, L, nkv, hd).transpose(1, 2)
            q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
            k, v = k.repeat_interleave(nh // nkv, 1), v.repeat_interleave(nh // nkv, 1)
            # torch 1.13 has no F.scaled_dot_product_attention: the plain bidirectional softmax(QK^T/sqrt d) V
            o = torch.softmax(q @ k.transpose(-1, -2) * hd ** -0.5, -1) @ v
            h = h + F.linear(o.transpose(1, 2).reshape(B, L, nh * hd), l["wo"])
            gu = F.linear(rms(h, l["ln2"]), l["wgu"])
            gt, up = gu.split([I, I], -1)
            h = h + F.linear(F.silu(gt) * up, l["wd"])
        logits = F.linear(rms(h, fnorm), head)
        logp = torch.gather(F.log_softmax(logits, -1), -1, tgt[..., None])
        (-logp.mean()).backward()

    best = 1e30
    for it in range(iters + 1):
        t = time.perf_counter()
        step()
        if it > 0:
            best = min(best, time.perf_counter() - t)
    print(f"torch {torch.__version__}: preset {preset}, B={B} L={L}, {threads} threads: {best:.3f} s/step, "
          f"{B * L / best:.0f} tokens/s")

if __name__ == "__main__":
    main()
