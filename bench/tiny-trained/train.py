#!/usr/bin/python3
"""Trains a small Qwen2-architecture model (and a 2-layer draft sibling) on English text from a
Debian package, with the real R1-distill Qwen tokenizer, and writes GGUF files the engine
loads: a model with real (if tiny) language ability for perplexity, generation and
speculative-decoding benchmarks, where the synthesized models have random weights.

Dependencies (not part of scripts/setup.sh, a bench-only package):
    apt-get install -y python3-torch        # Debian 12: PyTorch 1.13, CPU (for /usr/bin/python3)

    /usr/bin/python3 bench/tiny-trained/train.py --strata build/strata --out /tmp/tiny-trained \
        [--minutes 8] [--draft-minutes 3] [--threads 2]

- Corpus: the license texts of base-files (/usr/share/common-licenses, every Debian system),
  duplicates (symlinks) removed; GPL-2 is held out for evaluation.
- Tokens: `strata tokenize` over the vocabulary GGUF (default
  /work/shared/vocab/ggml-vocab-qwen2.gguf), so the ids are exactly the engine's.
- Model: Qwen2 layout (RMSNorm, GQA attention with q/k/v biases, NEOX RoPE theta 1e4,
  SwiGLU FFN, untied output). The output softmax runs over the tokens of the corpus plus one
  "other" class standing for every other token: logit log(n_other) + w_other . h. Writing
  w_other as the output row of every unseen token makes the exported full-vocabulary softmax
  exactly the trained one.
- GGUF: `strata model synth` writes an F32 file of the same shape and vocabulary (the
  metadata keys and tensor names the engine expects); this script then overwrites its tensor
  data with the trained weights (the GGUF tensor table is parsed here).
- Check: the held-out perplexity computed here, by llama-perplexity's method, must match
  `strata perplexity` on the written file (printed side by side).
"""
import argparse
import glob
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                "common"))
import gguf_header  # noqa: E402

BOS, EOS = 151646, 151643  # the R1 distills' <｜begin▁of▁sentence｜>, <｜end▁of▁sentence｜>
HELD_OUT = "GPL-2"


# ---------------------------------------------------------------- corpus and tokens

def corpus_files():
    """The distinct license texts (symlinks such as GPL -> GPL-3 dropped), held-out last."""
    seen, files = set(), []
    for path in sorted(glob.glob("/usr/share/common-licenses/*")):
        real = os.path.realpath(path)
        if real not in seen and os.path.isfile(real):
            seen.add(real)
            files.append(real)
    return files


def tokenize(strata, vocab, text):
    """Ids of `text` by the engine's tokenizer, in blocks of paragraphs (argv size limit)."""
    ids, block = [], ""
    for para in text.split("\n\n"):
        if len(block) + len(para) > 60000 and block:
            ids += run_tokenize(strata, vocab, block)
            block = ""
        block += para + "\n\n"
    if block:
        ids += run_tokenize(strata, vocab, block)
    return ids


def run_tokenize(strata, vocab, text):
    out = subprocess.run([strata, "tokenize", "--model", vocab, "--text", text], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


# ---------------------------------------------------------------- model

class Block(torch.nn.Module):
    def __init__(self, h, ffn, nh, nkv):
        super().__init__()
        hd = h // nh
        self.nh, self.nkv, self.hd = nh, nkv, hd
        self.attn_norm = torch.nn.Parameter(torch.ones(h))
        self.q = torch.nn.Linear(h, nh * hd)
        self.k = torch.nn.Linear(h, nkv * hd)
        self.v = torch.nn.Linear(h, nkv * hd)
        self.o = torch.nn.Linear(nh * hd, h, bias=False)
        self.ffn_norm = torch.nn.Parameter(torch.ones(h))
        self.gate = torch.nn.Linear(h, ffn, bias=False)
        self.up = torch.nn.Linear(h, ffn, bias=False)
        self.down = torch.nn.Linear(ffn, h, bias=False)

    def forward(self, x, cos, sin):  # x: [B, T, h]
        B, T, _ = x.shape
        y = rms_norm(x, self.attn_norm)
        q = self.q(y).view(B, T, self.nh, self.hd).transpose(1, 2)   # [B, nh, T, hd]
        k = self.k(y).view(B, T, self.nkv, self.hd).transpose(1, 2)  # [B, nkv, T, hd]
        v = self.v(y).view(B, T, self.nkv, self.hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        g = self.nh // self.nkv  # query heads per KV head: q head i reads KV head i // g
        k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True) if hasattr(
            F, "scaled_dot_product_attention") else causal_attention(q, k, v)
        x = x + self.o(a.transpose(1, 2).reshape(B, T, -1))
        y = rms_norm(x, self.ffn_norm)
        return x + self.down(F.silu(self.gate(y)) * self.up(y))


def causal_attention(q, k, v):  # [B, nh, T, hd] each (PyTorch 1.13 has no fused kernel)
    T = q.shape[2]
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # [B, nh, T, T]
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    return torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1) @ v


