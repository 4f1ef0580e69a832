#!/usr/bin/env python3
"""Reference cases whose noise comes from the seed: testdata/reference/seeds.

The main reference cases (testdata/reference/index.json) pass their initial noise to the
pipeline as `latents=` and the Go tests inject the same array. These cases do not: diffusers'
Flux2KleinPipeline (fp32, CPU, one thread, on the torch modules of models/tiny) draws its own
noise from `generator=torch.Generator("cpu").manual_seed(seed)`, as a user's script does, so a
Go test can run the server's pipeline from the seed alone and compare final latents and images.

`scripts/export_onnx.py --reference` writes them after the main cases. To regenerate only these
(torch 2.15.0, diffusers 0.42.1, transformers 5.23.0 of scripts/requirements.txt; an x86-64 CPU
with AVX2, whose float32 randn kernel sampler.TorchLatentNoise reproduces):

    python scripts/reference_seeds.py --model models/tiny --out testdata/reference/seeds

Output: index.json (format of testdata/reference/index.json: cases with their parameters and
`arrays` descriptors) and raw little-endian C-order arrays `<case>.<array>.bin`:
  final_latents   float32 [B, S, 128]   packed latents after the last Euler step
  image           uint8 [B, H, W, 3]    round(clamp(x/2+0.5, 0, 1)*255) of the fp32 VAE output
  pipeline_noise  float32 [B, 128, h, w] the noise the pipeline drew, read back from its first
                  transformer input; for diagnosis only: a test must draw the noise from the seed
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

# Small sizes and few steps (CI runs them on CPU); one batch of three images, since the batch is
# one draw from one generator; seeds at the edges of what torch and the API accept.
SEED_CASES = [
    dict(name="seed42_64x64", prompt="a red fox in fresh snow", width=64, height=64,
         num_inference_steps=4, guidance_scale=4.0, num_images=1, seed=42),
    dict(name="seed0_no_cfg_96x64", prompt="a cat on a skateboard", width=96, height=64,
         num_inference_steps=3, guidance_scale=1.0, num_images=1, seed=0),
    dict(name="seed_2p53m1_three_images", prompt="a lighthouse at dusk", width=64, height=64,
         num_inference_steps=2, guidance_scale=3.5, num_images=3, seed=2**53 - 1),
    dict(name="seed_negative_64x80", prompt="mountain lake, pine trees, reflections", width=64, height=80,
         num_inference_steps=2, guidance_scale=5.0, num_images=1, seed=-7),
]

CONVENTIONS = {
    "arrays": "raw little-endian, C order",
    "noise": "drawn by the pipeline from generator=torch.Generator('cpu').manual_seed(seed): one "
    "torch.randn((num_images,128,H/16,W/16), float32) on the CPU, packed to [B,h*w,128]; not passed as latents=",
    "negative_prompt": "\"\" (the diffusers klein pipeline's own); CFG when guidance_scale > 1",
    "final_latents": "packed [B,h*w,128] after the last Euler step (before BN de-norm and unpack)",
    "image": "uint8 [B,H,W,3] = round(clamp(x/2+0.5,0,1)*255) of the fp32 VAE output",
    "pipeline_noise": "[B,128,h,w] float32, the pipeline's first transformer input unpacked; "
    "for diagnosis only, a test draws the noise from the seed",
}


def write_cases(pipe, writer_cls, out_dir: Path, model: dict) -> None:
    """Runs SEED_CASES on `pipe` and writes out_dir/index.json and the arrays.

    writer_cls(root).put(name, array) writes one array and returns its descriptor (export_onnx's
    ArrayWriter); `model` identifies the weights, as in the main index.
    """
    import diffusers
    import transformers
    from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu

    out_dir.mkdir(parents=True, exist_ok=True)
    for p in out_dir.glob("*.bin"):
        p.unlink()
    writer = writer_cls(out_dir)
    first_input: list[torch.Tensor] = []

    def hook(_module, _args, kwargs):
        if not first_input:
            first_input.append(kwargs["hidden_states"].detach().clone())

    handle = pipe.transformer.register_forward_pre_hook(hook, with_kwargs=True)
    cases = []
    try:
        for case in SEED_CASES:
            first_input.clear()
            name, n_img, seed = case["name"], case["num_images"], case["seed"]
            h, w = case["height"] // 16, case["width"] // 16
            last: list[torch.Tensor] = []

            def on_step(_pipe, _i, _t, kw):
                last[:] = [kw["latents"].detach().clone()]
                return kw

            with torch.no_grad():
                images = pipe(
                    prompt=case["prompt"], height=case["height"], width=case["width"],
                    num_inference_steps=case["num_inference_steps"], guidance_scale=case["guidance_scale"],
                    num_images_per_prompt=n_img, generator=torch.Generator("cpu").manual_seed(seed),
                    output_type="np", callback_on_step_end=on_step, callback_on_step_end_tensor_inputs=["latents"],
                ).images
            noise = first_input[0].transpose(1, 2).reshape(n_img, 128, h, w)
            # What TorchLatentNoise reproduces: one randn over the whole batch from the seeded generator.
            drawn = torch.randn((n_img, 128, h, w), generator=torch.Generator("cpu").manual_seed(seed))
            if not torch.equal(noise, drawn):
                raise RuntimeError(f"{name}: the pipeline's noise is not torch.randn of the batch from the seed")
            arrays = {
                "final_latents": writer.put(f"{name}.final_latents", last[0].numpy().astype(np.float32)),
                "image": writer.put(f"{name}.image", (images * 255).round().astype("uint8")),
                "pipeline_noise": writer.put(f"{name}.pipeline_noise", noise.numpy().astype(np.float32)),
            }
            entry = dict(case, negative_prompt="")
            entry.update(cfg=case["guidance_scale"] > 1, mu=compute_empirical_mu(h * w, case["num_inference_steps"]),
                         image_seq_len=h * w, arrays=arrays)
            cases.append(entry)
            print(f"  {name}: seed {seed}, {n_img} image(s), {case['num_inference_steps']} steps", flush=True)
    finally:
        handle.remove()

    index = {
        "format_version": 1,
        "model": model,
        "generator": {
            "command": "scripts/reference_seeds.py (or scripts/export_onnx.py --reference)",
            "pipeline": "diffusers.Flux2KleinPipeline, fp32, CPU, generator=torch.Generator('cpu').manual_seed(seed)",
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__.split("+")[0],
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        },
        "conventions": CONVENTIONS,
        "cases": cases,
    }
    (out_dir / "index.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/tiny", help="tiny model directory (rebuilt from its seed and checked)")
    ap.add_argument("--out", default="testdata/reference/seeds", help="output directory")
    args = ap.parse_args()
    cap = torch.backends.cpu.get_cpu_capability()
    if cap not in ("AVX2", "AVX512"):
        print(f"torch CPU capability is {cap}: its float32 randn differs from the AVX2 kernel the Go side reproduces",
              file=sys.stderr)
        return 1

    import export_onnx as ex

    ex.init_torch()
    torch.set_num_threads(1)
    model_dir = Path(args.model)
    manifest, _, _, pipe = ex.load_tiny(model_dir, ex.kv.DEFAULT)
    model = {"dir": "models/tiny", "model_json_sha256": ex.sha256_file(model_dir / "model.json"),
             "state_dict_sha256": manifest["source"]["state_dict_sha256"]}
    write_cases(pipe, ex.ArrayWriter, Path(args.out), model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
