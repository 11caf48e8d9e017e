#!/usr/bin/python3
"""tools/torch_reference.py: ddpm's U-Net mirrored in PyTorch, and the reference fixtures.

The mirror has the same module tree as ddpm/model/unet.h, so its state_dict keys are our
parameter names ("down.0.blocks.0.norm1.weight"), and it reads and writes our safetensors
checkpoints (the format is parsed here; the `safetensors` package is not needed).

  fixtures  --out DIR
      Writes the reference fixtures that tests/e2e/test_crosscheck.cpp compares against
      (committed under tests/fixtures/): every layer alone, a minimal U-Net with every
      parameter's gradient, three Adam steps, ten training steps, twenty steps of
      Algorithm 2, schedule tables, and an RGB U-Net (16x16x3, ch 16) with weights from a
      formula both sides compute. Inputs come from torch.manual_seed(0).
  eps-check --checkpoint CKPT --mnist DIR --out FILE [--ema] [--n 16]
      Loads a ddpm checkpoint (e.g. from ./train_mnist) into the mirror, noises real MNIST
      test digits to x_t at spread-out t, and writes x_t, t and the mirror's eps_theta. The
      C++ side (DDPM_EPS_CHECKS, see test_crosscheck.cpp) loads the same checkpoint with
      load_model and compares.
  export --config tiny --out FILE [--seed S] [--zero-init] [--eps-check FILE --mnist DIR]
      A PyTorch-initialized model saved as safetensors with our names and config.* metadata:
      loadable by ddpm::load_model and ./sample. With --eps-check, also writes an eps check
      for it.

Run with /usr/bin/python3 (Debian's python3-torch). Without torch it says so and exits 0.

Conventions (ddpm/model/unet.h, ddpm/diffusion/diffusion.h): data in [-1, 1]; t is 1-based (1..T) and is
fed to the sinusoid as is; the sinusoid is [sin | cos] with freq_i = exp(-ln(10000) i /
(half - 1)), computed in float64 and rounded to float32 once.
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover
    print(f"torch_reference: skipped: {e.name} is not installed for {sys.executable} "
          "(Debian: apt-get install -y python3-torch)")
    sys.exit(0)

torch.set_num_threads(1)  # the fixtures do not depend on the machine's core count

# ---------------------------------------------------------------------------------------
# safetensors, read and written by hand (the format is in ddpm/io/safetensors.h)

_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32,
           "U8": np.uint8}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


def load_safetensors(path):
    """-> (dict name -> torch tensor, metadata dict)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    metadata = header.pop("__metadata__", {}) or {}
    buf = data[8 + n:]
    tensors = {}
    for name, info in header.items():
        if info["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']}, not supported here")
        begin, end = info["data_offsets"]
        a = np.frombuffer(buf[begin:end], dtype=np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<"))
        tensors[name] = torch.from_numpy(a.astype(_DTYPES[info["dtype"]]).reshape(info["shape"]))
    return tensors, metadata


def save_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, tensor) in file order; float32 unless the tensor is int64/float64."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors:
        a = t.detach().cpu().contiguous().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
        if a.ndim == 0:
            a = a.reshape(1)
        assert a.ndim <= 4, f"{name}: {a.ndim} dims, ddpm reads at most 4"
        b = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


# ---------------------------------------------------------------------------------------
# Model configs (ddpm/model/unet.cpp's unet_config) and their config.* metadata

CONFIGS = {
    "tiny": dict(image_size=28, in_ch=1, ch=32, ch_mult=[1, 2, 2], num_res_blocks=1, attn_resolutions=[7],
                 groups=8, dropout=0.0, num_classes=0, learned_variance=False),
    "small": dict(image_size=28, in_ch=1, ch=64, ch_mult=[1, 2, 2], num_res_blocks=2, attn_resolutions=[14],
                  groups=32, dropout=0.1, num_classes=0, learned_variance=False),
    "minimal": dict(image_size=8, in_ch=1, ch=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[4],
                    groups=2, dropout=0.0, num_classes=0, learned_variance=False),
    # Ho et al. 2020's CIFAR-10 model (35,746,307 parameters)
    "cifar10": dict(image_size=32, in_ch=3, ch=128, ch_mult=[1, 2, 2, 2], num_res_blocks=2, attn_resolutions=[16],
                    groups=32, dropout=0.1, num_classes=0, learned_variance=False),
    # the RGB fixture's: 16x16x3, ch 16, attention at 8
    "rgb": dict(image_size=16, in_ch=3, ch=16, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8],
                groups=4, dropout=0.0, num_classes=0, learned_variance=False),
}


