#!/usr/bin/env python3
"""Test vectors of torch's CPU randn for internal/sampler (TorchGenerator, TorchLatentNoise).

Regenerate (torch 2.15.0 and diffusers 0.42.1 of scripts/requirements.txt, on an x86-64 CPU with
AVX2 or AVX-512):

    python scripts/torch_noise_vectors.py --out internal/sampler/testdata/torch_randn.json

The output is deterministic: running it again on such a machine rewrites the file byte for byte.
torch picks its float32 normal kernel by CPU: without AVX2 (or on ARM) the values differ, so the
script refuses to run there (--any-cpu overrides, for looking only).

What is written: values as float32 bit patterns, or (sha) the first 16 hex digits of the SHA-256
of the values as little-endian float32 (bfloat16 values widened to float32):
  randn     torch.randn(n, generator=torch.Generator("cpu").manual_seed(seed), dtype=d) for
            every seed and size in `sizes` (both sides of the 16-element switch from the
            per-element double-precision path to the vectorised one, and lengths that are not
            multiples of 16).
  examples  a few of those arrays in full, to show what differs when a hash does not.
  sequence  several draws in a row from one generator (the per-element path caches the second
            value of each Box-Muller pair in the generator, and the vectorised path must leave
            the generator where torch does).
  latents   per seed and dtype, for each of `latent_shapes`, the initial latents
            Flux2KleinPipeline.prepare_latents draws: the (B, 128, H/16, W/16) noise and the
            packed (B, H/16*W/16, 128) tokens it returns.
  kernel    every possible input of the float32 Box-Muller kernel, run through torch's own
            compiled AVX2 kernel (NormalFill16<float>::operator(), located with `nm` in
            libtorch_cpu.so and called through ctypes): a float uniform takes only 2^24 values,
            so "radius" feeds each of them as u1 with angle input u2 = 0 (the output is the
            radius), and "angle" feeds each as u2 with a fixed u1 (outputs r*cos and r*sin).
            Runs of 16 hold 8 consecutive inputs in lanes 0-7 and their partners in 8-15.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import platform
import random
import subprocess
import sys
import types

import numpy as np
import torch
from diffusers.pipelines.flux2.pipeline_flux2_klein import Flux2KleinPipeline

SEEDS = [0, 1, 2, 42, 1234, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**32 + 42, 2**53 - 1, 2**63 - 1, -1, -42, -(2**63)]
_rng = random.Random(17)
SEEDS += sorted(_rng.randrange(0, 2**53) for _ in range(20 - len(SEEDS)))
BF16_SEEDS = SEEDS[:5] + SEEDS[-2:]
SIZES = [1, 2, 7, 15, 16, 17, 31, 32, 100, 4099]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# (batch, width, height); width and height in pixels, the latent grid is (height/16, width/16).
LATENTS = [(b, w, h) for (w, h) in [(64, 64), (96, 64), (1024, 768)] for b in (1, 3)]
# Arrays stored in full, to show what differs when a hash does not match.
EXAMPLES = [(0, "float32", 15), (0, "float32", 17), (42, "float32", 16), (42, "bfloat16", 17)]
SEQUENCES = [
    [("float32", 7), ("float32", 7)],
    [("float32", 3), ("float32", 17), ("float32", 1), ("bfloat16", 5)],
    [("float32", 17), ("float32", 16), ("bfloat16", 33), ("float32", 15)],
    [("bfloat16", 20), ("float32", 4099), ("float32", 2)],
]


def f32_bits(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().contiguous().numpy().astype("<f4").view("<u4").ravel()


def digest(t: torch.Tensor) -> str:
    """First 16 hex digits of the SHA-256 of the values as little-endian float32."""
    return hashlib.sha256(f32_bits(t).astype("<u4").tobytes()).hexdigest()[:16]


def gen(seed: int) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


def latents(seed: int, batch: int, width: int, height: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """prepare_latents of the real pipeline class, on a stand-in object with its VAE scale."""
    fake = types.SimpleNamespace(
        vae_scale_factor=8,
        _prepare_latent_ids=Flux2KleinPipeline._prepare_latent_ids,
        _pack_latents=Flux2KleinPipeline._pack_latents,
    )
    packed, _ = Flux2KleinPipeline.prepare_latents(
        fake, batch_size=batch, num_latents_channels=32, height=height, width=width,
        dtype=dtype, device=torch.device("cpu"), generator=gen(seed),
    )
    shape = (batch, 128, height // 16, width // 16)
    noise = torch.randn(shape, generator=gen(seed), dtype=dtype)
    # The packed tokens are the channel-first noise, transposed.
    assert torch.equal(packed, noise.flatten(2).transpose(1, 2)), "prepare_latents layout changed"
    return noise, packed


# Fixed u1 inputs (times 2^-24) of the angle sweeps: radius exactly 1 (the outputs are cos and
# sin themselves) and radius 1.52.
ANGLE_U1 = [0x64BA68, 0xB00000]


def torch_kernel():
    """torch's compiled AVX2 NormalFill16<float>::operator()(float* data), bound to mean 0, std 1."""
    lib = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    syms = subprocess.run(["nm", lib], capture_output=True, text=True, check=True).stdout
    cands = [int(line.split()[0], 16) for line in syms.splitlines() if "NormalFill16IfLb1EEclEPf" in line]
    base = next(int(line.split("-")[0], 16) for line in open("/proc/self/maps")
                if line.rstrip().endswith("/libtorch_cpu.so") and int(line.split()[2], 16) == 0)
    # The object holds mean and std broadcast to 8 lanes each (32-byte aligned, loaded with vmovaps).
    raw = np.zeros(32, dtype=np.float32)
    this = raw[(-raw.ctypes.data % 32) // 4:][:16]
    this[8:] = 1.0
    probe = np.array([0.25] * 8 + [0.125] * 8, dtype=np.float32)
    for addr in cands:  # one per CPU capability build; the AVX2 one reads the 8-lane layout
        fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)(base + addr)
        d = probe.copy()
        fn(this.ctypes.data, d.ctypes.data)
        if abs(d[0] - 0.53636) < 1e-4:  # sqrt(-2 ln 0.75) cos(pi/4)
            return lambda buf: [fn(this.ctypes.data, buf.ctypes.data + 64 * i) for i in range(buf.size // 16)]
    raise SystemExit("torch's AVX2 NormalFill16<float> kernel not found in " + lib)


def kernel_sweeps() -> dict:
    run = torch_kernel()
    k = np.arange(1 << 24, dtype=np.uint32)
    u = (k.astype(np.float32) * np.float32(2.0**-24)).reshape(-1, 8)
    buf = np.zeros((u.shape[0], 16), dtype=np.float32)
    buf[:, :8] = u
    run(buf)
    radius = hashlib.sha256(buf[:, :8].astype("<f4").tobytes()).hexdigest()[:16]
    angle = []
    for u1 in ANGLE_U1:
        buf[:, :8] = np.float32(u1 * 2.0**-24)
        buf[:, 8:] = u
        run(buf)
        angle.append(hashlib.sha256(buf.astype("<f4").tobytes()).hexdigest()[:16])
    return {"radius": radius, "angle_u1": ANGLE_U1, "angle": angle}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--any-cpu", action="store_true", help="run without AVX2 (the values will not match)")
    args = ap.parse_args()

    cap = torch.backends.cpu.get_cpu_capability()
    if cap not in ("AVX2", "AVX512") and not args.any_cpu:
        print(f"torch CPU capability is {cap}: the float32 kernel the vectors pin needs AVX2 or AVX512", file=sys.stderr)
        return 1

    doc = {
        "generator": "scripts/torch_noise_vectors.py",
        "torch": torch.__version__.split("+")[0],
        "cpu": f"{platform.machine()} {cap}",
        "sizes": SIZES,
        "latent_shapes": [{"batch": b, "width": w, "height": h} for b, w, h in LATENTS],
        "randn": [],
        "examples": [],
        "sequence": [],
        "latents": [],
        "kernel": kernel_sweeps(),
    }
    for dname, dtype in DTYPES.items():
        for seed in SEEDS if dname == "float32" else BF16_SEEDS:
            doc["randn"].append({"seed": seed, "dtype": dname,
                                 "sha": [digest(torch.randn(n, generator=gen(seed), dtype=dtype)) for n in SIZES]})
            noise, packed = zip(*(latents(seed, b, w, h, dtype) for b, w, h in LATENTS))
            doc["latents"].append({"seed": seed, "dtype": dname,
                                   "noise": [digest(t) for t in noise], "packed": [digest(t) for t in packed]})
    for seed, dname, n in EXAMPLES:
        t = torch.randn(n, generator=gen(seed), dtype=DTYPES[dname])
        doc["examples"].append({"seed": seed, "dtype": dname, "values": ["%08x" % v for v in f32_bits(t)]})
    for k, draws in enumerate(SEQUENCES):
        seed = SEEDS[k * 3]
        g = gen(seed)
        doc["sequence"].append({"seed": seed, "draws": [
            {"dtype": dname, "n": n, "sha": digest(torch.randn(n, generator=g, dtype=DTYPES[dname]))} for dname, n in draws]})

    with open(args.out, "w") as f:
        f.write("{\n")
        keys = list(doc)
        for i, key in enumerate(keys):
            val = doc[key]
            sep = "," if i + 1 < len(keys) else ""
            if isinstance(val, list) and val and isinstance(val[0], dict):
                f.write(f'  "{key}": [\n')
                f.write(",\n".join("    " + json.dumps(v, separators=(",", ":")) for v in val))
                f.write(f"\n  ]{sep}\n")
            else:
                f.write(f'  "{key}": {json.dumps(val)}{sep}\n')
        f.write("}\n")
    print(f"wrote {args.out}: {len(doc['randn'])} seed/dtype pairs x {len(SIZES)} sizes and {len(LATENTS)} latent shapes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