def rms_norm(x, w, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_tables(T, hd, base=10000.0):
    """cos, sin [T, hd/2] for NEOX rotation: pairs (i, i + hd/2), frequency base^(-2i/hd)."""
    inv = base ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    return ang.cos().float(), ang.sin().float()


def rope(x, cos, sin):  # x: [B, n, T, hd]
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class TinyQwen2(torch.nn.Module):
    def __init__(self, n_sub, layers, h, ffn, nh, nkv, n_other):
        super().__init__()
        self.h, self.hd = h, h // nh
        self.embed = torch.nn.Embedding(n_sub, h)  # rows: the corpus tokens (sub-vocabulary)
        self.blocks = torch.nn.ModuleList(Block(h, ffn, nh, nkv) for _ in range(layers))
        self.norm = torch.nn.Parameter(torch.ones(h))
        self.out = torch.nn.Linear(h, n_sub + 1, bias=False)  # + the "other" class
        self.log_other = math.log(n_other)
        torch.nn.init.normal_(self.embed.weight, std=0.02)
        for p in self.parameters():
            if p.dim() == 2 and p is not self.embed.weight:
                torch.nn.init.normal_(p, std=0.02)

    def forward(self, ids):  # ids: [B, T] sub-vocabulary ids -> logits [B, T, n_sub + 1]
        T = ids.shape[1]
        cos, sin = rope_tables(T, self.hd)
        n_sub = self.embed.weight.shape[0]
        x = self.embed(ids.clamp(max=n_sub - 1))  # [B, T, h]
        x[ids == n_sub] = self.embed.weight.mean(0)  # a token outside the corpus: as exported
        for b in self.blocks:
            x = b(x, cos, sin)
        logits = self.out(rms_norm(x, self.norm))
        bias = torch.zeros(logits.shape[-1])
        bias[-1] = self.log_other
        return logits + bias


# ---------------------------------------------------------------- training

def train(model, data, minutes, seq, batch, lr, log_every=25):
    """AdamW, warm-up then cosine decay over the time budget. data: [n] sub-vocabulary ids
    (documents joined, each starting with BOS)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    t0, step, budget = time.time(), 0, minutes * 60.0
    gen = torch.Generator().manual_seed(1)
    while time.time() - t0 < budget:
        frac = (time.time() - t0) / budget
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / 20) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        starts = torch.randint(0, len(data) - seq - 1, (batch,), generator=gen)
        x = torch.stack([data[s:s + seq] for s in starts])          # [batch, seq]
        y = torch.stack([data[s + 1:s + seq + 1] for s in starts])  # next tokens
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % log_every == 0:
            print(f"  step {step}, {time.time() - t0:.0f} s, loss {loss.item():.3f}", flush=True)
    return step


@torch.no_grad()
def perplexity(model, ids_sub, ctx, bos_sub, unseen_id):
    """llama-perplexity's method on sub-vocabulary ids (unseen_id: a token outside the corpus,
    probability p(other) / n_other): chunks of ctx with BOS first, second half scored."""
    nll, count = 0.0, 0
    for c in range(len(ids_sub) // ctx):
        chunk = ids_sub[c * ctx:(c + 1) * ctx].clone()
        target = chunk.clone()
        chunk[0] = bos_sub
        lp = torch.log_softmax(model(chunk[None])[0].double(), dim=-1)  # [ctx, n_sub + 1]
        for i in range(ctx // 2, ctx - 1):
            t = int(target[i + 1])
            nll -= float(lp[i, t]) if t != unseen_id else float(lp[i, -1]) - model.log_other
            count += 1
    return math.exp(nll / count)


# ---------------------------------------------------------------- GGUF

def gguf_read(path):
    """(metadata {key: value}, {name: (dims, type, absolute offset)}) of a GGUF file."""
    with open(path, "rb") as f:
        buf = f.read(64 << 20)  # header + metadata (the vocabulary's arrays included)
    meta, tensors = gguf_header.read_header(buf, path)
    return ({k: v for k, (_, v) in meta.items()},
            {name: (dims, t, at) for name, dims, t, at in tensors})


def synth(strata, vocab, shape, ftype, path):
    """A `strata model synth` file of `shape` and type `ftype` (its tensors overwritten next)."""
    layers, h, ffn, nh, nkv = shape
    subprocess.run([strata, "model", "synth", "--arch", "qwen2", "--layers", str(layers),
                    "--hidden", str(h), "--ffn", str(ffn), "--heads", str(nh), "--kv-heads",
                    str(nkv), "--type", ftype, "--vocab", vocab, "--out", path], check=True,
                   capture_output=True)


def to_f16(strata, vocab, shape, src, dst):
    """Writes the F32 GGUF `src` as `dst` with F16 matrices (llama.cpp's --outtype f16: the
    1-D norms and biases stay F32)."""
    synth(strata, vocab, shape, "f16", dst)
    have, want = gguf_read(src)[1], gguf_read(dst)[1]
    assert set(have) == set(want)
    with open(src, "rb") as fi, open(dst, "r+b") as fo:
        for name, (dims, typ, off) in want.items():
            fi.seek(have[name][2])
            a = np.frombuffer(fi.read(4 * int(np.prod(dims))), dtype=np.float32)
            assert have[name][1] == 0 and typ in (0, 1), (name, typ)
            fo.seek(off)
            fo.write((a.astype(np.float16) if typ == 1 else a).tobytes())


def export(strata, vocab, model, shape, sub_ids, path):
    """Writes `model` as a full-vocabulary F32 GGUF at `path`."""
    synth(strata, vocab, shape, "f32", path)
    infos = gguf_read(path)[1]
    n_vocab = infos["token_embd.weight"][0][1]
    assert math.isclose(model.log_other, math.log(n_vocab - len(sub_ids))), n_vocab
    emb = model.embed.weight.detach()
    out = model.out.weight.detach()
    full_emb = emb.mean(0, keepdim=True).repeat(n_vocab, 1)     # [n_vocab, h]
    full_emb[sub_ids] = emb
    full_out = out[-1:].repeat(n_vocab, 1)                       # unseen rows: w_other
    full_out[sub_ids] = out[:-1]
    tensors = {"token_embd.weight": full_emb, "output.weight": full_out,
               "output_norm.weight": model.norm.detach()}
    for i, b in enumerate(model.blocks):
        p = f"blk.{i}."
        tensors.update({
            p + "attn_norm.weight": b.attn_norm, p + "ffn_norm.weight": b.ffn_norm,
            p + "attn_q.weight": b.q.weight, p + "attn_q.bias": b.q.bias,
            p + "attn_k.weight": b.k.weight, p + "attn_k.bias": b.k.bias,
            p + "attn_v.weight": b.v.weight, p + "attn_v.bias": b.v.bias,
            p + "attn_output.weight": b.o.weight, p + "ffn_gate.weight": b.gate.weight,
            p + "ffn_up.weight": b.up.weight, p + "ffn_down.weight": b.down.weight})
    assert set(tensors) == set(infos), set(tensors) ^ set(infos)
    with open(path, "r+b") as f:
        for name, t in tensors.items():
            dims, typ, off = infos[name]
            a = t.detach().contiguous().numpy().astype(np.float32)  # torch [out, in] = GGUF [in, out]
            assert typ == 0 and a.size == int(np.prod(dims)), (name, dims, a.shape)
            f.seek(off)
            f.write(a.tobytes())


def strata_ppl(strata, path, text_file, ctx):
    p = subprocess.run([strata, "perplexity", "-m", path, "-f", text_file, "-c", str(ctx)],
                       capture_output=True, text=True)
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("Final estimate")]
    return line[0] if line else p.stderr.strip()


def sample(strata, path, prompt="The licensee may", n=48):
    p = subprocess.run([strata, "run", "--model", path, "--prompt", prompt, "--max-tokens", str(n),
                        "--temperature", "0.7", "--seed", "1", "--json"], capture_output=True,
                       text=True)
    return prompt + json.loads(p.stdout)["text"] if p.returncode == 0 else p.stderr.strip()


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strata", default="build/strata", help="the strata binary")
    ap.add_argument("--vocab", default="/work/shared/vocab/ggml-vocab-qwen2.gguf",
                    help="vocabulary GGUF (the R1-distill Qwen tokenizer)")
    ap.add_argument("--out", default="/tmp/tiny-trained", help="directory of the written files")
    ap.add_argument("--minutes", type=float, default=8.0, help="training time of the model")
    ap.add_argument("--draft-minutes", type=float, default=3.0,
                    help="training time of the 2-layer draft model")
    ap.add_argument("--threads", type=int, default=2, help="PyTorch threads")
    ap.add_argument("--ctx", type=int, default=128, help="training sequence and PPL chunk")
    ap.add_argument("--batch", type=int, default=16, help="sequences per training step")
    ap.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (AdamW, warm-up then cosine decay)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    os.makedirs(a.out, exist_ok=True)

    files = corpus_files()
    held = [f for f in files if os.path.basename(f) == HELD_OUT]
    docs = [[BOS] + tokenize(a.strata, a.vocab, open(f, encoding="utf-8").read())
            for f in files if f not in held]
    held_text = os.path.join(a.out, "heldout.txt")
    with open(held[0], encoding="utf-8") as src, open(held_text, "w", encoding="utf-8") as dst:
        dst.write(src.read())
    # In one piece, as strata perplexity tokenizes it (18 KB: within the argument size limit).
    held_ids = [BOS] + run_tokenize(a.strata, a.vocab, open(held_text, encoding="utf-8").read())

    sub_ids = sorted({t for d in docs for t in d} | {BOS, EOS})
    to_sub = {t: i for i, t in enumerate(sub_ids)}
    n_other = len(gguf_read(a.vocab)[0]["tokenizer.ggml.tokens"]) - len(sub_ids)
    data = torch.tensor([to_sub[t] for d in docs for t in d])
    unseen = len(sub_ids)  # the "other" class index
    held_sub = torch.tensor([to_sub.get(t, unseen) for t in held_ids])
    print(f"corpus: {len(files) - 1} files, {len(data)} tokens, {len(sub_ids)} distinct; "
          f"held out {HELD_OUT}: {len(held_ids)} tokens "
          f"({int((held_sub == unseen).sum())} outside the corpus)", flush=True)

    for name, layers, minutes in (("tiny-trained", 4, a.minutes),
                                  ("tiny-trained-draft", 2, a.draft_minutes)):
        shape = (layers, 256, 768, 4, 2)
        model = TinyQwen2(len(sub_ids), layers, 256, 768, 4, 2, n_other)
        print(f"{name}: {layers} layers, hidden 256, ffn 768, 4/2 heads; training "
              f"{minutes} min", flush=True)
        steps = train(model, data, minutes, a.ctx, a.batch, a.lr)
        model.eval()
        ppl = perplexity(model, held_sub, a.ctx, to_sub[BOS], unseen)
        path = os.path.join(a.out, f"{name}.gguf")
        export(a.strata, a.vocab, model, shape, sub_ids, path)
        print(f"{name}: {steps} steps; held-out PPL (-c {a.ctx}) here {ppl:.4f}, "
              f"strata perplexity: {strata_ppl(a.strata, path, held_text, a.ctx)}; wrote {path}",
              flush=True)
        q8 = os.path.join(a.out, f"{name}-q8_0.gguf")
        subprocess.run([a.strata, "quantize", path, q8, "Q8_0"], check=True, capture_output=True)
        print(f"{name}: Q8_0 copy {q8}: strata perplexity: "
              f"{strata_ppl(a.strata, q8, held_text, a.ctx)}", flush=True)
        f16 = os.path.join(a.out, f"{name}-f16.gguf")
        to_f16(a.strata, a.vocab, shape, path, f16)
        print(f"{name}: F16 copy {f16}: strata perplexity: "
              f"{strata_ppl(a.strata, f16, held_text, a.ctx)}", flush=True)
        print(f"{name}: strata run: {sample(a.strata, path)!r}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