def config_metadata(name, c):
    def fmt_float(v):
        return ("%g" % v)
    return {
        "config.name": name, "config.image_size": c["image_size"], "config.in_ch": c["in_ch"], "config.ch": c["ch"],
        "config.ch_mult": ",".join(map(str, c["ch_mult"])), "config.num_res_blocks": c["num_res_blocks"],
        "config.attn_resolutions": ",".join(map(str, c["attn_resolutions"])), "config.groups": c["groups"],
        "config.dropout": fmt_float(c["dropout"]), "config.num_classes": c["num_classes"],
        "config.learned_variance": "1" if c["learned_variance"] else "0",
    }


def config_from_metadata(m):
    ints = lambda s: [int(v) for v in s.split(",") if v != ""]
    return m["config.name"], dict(
        image_size=int(m["config.image_size"]), in_ch=int(m["config.in_ch"]), ch=int(m["config.ch"]),
        ch_mult=ints(m["config.ch_mult"]), num_res_blocks=int(m["config.num_res_blocks"]),
        attn_resolutions=ints(m["config.attn_resolutions"]), groups=int(m["config.groups"]),
        dropout=float(m["config.dropout"]), num_classes=int(m["config.num_classes"]),
        learned_variance=m["config.learned_variance"] != "0")


# ---------------------------------------------------------------------------------------
# The mirror: the module tree of ddpm/model/unet.h and ddpm/model/nn.h, with the same names

