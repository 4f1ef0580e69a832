#!/usr/bin/env python3
"""The comparison point of `go run ./cmd/bench`: diffusers' Flux2KleinPipeline in PyTorch on the
same architecture with random weights, same size, steps and guidance, timed per phase.

    # on a GPU host, full-size architecture, bf16 (the baseline of the README's GPU figures)
    python scripts/bench_diffusers.py --random-weights --device cuda --dtype bf16 --size 1024x768 --steps 28
    # anywhere, the tiny model (a smoke test of the harness)
    python scripts/bench_diffusers.py --tiny --device cpu --dtype fp32 --size 256x256 --steps 4

It prints median seconds for text encoding (prompt + negative), the denoising loop, one step, the VAE
decode and end to end, the transformer's achieved TFLOP/s against --peak-tflops, and peak CUDA memory.
FLOPs follow the convention of docs/model.md §9 (2 per multiply-add, element-wise work ignored), the same
as cmd/bench, so the two reports compare directly. Random weights come from scripts/export_onnx.py's
builders (seeded), so both sides run the same architecture.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export_onnx as ex  # noqa: E402


def transformer_flops(cfg: dict, image_tokens: int, text_tokens: int = 512) -> float:
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    f = cfg["mlp_ratio"] * d
    s = image_tokens + text_tokens
    attn = 4 * s * s * d
    double = 2 * s * (4 * d * d + 3 * d * f) + attn
    single = 2 * s * (d * (3 * d + 2 * f) + (d + f) * d) + attn
    c = cfg["in_channels"]
    embed = 2 * image_tokens * c * d + 2 * text_tokens * cfg["joint_attention_dim"] * d + 2 * image_tokens * d * c
    return cfg["num_layers"] * double + cfg["num_single_layers"] * single + embed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--random-weights", action="store_true", help="full-size architecture, random weights")
    which.add_argument("--tiny", action="store_true", help="the tiny test architecture")
    ap.add_argument("--tokenizer", default="models/tiny/tokenizer", help="tokenizer folder")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    ap.add_argument("--size", default="1024x768")
    ap.add_argument("--steps", type=int, default=28)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="H100 SXM dense bf16: 989")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the figures as JSON to this file (scripts/gpu_check)")
    args = ap.parse_args()

    ex.init_torch()
    torch = ex.torch
    width, height = (int(v) for v in args.size.split("x"))
    comps = ex.build_tiny() if args.tiny else ex.build_random(args.seed, 1.0)
    pipe = ex.build_tiny_pipeline(comps, Path(args.tokenizer))
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    pipe.to(args.device, dtype)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    text_s, loop_s, step_s, decode_s, total_s = [], [], [], [], []
    for run in range(args.warmup + args.runs):
        prompt = f"a lighthouse on a cliff at dusk, photograph, run {run}"
        marks = []

        def on_step(_pipe, _i, _t, kwargs):
            sync()
            marks.append(time.perf_counter())
            return kwargs

        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            pe, _ = pipe.encode_prompt(prompt=prompt, device=args.device)
            ne, _ = pipe.encode_prompt(prompt="", device=args.device)
        sync()
        t1 = time.perf_counter()
        gen = torch.Generator("cpu").manual_seed(run)
        with torch.no_grad():
            latents = pipe(prompt_embeds=pe, negative_prompt_embeds=ne, height=height, width=width,
                           num_inference_steps=args.steps, guidance_scale=args.guidance, generator=gen,
                           output_type="latent", callback_on_step_end=on_step).images
        sync()
        t2 = time.perf_counter()
        with torch.no_grad():
            # output_type="latent" returns the BN-denormalised, unpatchified VAE latent.
            pipe.vae.decode(latents, return_dict=False)[0]
        sync()
        t3 = time.perf_counter()
        if run < args.warmup:
            continue
        text_s.append(t1 - t0)
        loop_s.append(t2 - t1)
        step_s += [b - a for a, b in zip([t1] + marks[:-1], marks)]
        decode_s.append(t3 - t2)
        total_s.append(t3 - t0)

    forwards = 2 if args.guidance > 1 else 1
    step_flop = forwards * transformer_flops(comps.transformer.config, (width // 16) * (height // 16))
    med = statistics.median
    print(f"diffusers Flux2KleinPipeline ({comps.name}) on {args.device} ({args.dtype}), "
          f"{args.size}, {args.steps} steps, guidance {args.guidance}, median of {args.runs} runs")
    print(f"text_encoding    {med(text_s):10.4f} s")
    print(f"transformer_step {med(step_s):10.4f} s  {step_flop / 1e12:8.3f} TFLOP  "
          f"{step_flop / 1e12 / med(step_s):8.2f} TFLOP/s  {100 * step_flop / 1e12 / med(step_s) / args.peak_tflops:5.1f}% of peak")
    print(f"denoising        {med(loop_s):10.4f} s")
    print(f"vae_decode       {med(decode_s):10.4f} s")
    print(f"end_to_end       {med(total_s):10.4f} s")
    peak_gib = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else None
    if peak_gib is not None:
        print(f"peak cuda memory {peak_gib:10.2f} GiB")
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump({"pipeline": "diffusers Flux2KleinPipeline", "model": comps.name, "device": args.device,
                       "dtype": args.dtype, "size": args.size, "steps": args.steps, "guidance": args.guidance,
                       "runs": args.runs, "text_encoding_s": med(text_s), "s_per_step": med(step_s),
                       "denoising_s": med(loop_s), "vae_decode_s": med(decode_s), "end_to_end_s": med(total_s),
                       "transformer_tflops": step_flop / 1e12 / med(step_s), "peak_tflops": args.peak_tflops,
                       "peak_gpu_memory_gib": peak_gib}, f, indent=1)


if __name__ == "__main__":
    main()
