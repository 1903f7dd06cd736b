#!/usr/bin/env python3
"""Milliseconds per training step of a PyTorch GPT shaped like aka-trainer's flagship.

For comparing `aka-trainer gpt` against PyTorch on the same machine (docs/RESULTS.md, "A
flagship training step, profiled"). Not used by tests or CI; needs `torch` (CPU is enough):

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch
    /tmp/torchenv/bin/python scripts/torch-gpt-step.py --threads 2 --steps 30

The model is what `aka-trainer gpt --layers 4 --heads 4 --dim 128 --block 128 --position rope`
trains: pre-norm blocks, LayerNorm (weight and bias, eps 1e-5), bias-free q/k/v/o and MLP
projections, MLP 4·d with GELU (tanh approximation), rotary position embedding on q and k
(rotate-half pairs (i, i + hd/2), base 10000), causal attention (`scaled_dot_product_attention`),
a final LayerNorm and an output head tied to the token embedding; AdamW (betas 0.9/0.99,
weight decay 0.1 on matrices and embeddings), gradient clipping at 1.0, no dropout. Batches
are random windows of tinyshakespeare (characters as tokens). Prints the median ms/step of
5 rounds after warm-up steps, like trainer/benches/gpt_step.rs.
"""

import argparse
import math
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def rope_tables(t, hd, base=10000.0):
    inv = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    ang = torch.outer(torch.arange(t, dtype=torch.float32), inv)  # [t, hd/2]
    return ang.cos(), ang.sin()


def rope(x, cos, sin):
    # x: [b, h, t, hd]; rotate pairs (i, i + hd/2)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Block(nn.Module):
    def __init__(self, d, h, t):
        super().__init__()
        self.h = h
        self.ln1 = nn.LayerNorm(d, eps=1e-5)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.wo = nn.Linear(d, d, bias=False)
        self.ln2 = nn.LayerNorm(d, eps=1e-5)
        self.w1 = nn.Linear(d, 4 * d, bias=False)
        self.w2 = nn.Linear(4 * d, d, bias=False)
        cos, sin = rope_tables(t, d // h)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.h, d // self.h).transpose(1, 2) for z in (q, k, v))
        cos, sin = self.cos[:t], self.sin[:t]
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.wo(y.transpose(1, 2).reshape(b, t, d))
        return x + self.w2(F.gelu(self.w1(self.ln2(x)), approximate="tanh"))


class Gpt(nn.Module):
    def __init__(self, vocab, layers, heads, d, t):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList([Block(d, heads, t) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d, eps=1e-5)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx, targets):
        x = self.tok(idx)
        for blk in self.blocks:
            x = blk(x)
        logits = self.ln_f(x) @ self.tok.weight.t()  # tied head
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30, help="timed steps (5 rounds)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--data", default=os.path.join(here, "../data/tinyshakespeare/input.txt"))
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    text = open(args.data, encoding="utf-8").read()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    train = data[: int(0.9 * len(data))]
    t, bs = args.block, args.batch_size

    model = Gpt(len(chars), args.layers, args.heads, args.dim, t)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
        lr=1e-3,
        betas=(0.9, 0.99),
    )
    params = sum(p.numel() for p in model.parameters())

    def step():
        ix = torch.randint(len(train) - t - 1, (bs,))
        x = torch.stack([train[i : i + t] for i in ix])
        y = torch.stack([train[i + 1 : i + 1 + t] for i in ix])
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    for _ in range(5):
        step()  # warm-up
    rounds = 5
    per_round = max(1, args.steps // rounds)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            loss = step()
        times.append((time.perf_counter() - start) * 1e3 / per_round)
    med = statistics.median(times)
    print(
        f"torch {torch.__version__} threads {torch.get_num_threads()} params {params} "
        f"loss {loss:.4f} {med:.1f} ms/step (median of {rounds} rounds of {per_round})"
    )
    assert math.isfinite(loss)


if __name__ == "__main__":
    main()