def timestep_embedding(t, dim):
    """t: int tensor [N] in 1..T -> [N, dim] float32, [sin | cos], computed in float64."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / (half - 1))
    args = t.to(torch.float64)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1).to(torch.float32)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, temb_ch, groups, dropout):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.temb_proj = nn.Linear(temb_ch, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-5)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)  # zero-init in ddpm
        self.skip = nn.Conv2d(cin, cout, 1, 1, 0) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.skip(x) if self.skip is not None else x) + h


class AttnBlock(nn.Module):
    def __init__(self, channels, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-5)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)  # zero-init in ddpm

    def forward(self, x):
        N, C, H, W = x.shape
        h = self.norm(x)
        q, k, v = (m(h).reshape(N, C, H * W) for m in (self.q, self.k, self.v))
        w = torch.softmax(torch.einsum("bci,bcj->bij", q, k) * (C ** -0.5), dim=-1)
        h = torch.einsum("bij,bcj->bci", w, v).reshape(N, C, H, W)
        return x + self.proj_out(h)


class Resample(nn.Module):  # holds `.conv`, as in "down.0.downsample.conv.weight"
    def __init__(self, channels, stride):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride, 1)


class Level(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList()
        self.attns = nn.ModuleList()


class UNet(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        ch, temb_ch, L = c["ch"], 4 * c["ch"], len(c["ch_mult"])
        self.temb = nn.Module()
        self.temb.dense0 = nn.Linear(ch, temb_ch)
        self.temb.dense1 = nn.Linear(temb_ch, temb_ch)
        if c["num_classes"] > 0:
            self.class_emb = nn.Embedding(c["num_classes"] + 1, temb_ch)
        self.conv_in = nn.Conv2d(c["in_ch"], ch, 3, 1, 1)
        hs_ch, ch_now, res = [ch], ch, c["image_size"]
        self.down = nn.ModuleList()
        for i in range(L):
            out, level = ch * c["ch_mult"][i], Level()
            for _ in range(c["num_res_blocks"]):
                level.blocks.append(ResBlock(ch_now, out, temb_ch, c["groups"], c["dropout"]))
                ch_now = out
                if res in c["attn_resolutions"]:
                    level.attns.append(AttnBlock(ch_now, c["groups"]))
                hs_ch.append(ch_now)
            if i + 1 < L:
                level.downsample = Resample(ch_now, 2)
                hs_ch.append(ch_now)
                res //= 2
            self.down.append(level)
        self.mid = nn.Module()
        self.mid.block1 = ResBlock(ch_now, ch_now, temb_ch, c["groups"], c["dropout"])
        self.mid.attn1 = AttnBlock(ch_now, c["groups"])
        self.mid.block2 = ResBlock(ch_now, ch_now, temb_ch, c["groups"], c["dropout"])
        up = [None] * L
        for i in reversed(range(L)):
            out, level = ch * c["ch_mult"][i], Level()
            for _ in range(c["num_res_blocks"] + 1):
                level.blocks.append(ResBlock(ch_now + hs_ch.pop(), out, temb_ch, c["groups"], c["dropout"]))
                ch_now = out
                if res in c["attn_resolutions"]:
                    level.attns.append(AttnBlock(ch_now, c["groups"]))
            if i > 0:
                level.upsample = Resample(ch_now, 1)
                res *= 2
            up[i] = level
        self.up = nn.ModuleList(up)  # up[i] is level i, run from L-1 down to 0
        self.norm_out = nn.GroupNorm(c["groups"], ch_now, eps=1e-5)
        out_ch = 2 * c["in_ch"] if c["learned_variance"] else c["in_ch"]
        self.conv_out = nn.Conv2d(ch_now, out_ch, 3, 1, 1)  # zero-init in ddpm

    def forward(self, x, t, labels=None):
        temb = timestep_embedding(t, self.c["ch"])
        temb = self.temb.dense1(F.silu(self.temb.dense0(temb)))
        if self.c["num_classes"] > 0:
            temb = temb + self.class_emb(labels)
        h = self.conv_in(x)
        hs = [h]
        for level in self.down:
            for j, block in enumerate(level.blocks):
                h = block(h, temb)
                if len(level.attns):
                    h = level.attns[j](h)
                hs.append(h)
            if hasattr(level, "downsample"):
                h = level.downsample.conv(h)
                hs.append(h)
        h = self.mid.block2(self.mid.attn1(self.mid.block1(h, temb)), temb)
        for level in reversed(self.up):
            for j, block in enumerate(level.blocks):
                h = block(torch.cat([h, hs.pop()], dim=1), temb)
                if len(level.attns):
                    h = level.attns[j](h)
            if hasattr(level, "upsample"):
                h = level.upsample.conv(F.interpolate(h, scale_factor=2, mode="nearest"))
        assert not hs
        return self.conv_out(F.silu(self.norm_out(h)))


ZERO_INIT_SUFFIXES = (".conv2", ".proj_out")  # and conv_out: zero-init in ddpm (nn.h)


def zero_init_(model):
    with torch.no_grad():
        for name, m in model.named_modules():
            if name.endswith(ZERO_INIT_SUFFIXES) or name == "conv_out":
                m.weight.zero_()
                m.bias.zero_()


def perturb_norms_(model, scale=0.1):
    """GroupNorm starts at weight 1, bias 0; move them so their gradients are generic."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.GroupNorm):
                m.weight.add_(scale * torch.randn_like(m.weight))
                m.bias.add_(scale * torch.randn_like(m.bias))


def load_model(path, use_ema=False):
    tensors, meta = load_safetensors(path)
    name, c = config_from_metadata(meta)
    model = UNet(c)
    prefix = "ema." if use_ema and ("ema." + next(iter(model.state_dict()))) in tensors else ""
    state = {k: tensors[prefix + k].to(torch.float32) for k in model.state_dict()}
    model.load_state_dict(state, strict=True)
    return model.eval(), meta, prefix == "ema."


def state_dict_items(model):
    return [(k, v) for k, v in model.state_dict().items()]


# ---------------------------------------------------------------------------------------
# Schedules, in float64, from their formulas (ddpm/diffusion/schedule.h; docs/derivation.md)

