"""Prints the golden values of internal/sampler's tests from diffusers/torch.

Run: /work/venv/py/bin/python internal/sampler/testdata/gen_golden.py
(diffusers 0.42.1, torch 2.15.0 CPU, numpy 2.4). The output is pasted into
golden_test.go; nothing reads this file at test time.
"""
import hashlib
import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu, Flux2KleinPipeline


def hexs(a):
    a = np.asarray(a, dtype=np.float32)
    return ", ".join("0x%08x" % v for v in a.view(np.uint32))


def digest(t):
    a = t.float().numpy().astype("<f4") if isinstance(t, torch.Tensor) else np.asarray(t, "<f4")
    return hashlib.sha256(a.tobytes()).hexdigest()


sched = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                        max_shift=1.15, time_shift_type="exponential")
print("// schedules: seq, steps, mu, sigmas")
for seq, n in [(3072, 50), (3072, 4), (4096, 50), (4096, 4), (8192, 50), (3072, 1), (256, 28), (16, 3), (4301, 20)]:
    mu = compute_empirical_mu(seq, n)
    sched.set_timesteps(sigmas=np.linspace(1.0, 1 / n, n), mu=mu)
    print("{%d, %d, %r, []uint32{%s}}," % (seq, n, mu, hexs(sched.sigmas.numpy())))

print("// timesteps for 3072/50: fp32 cpu, bf16 cpu")
sched.set_timesteps(sigmas=np.linspace(1.0, 1 / 50, 50), mu=compute_empirical_mu(3072, 50))
ts = sched.timesteps
print("fp32:", hexs((ts.expand(1).to(torch.float32) / 1000).numpy() if False else (ts.to(torch.float32) / 1000).numpy()))
print("bf16:", hexs((ts.to(torch.bfloat16) / 1000).float().numpy()))
print("cudaemu fp32:", hexs((ts * torch.tensor(1 / 1000, dtype=torch.float32)).numpy()))


def ramp(n, mul, mod, off, div):
    k = (np.arange(n, dtype=np.int64) * mul) % mod - off
    return torch.from_numpy(k.astype(np.float32) / np.float32(div))


n = 4096
pos = ramp(n, 7919, 2001, 1000, 337)
neg = ramp(n, 104729, 1999, 999, 411)
for g in (4.0, 4.3):
    print("cfg fp32 g=%r %s" % (g, digest(neg + g * (pos - neg))))
    pb, nb = pos.bfloat16(), neg.bfloat16()
    print("cfg bf16 g=%r %s" % (g, digest(nb + g * (pb - nb))))

sig = sched.sigmas
for i in (0, 25, 49):
    dt = sig[i + 1] - sig[i]
    x = pos.clone()
    v = neg.clone()
    print("euler fp32 i=%d %s" % (i, digest((x.to(torch.float32) + dt * v).to(v.dtype))))
    xb, vb = pos.bfloat16(), neg.bfloat16()
    print("euler bf16 i=%d %s" % (i, digest((xb.to(torch.float32) + dt * vb).to(vb.dtype))))

# bf16 rounding over a strided sample of all float32 bit patterns
pats = (np.arange(0, 1 << 32, 65521, dtype=np.uint64)).astype(np.uint32)
f = pats.view(np.float32).copy()
keep = ~np.isnan(f)  # torch's vectorised CPU path encodes every NaN as 0xffff
print("bf16 round", int(keep.sum()), digest(torch.from_numpy(f[keep]).bfloat16()))

# packing / patchify of an arange latent: B=2, 32 ch, 2h=6, 2w=10
B, h, w = 2, 3, 5
x = torch.arange(B * 32 * 2 * h * 2 * w, dtype=torch.float32).reshape(B, 32, 2 * h, 2 * w)
p = Flux2KleinPipeline._patchify_latents(x)
print("patchify", digest(p))
print("pack", digest(Flux2KleinPipeline._pack_latents(p)))
print("unpatchify roundtrip", torch.equal(Flux2KleinPipeline._unpatchify_latents(p), x))
ids = Flux2KleinPipeline._prepare_latent_ids(p)
print("img ids", ids.shape, ids[0, :7].tolist())