def schedule_betas(name, T, beta_start=1e-4, beta_end=0.02, s=0.008, max_beta=0.999):
    if name == "linear":
        return np.linspace(beta_start, beta_end, T, dtype=np.float64)
    if name == "quadratic":
        return np.linspace(beta_start ** 0.5, beta_end ** 0.5, T, dtype=np.float64) ** 2
    if name == "sigmoid":
        x = np.linspace(-6.0, 6.0, T, dtype=np.float64)
        return 1.0 / (1.0 + np.exp(-x)) * (beta_end - beta_start) + beta_start
    if name == "cosine":
        f = lambda t: np.cos((t / T + s) / (1 + s) * np.pi / 2) ** 2
        t = np.arange(1, T + 1, dtype=np.float64)
        return np.minimum(1.0 - f(t) / f(t - 1), max_beta)
    raise ValueError(f"unknown schedule {name}")


def schedule_tables(betas):
    """Arrays of length T, entry t-1 for t = 1..T."""
    alphas = 1.0 - betas
    alpha_bar = np.cumprod(alphas)
    alpha_bar_prev = np.append(1.0, alpha_bar[:-1])
    posterior_variance = betas * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
    clipped = np.append(posterior_variance[1], posterior_variance[1:]) if len(betas) > 1 else betas.copy()
    # The original code's "fixed large" sigma_t^2 (Ho et al.'s diffusion_utils_2.py, improved-diffusion's
    # gaussian_diffusion.py): beta_t, with its 0-based first entry replaced by posterior_variance[1], our beta-tilde_2.
    fixed_large = np.append(posterior_variance[1], betas[1:]) if len(betas) > 1 else betas.copy()
    return {
        "beta": betas, "alpha_bar": alpha_bar,
        "sqrt_alpha_bar": np.sqrt(alpha_bar), "sqrt_one_minus_alpha_bar": np.sqrt(1.0 - alpha_bar),
        "sqrt_recip_alpha": 1.0 / np.sqrt(alphas), "eps_coef": betas / np.sqrt(1.0 - alpha_bar),
        "posterior_variance": posterior_variance, "posterior_log_variance_clipped": np.log(clipped),
        "posterior_mean_coef1": betas * np.sqrt(alpha_bar_prev) / (1.0 - alpha_bar),
        "posterior_mean_coef2": (1.0 - alpha_bar_prev) * np.sqrt(alphas) / (1.0 - alpha_bar),
        "fixed_large_variance": fixed_large, "fixed_large_log_variance": np.log(fixed_large),
    }


def f32(a):  # float64 numpy -> float32 torch, rounded once
    return torch.from_numpy(np.asarray(a, dtype=np.float64).astype(np.float32))


def per_sample(table, t):  # float32 table value at each sample's t, shaped to broadcast over [N, C, H, W]
    return f32(table)[t - 1][:, None, None, None]


def q_sample(tables, x0, t, eps):
    # x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) eps, coefficients rounded to float32 as ddpm does
    return per_sample(tables["sqrt_alpha_bar"], t) * x0 + per_sample(tables["sqrt_one_minus_alpha_bar"], t) * eps


# ---------------------------------------------------------------------------------------
# Fixtures

def grads_of(out, dout, tensors):
    return torch.autograd.grad(out, tensors, grad_outputs=dout, allow_unused=False)


def layer_fixtures(path):
    items, meta = [], {}

    def add(prefix, **kv):
        for k, v in kv.items():
            items.append((f"{prefix}.{k}", v.detach()))

    # Convolutions: out = conv2d(x, weight, bias, stride, pad), then backward with a fixed dout.
    for name, (C, OC, H, K, stride, pad) in {"conv_k3s1": (3, 4, 6, 3, 1, 1), "conv_k3s2": (3, 4, 7, 3, 2, 1),
                                             "conv_k1": (4, 3, 5, 1, 1, 0)}.items():
        conv = nn.Conv2d(C, OC, K, stride, pad)
        x = torch.randn(2, C, H, H, requires_grad=True)
        out = conv(x)
        dout = torch.randn_like(out)
        dx, dw, db = grads_of(out, dout, [x, conv.weight, conv.bias])
        add(name, x=x, weight=conv.weight, bias=conv.bias, dout=dout, out=out, dx=dx, dweight=dw, dbias=db)
        meta[f"{name}.stride"], meta[f"{name}.pad"] = stride, pad

    lin = nn.Linear(5, 4)
    x = torch.randn(3, 5, requires_grad=True)
    out = lin(x)
    dout = torch.randn_like(out)
    dx, dw, db = grads_of(out, dout, [x, lin.weight, lin.bias])
    add("linear", x=x, weight=lin.weight, bias=lin.bias, dout=dout, out=out, dx=dx, dweight=dw, dbias=db)

    # GroupNorm on data with a large mean (3) to exercise the two-pass statistics.
    gn = nn.GroupNorm(3, 6, eps=1e-5)
    with torch.no_grad():
        gn.weight.add_(0.3 * torch.randn(6))
        gn.bias.add_(0.3 * torch.randn(6))
    x = (3.0 + 2.0 * torch.randn(2, 6, 3, 3)).requires_grad_()
    out = gn(x)
    dout = torch.randn_like(out)
    dx, dw, db = grads_of(out, dout, [x, gn.weight, gn.bias])
    add("group_norm", x=x, weight=gn.weight, bias=gn.bias, dout=dout, out=out, dx=dx, dweight=dw, dbias=db)
    meta["group_norm.groups"] = 3

    x = (4.0 * torch.randn(2, 3, 4, 5)).requires_grad_()
    out = F.silu(x)
    dout = torch.randn_like(out)
    (dx,) = grads_of(out, dout, [x])
    add("silu", x=x, dout=dout, out=out, dx=dx)

    x = torch.randn(2, 3, 3, 4, requires_grad=True)
    out = F.interpolate(x, scale_factor=2, mode="nearest")
    dout = torch.randn_like(out)
    (dx,) = grads_of(out, dout, [x])
    add("upsample", x=x, dout=dout, out=out, dx=dx)

    a = torch.randn(2, 2, 3, 3, requires_grad=True)
    b = torch.randn(2, 3, 3, 3, requires_grad=True)
    out = torch.cat([a, b], dim=1)
    dout = torch.randn_like(out)
    da, db = grads_of(out, dout, [a, b])
    add("concat", a=a, b=b, dout=dout, out=out, da=da, db=db)

    # Blocks: parameters under "<block>.param.<name>", gradients under "<block>.grad.<name>".
    def add_block(prefix, module, inputs, out):
        dout = torch.randn_like(out)
        params = list(module.named_parameters())
        g = grads_of(out, dout, [v for v in inputs.values()] + [p for _, p in params])
        add(prefix, dout=dout, out=out, **inputs)
        for (k, _), gk in zip(inputs.items(), g[:len(inputs)]):
            items.append((f"{prefix}.d{k}", gk))
        for (n, p), gp in zip(params, g[len(inputs):]):
            items.append((f"{prefix}.param.{n}", p.detach()))
            items.append((f"{prefix}.grad.{n}", gp))

    attn = AttnBlock(8, 2)
    perturb_norms_(attn)
    x = torch.randn(2, 8, 3, 3, requires_grad=True)
    add_block("attn_block", attn, {"x": x}, attn(x))
    meta["attn_block.channels"], meta["attn_block.groups"] = 8, 2

    res = ResBlock(4, 6, 8, 2, 0.0)
    perturb_norms_(res)
    x = torch.randn(2, 4, 4, 4, requires_grad=True)
    temb = torch.randn(2, 8, requires_grad=True)
    add_block("res_block", res, {"x": x, "temb": temb}, res(x, temb))
    meta.update({"res_block.in": 4, "res_block.out": 6, "res_block.temb_ch": 8, "res_block.groups": 2})

    meta["source"] = "tools/torch_reference.py fixtures (torch %s)" % torch.__version__
    save_safetensors(path, items, meta)


def minimal_model():
    model = UNet(CONFIGS["minimal"])  # PyTorch's default init everywhere: ddpm's zero-init layers are not zero
    perturb_norms_(model)
    return model


def unet_fixtures(out_dir, model):
    weights = os.path.join(out_dir, "unet_minimal_weights.safetensors")
    meta = config_metadata("minimal", CONFIGS["minimal"])
    meta["source"] = "tools/torch_reference.py: PyTorch default init, GroupNorm affine perturbed"
    save_safetensors(weights, state_dict_items(model), meta)

    # eps prediction at fixed (x_t, t), L_simple, and every parameter's gradient.
    x_t = torch.randn(3, 1, 8, 8)
    t = torch.tensor([1, 250, 1000], dtype=torch.int64)
    eps = torch.randn(3, 1, 8, 8)
    model.zero_grad()
    eps_theta = model(x_t, t)
    loss = F.mse_loss(eps_theta, eps)
    loss.backward()
    items = [("x_t", x_t), ("t", t), ("eps", eps), ("eps_theta", eps_theta.detach()), ("loss", loss.detach())]
    items += [("grad." + n, p.grad) for n, p in model.named_parameters()]
    save_safetensors(os.path.join(out_dir, "unet_minimal.safetensors"), items,
                     {"weights": "unet_minimal_weights.safetensors"})
    # The same as an eps check of the weights file, as load_model reads it.
    save_safetensors(os.path.join(out_dir, "eps_check_minimal.safetensors"),
                     [("x_t", x_t), ("t", t), ("eps_theta", eps_theta.detach())],
                     {"checkpoint": "unet_minimal_weights.safetensors", "use_ema": "0"})


def adam_fixture(path):
    lr = 1e-2
    params = [torch.randn(5, 3), torch.randn(7)]
    p = [x.clone().requires_grad_() for x in params]
    opt = torch.optim.Adam(p, lr=lr, betas=(0.9, 0.999), eps=1e-8, foreach=False)
    items = [("p0.init", params[0]), ("p1.init", params[1])]
    for k in range(3):
        g = [torch.randn(5, 3), torch.randn(7)]
        g[1][:3] *= 1e-6  # gradients near eps exercise the denominator
        for x, gx in zip(p, g):
            x.grad = gx.clone()
        opt.step()
        items += [(f"step.{k}.g0", g[0]), (f"step.{k}.g1", g[1]),
                  (f"step.{k}.p0", p[0].detach().clone()), (f"step.{k}.p1", p[1].detach().clone())]
    for i, x in enumerate(p):
        st = opt.state[x]
        items += [(f"m{i}", st["exp_avg"]), (f"v{i}", st["exp_avg_sq"])]
    save_safetensors(path, items, {"lr": repr(lr), "beta1": "0.9", "beta2": "0.999", "eps": "1e-08"})


def train_fixture(path, model):
    """10 steps of Trainer::step with x0, t and eps fed from here: L_simple, backward,
    clip_grad_norm, Adam with linear warm-up."""
    lr, warmup, grad_clip, steps, B, T = 1e-3, 4, 1.0, 10, 4, 1000
    tables = schedule_tables(schedule_betas("linear", T))
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, foreach=False)
    items, losses, norms = [], [], []
    for k in range(steps):
        x0 = torch.tanh(1.5 * torch.randn(B, 1, 8, 8))  # data in [-1, 1]
        t = torch.randint(1, T + 1, (B,), dtype=torch.int64)
        eps = torch.randn(B, 1, 8, 8)
        items += [(f"step.{k}.x0", x0), (f"step.{k}.t", t), (f"step.{k}.eps", eps)]
        opt.zero_grad()
        loss = F.mse_loss(model(q_sample(tables, x0, t, eps), t), eps)
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)))
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (k + 1) / warmup)
        opt.step()
        losses.append(loss.item())
    items += [("loss", torch.tensor(losses, dtype=torch.float32)), ("grad_norm", torch.tensor(norms))]
    items += [("final." + n, p.detach()) for n, p in model.named_parameters()]
    save_safetensors(path, items, {"weights": "unet_minimal_weights.safetensors", "schedule": "linear", "T": T,
                                   "lr": repr(lr), "warmup": warmup, "grad_clip": repr(grad_clip)})


def sample_fixture(path, model):
    """Algorithm 2, 20 steps from a fixed x_T with fixed z, for sigma^2 = beta and beta-tilde."""
    T, N, beta_start, beta_end = 20, 2, 1e-3, 0.2
    tables = schedule_tables(schedule_betas("linear", T, beta_start, beta_end))
    x_T = torch.randn(N, 1, 8, 8)
    z = {t: torch.randn(N, 1, 8, 8) for t in range(T, 1, -1)}
    items = [("x_T", x_T)] + [(f"z.{t}", z[t]) for t in range(T, 1, -1)]
    A = f32(tables["sqrt_recip_alpha"])
    minus_B = f32(-tables["sqrt_recip_alpha"] * tables["eps_coef"])
    for variance, sigma2 in (("fixed_large", tables["beta"]), ("fixed_small", tables["posterior_variance"])):
        sigma = torch.sqrt(f32(sigma2))  # sqrt of the float32 variance, as p_sample does
        x = x_T
        with torch.no_grad():
            for t in range(T, 0, -1):
                eps_theta = model(x, torch.full((N,), t, dtype=torch.int64))
                mean = A[t - 1] * x + minus_B[t - 1] * eps_theta  # mu = A x_t - B eps_theta (Algorithm 2 line 4)
                x = mean + sigma[t - 1] * z[t] if t > 1 else mean
                items.append((f"{variance}.x.{t - 1}", x))
    save_safetensors(path, items, {"weights": "unet_minimal_weights.safetensors", "schedule": "linear", "T": T,
                                   "beta_start": repr(beta_start), "beta_end": repr(beta_end)})


def schedule_fixture(path):
    names = ["beta", "alpha_bar", "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1",
             "posterior_mean_coef2", "fixed_large_variance", "fixed_large_log_variance"]
    items = []
    for sched in ("linear", "cosine", "sigmoid", "quadratic"):
        for T in (1000, 10):
            tables = schedule_tables(schedule_betas(sched, T))
            items += [(f"{sched}.{T}.{n}", f32(tables[n])) for n in names]
    save_safetensors(path, items, {"note": "float64 tables rounded once to float32; entry t-1 holds t = 1..T"})


def formula_weights_(model):
    """Every parameter from a formula both sides compute (no weights in the fixture): element i
    of parameter `name` is sin(0.61 i + 0.17 h) / sqrt(fan_in) for a matrix or kernel,
    0.1 sin(...) for a bias and 1 + 0.1 sin(...) for a GroupNorm weight, with h the sum of the
    name's bytes; in float64 (libm's sin), rounded to float32 once."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            h = sum(name.encode())
            fan_in = p.numel() // p.shape[0] if p.dim() >= 2 else 0
            v = [math.sin(0.61 * i + 0.17 * h) for i in range(p.numel())]
            if fan_in:
                v = [x / math.sqrt(fan_in) for x in v]
            elif "norm" in name and name.endswith(".weight"):
                v = [1.0 + 0.1 * x for x in v]
            else:
                v = [0.1 * x for x in v]
            p.copy_(torch.tensor(v, dtype=torch.float64).reshape(p.shape).to(torch.float32))


def rgb_fixture(path):
    """The RGB config (16x16x3, ch 16) with formula weights: eps_theta, L_simple and the
    gradients of the layers that touch the channels (conv_in, conv_out)."""
    c = CONFIGS["rgb"]
    model = UNet(c)
    formula_weights_(model)
    x_t = torch.randn(2, 3, 16, 16)
    t = torch.tensor([3, 700], dtype=torch.int64)
    eps = torch.randn(2, 3, 16, 16)
    eps_theta = model(x_t, t)
    loss = F.mse_loss(eps_theta, eps)
    loss.backward()
    items = [("x_t", x_t), ("t", t), ("eps", eps), ("eps_theta", eps_theta.detach()), ("loss", loss.detach())]
    items += [("grad." + n, p.grad) for n, p in model.named_parameters()
              if n.startswith(("conv_in.", "conv_out.", "down.1.attns.0.q."))]
    meta = config_metadata("rgb", c)
    meta["weights"] = "formula (tools/torch_reference.py formula_weights_)"
    save_safetensors(path, items, meta)


def cmd_fixtures(args):
    torch.manual_seed(0)
    os.makedirs(args.out, exist_ok=True)
    layer_fixtures(os.path.join(args.out, "layers.safetensors"))
    model = minimal_model()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    unet_fixtures(args.out, model)
    adam_fixture(os.path.join(args.out, "adam.safetensors"))
    model.eval()
    sample_fixture(os.path.join(args.out, "sample_minimal.safetensors"), model)
    model.load_state_dict(initial)
    model.train()  # dropout is 0 in the minimal config, so train mode changes nothing
    train_fixture(os.path.join(args.out, "train_minimal.safetensors"), model)
    schedule_fixture(os.path.join(args.out, "schedules.safetensors"))
    rgb_fixture(os.path.join(args.out, "unet_rgb.safetensors"))  # last: the ones above keep their random draws
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"torch_reference: fixtures in {args.out} ({total // 1024} KB)")


# ---------------------------------------------------------------------------------------
# Interop

def read_idx_images(folder, split="t10k"):
    for name in (f"{split}-images-idx3-ubyte", f"{split}-images.idx3-ubyte"):
        for suffix, opener in (("", open), (".gz", gzip.open)):
            p = os.path.join(folder, name + suffix)
            if os.path.exists(p):
                with opener(p, "rb") as f:
                    data = f.read()
                magic, n, h, w = struct.unpack(">IIII", data[:16])
                assert magic == 0x803, f"{p}: bad magic {magic:#x}"
                return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, 1, h, w)
    raise FileNotFoundError(f"no {split}-images-idx3-ubyte in {folder} (make data)")


def write_eps_check(model, meta, checkpoint, out, mnist, n, use_ema, seed=1):
    """x_t from real digits (or noise when mnist is None), t spread over 1..T, and eps_theta."""
    g = torch.Generator().manual_seed(seed)
    c = model.c
    S, T = c["image_size"], int(meta.get("train.T", 1000))
    if mnist:
        x0 = torch.from_numpy(read_idx_images(mnist)[:n].astype(np.float32) / 127.5 - 1.0)
        assert x0.shape[1:] == (c["in_ch"], S, S), f"digits {tuple(x0.shape)} do not fit the model"
    else:
        x0 = torch.rand(n, c["in_ch"], S, S, generator=g) * 2 - 1
    tables = schedule_tables(schedule_betas(meta.get("train.schedule", "linear"), T))
    t = torch.from_numpy(np.linspace(1, T, n).round().astype(np.int64))
    x_t = q_sample(tables, x0, t, torch.randn(x0.shape, generator=g))
    labels = torch.full((n,), c["num_classes"], dtype=torch.int64) if c["num_classes"] > 0 else None
    with torch.no_grad():
        eps_theta = model(x_t, t, labels)
    save_safetensors(out, [("x_t", x_t), ("t", t), ("eps_theta", eps_theta)],
                     {"checkpoint": os.path.abspath(checkpoint), "use_ema": "1" if use_ema else "0"})
    print(f"torch_reference: eps check of {checkpoint}{' (EMA weights)' if use_ema else ''}: "
          f"{n} images at t = {t[0].item()}..{t[-1].item()}, |eps_theta| max {eps_theta.abs().max():.3f} -> {out}")


def cmd_eps_check(args):
    model, meta, used_ema = load_model(args.checkpoint, args.ema)
    if args.ema and not used_ema:
        sys.exit(f"torch_reference: {args.checkpoint} has no ema.* weights")
    write_eps_check(model, meta, args.checkpoint, args.out, args.mnist, args.n, used_ema)


def cmd_export(args):
    torch.manual_seed(args.seed)
    c = CONFIGS[args.config]
    model = UNet(c)
    if args.zero_init:
        zero_init_(model)
    meta = config_metadata(args.config, c)
    meta["source"] = "tools/torch_reference.py export (PyTorch default init)"
    save_safetensors(args.out, state_dict_items(model), meta)
    print(f"torch_reference: {args.config} U-Net, {sum(p.numel() for p in model.parameters())} parameters -> {args.out}")
    if args.eps_check:
        write_eps_check(model.eval(), meta, args.out, args.eps_check, args.mnist, args.n, False)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("fixtures")
    p.add_argument("--out", required=True)
    p = sub.add_parser("eps-check")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--mnist", default="data/mnist")
    p.add_argument("--out", required=True)
    p.add_argument("--ema", action="store_true")
    p.add_argument("--n", type=int, default=16)
    p = sub.add_parser("export")
    p.add_argument("--config", default="tiny", choices=sorted(CONFIGS))
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--zero-init", action="store_true", help="zero the layers ddpm zero-initializes")
    p.add_argument("--eps-check", default="")
    p.add_argument("--mnist", default="")
    p.add_argument("--n", type=int, default=16)
    args = ap.parse_args()
    {"fixtures": cmd_fixtures, "eps-check": cmd_eps_check, "export": cmd_export}[args.cmd](args)


if __name__ == "__main__":
    main()
