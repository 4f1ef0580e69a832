#!/usr/bin/env python3
"""LoRA reference cases: diffusers' Flux2KleinPipeline with load_lora_weights on the tiny model.

    python scripts/reference_lora.py [--model models/tiny] [--out testdata/reference/lora]

Writes random LoRA files in each layout scripts/lora_formats.py knows (diffusers with
lora_alpha metadata, BFL/ComfyUI, kohya with alpha, fal's trainer), runs the diffusers pipeline
(fp32, CPU, one thread) with them loaded through `load_lora_weights` and weighted with
`set_adapters`, and records the final latents and images next to an index.json in the layout of
testdata/reference (see its README).  The Go pipeline is held to these numbers
(internal/pipeline lora_reference_test.go).  Needs peft (scripts/requirements.txt).

LoRA + edit cases (LORA_EDIT_CASES) also pass reference images (image=[...]): the committed PNGs of
the edit cases (--edit-dir, testdata/reference/edit), named in the index by their path relative to
--out and their SHA-256.  In general a case may carry `call_kwargs` that are passed to the pipeline
unchanged, and `extra` fields copied to the index.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export_onnx as ex  # noqa: E402
import lora_formats as lf  # noqa: E402

# name → (layout, rank, seed, file dtype, which modules, alpha)
# kohya: alpha/rank = 0.5, a power of two, so diffusers' bf16 pre-scaling of lora_down is exact.
# kohya modules: those diffusers' kohya converter maps (it drops modulation keys with a warning).
KOHYA_MODULES = ("double_blocks.", "single_blocks.", "img_in", "txt_in", "time_in.", "final_layer.linear")
LORA_FILES = {
    "diffusers_r4": dict(layout="diffusers", rank=4, seed=21, dtype="float32", alpha=8.0),
    "bfl_r4": dict(layout="bfl", rank=4, seed=22, dtype="float32"),
    "kohya_r6": dict(layout="kohya", rank=6, seed=23, dtype="bfloat16", alpha=3.0, only=KOHYA_MODULES),
    "fal_r8": dict(layout="fal", rank=8, seed=24, dtype="float16", only=("double_blocks.", "single_blocks.")),
}

BASE = dict(prompt="a lighthouse at dusk, oil painting", negative_prompt="", width=64, height=64,
            num_inference_steps=4, guidance_scale=4.0, num_images=1)
LORA_CASES = [
    dict(BASE, name="lora_diffusers", loras=[("diffusers_r4", 0.8)], seed=31),
    dict(BASE, name="lora_bfl", loras=[("bfl_r4", 1.0)], seed=32, width=80, height=48),
    dict(BASE, name="lora_kohya", loras=[("kohya_r6", 1.0)], seed=33, guidance_scale=1.0),
    dict(BASE, name="lora_fal", loras=[("fal_r8", 1.2)], seed=34),
    dict(BASE, name="three_loras", loras=[("diffusers_r4", 0.7), ("kohya_r6", -0.5), ("fal_r8", 1.3)], seed=35,
         num_images=2),
]
# LoRAs with reference images (the edit pipeline): `references` are PNGs of the edit cases' directory,
# passed in this order as image=[...].  The output size is explicit, so each case can also run without
# its references (reference_effect).
LORA_EDIT_CASES = [
    dict(BASE, name="lora_edit_1ref", prompt="make it a watercolour painting", loras=[("diffusers_r4", 0.9)],
         references=["ref_100x72"], seed=36),
    dict(BASE, name="lora_edit_2loras_2refs", prompt="the cat from image 1 in the room of image 2",
         loras=[("bfl_r4", 1.1), ("fal_r8", -0.6)], references=["ref_64x128", "ref_120x72"], seed=37,
         width=80, height=48, num_inference_steps=3, guidance_scale=3.5),
]


def write_lora_files(targets, config, out: Path) -> dict:
    """Write every file of LORA_FILES; returns name → {file, layout, rank, dtype}."""
    files = {}
    for name, spec in LORA_FILES.items():
        only = spec.get("only")
        include = (lambda m: any(m.startswith(p) for p in only)) if only else None
        metadata, alpha = None, None
        if spec["layout"] == "diffusers":
            pairs = lf.random_pairs(lf.diffusers_shapes(targets, include), spec["rank"], spec["seed"])
            metadata = lf.diffusers_metadata(pairs, spec["rank"], spec["alpha"])
        else:
            pairs = lf.random_pairs(lf.bfl_shapes(targets, config, include), spec["rank"], spec["seed"])
            if "alpha" in spec:
                alpha = {m: spec["alpha"] for m in pairs}
        sd = lf.state_dict(spec["layout"], pairs, alpha)
        path = out / f"{name}.safetensors"
        lf.write_file(path, sd, spec["dtype"], metadata)
        files[name] = {"file": path.name, "layout": spec["layout"], "rank": spec["rank"], "dtype": spec["dtype"],
                       "modules": len(pairs), "bytes": path.stat().st_size, "sha256": ex.sha256_file(path)}
    return files


def with_references(case: dict, edit_dir: Path, out: Path) -> dict:
    """The case with its `references` loaded as PIL images into call_kwargs and named in `extra`."""
    from PIL import Image

    images, named = [], []
    for name in case.get("references", []):
        path = edit_dir / f"{name}.png"
        with Image.open(path) as im:
            im.load()
            if im.mode != "RGB":
                raise SystemExit(f"{path}: mode {im.mode}, expected RGB")
            images.append(im.copy())
        named.append({"file": Path(os.path.relpath(path, out)).as_posix(), "width": images[-1].width,
                      "height": images[-1].height, "sha256": ex.sha256_file(path)})
    case = dict(case)
    if images:
        case["call_kwargs"] = dict(case.get("call_kwargs", {}), image=images)
        case["extra"] = dict(case.get("extra", {}), references=named)
    return case


def run_case(pipe, case: dict, lora_dir: Path, writer, torch) -> tuple[dict, np.ndarray]:
    """Load the case's LoRAs, run the pipeline with the seeded noise, unload; returns arrays and latents."""
    name, n_img = case["name"], case["num_images"]
    h, w = case["height"] // 16, case["width"] // 16
    adapters = []
    for k, (fname, _) in enumerate(case["loras"]):
        adapter = f"{name}_{k}"
        pipe.load_lora_weights(str(lora_dir / f"{fname}.safetensors"), adapter_name=adapter)
        adapters.append(adapter)
    if adapters:
        pipe.set_adapters(adapters, adapter_weights=[s for _, s in case["loras"]])
    noise = torch.randn(n_img, 128, h, w, generator=torch.Generator().manual_seed(case["seed"]), dtype=torch.float32)
    final = []

    def on_step(_pipe, i, t, kw):
        if i == case["num_inference_steps"] - 1:
            final.append(kw["latents"].detach().clone())
        return kw

    kwargs = dict(prompt=case["prompt"], height=case["height"], width=case["width"],
                  num_inference_steps=case["num_inference_steps"], guidance_scale=case["guidance_scale"],
                  num_images_per_prompt=n_img, latents=noise.clone(), output_type="np",
                  callback_on_step_end=on_step, callback_on_step_end_tensor_inputs=["latents"],
                  **case.get("call_kwargs", {}))
    with torch.no_grad():
        images = pipe(**kwargs).images
    if adapters:
        pipe.unload_lora_weights()
    image_u8 = (images * 255).round().astype("uint8")
    latents = final[0].numpy().astype(np.float32)
    arrays = {
        "initial_noise": writer.put(f"{name}.initial_noise", noise.numpy()),
        "final_latents": writer.put(f"{name}.final_latents", latents),
        "image": writer.put(f"{name}.image", image_u8),
    }
    return arrays, latents


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/tiny")
    ap.add_argument("--out", default="testdata/reference/lora")
    ap.add_argument("--edit-dir", default="testdata/reference/edit",
                    help="the edit cases' reference PNGs (scripts/reference_edit.py --edit-out)")
    args = ap.parse_args(argv)
    try:
        import peft  # noqa: F401
    except ImportError:
        raise SystemExit("reference_lora.py needs peft (pip install -r scripts/requirements.txt)")
    ex.init_torch()
    import diffusers
    import torch
    import transformers

    torch.set_num_threads(1)
    model_dir, out = Path(args.model), Path(args.out)
    manifest, _, comps, pipe = ex.load_tiny(model_dir, ex.kv.DEFAULT)
    targets = lf.lora_targets(comps.transformer)
    if out.exists():
        for p in list(out.glob("*.bin")) + list(out.glob("*.safetensors")):
            p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    files = write_lora_files(targets, comps.transformer.config, out)
    writer = ex.ArrayWriter(out)
    cases = []
    edit_dir = Path(args.edit_dir)

    def effect_without(case, latents, what, **changes):
        """How far the case's latents move without its `what` (the case with `changes`); the Go test
        checks that this is far beyond its tolerance, so a test that ignored them would fail."""
        other = dict(case, name=case["name"] + "_without", **changes)
        _, plain = run_case(pipe, other, out, writer, torch)
        for p in out.glob(f"{other['name']}.*.bin"):
            p.unlink()
        effect = float(np.abs(latents - plain).max() / np.abs(latents).max())
        if effect < 1e-2:
            raise RuntimeError(f"{case['name']}: the {what} barely move the latents ({effect:.2e})")
        return effect

    for case in LORA_CASES + [with_references(c, edit_dir, out) for c in LORA_EDIT_CASES]:
        arrays, latents = run_case(pipe, case, out, writer, torch)
        entry = {k: case[k] for k in ("name", "prompt", "negative_prompt", "width", "height", "num_inference_steps",
                                       "guidance_scale", "num_images", "seed")}
        entry["loras"] = [{"file": files[f]["file"], "scale": s} for f, s in case["loras"]]
        entry["lora_effect"] = effect_without(case, latents, "LoRAs", loras=[])
        call_kwargs = case.get("call_kwargs", {})
        if "image" in call_kwargs:
            entry["reference_effect"] = effect_without(
                case, latents, "reference images", call_kwargs={k: v for k, v in call_kwargs.items() if k != "image"})
        entry["arrays"] = arrays
        entry.update(case.get("extra", {}))
        cases.append(entry)
        ex.log(f"  {case['name']}: {[f for f, _ in case['loras']]}, relative change from the LoRAs "
               f"{entry['lora_effect']:.3f}" + (f", from the references {entry['reference_effect']:.3f}"
                                                 if "reference_effect" in entry else ""))
    index = {
        "format_version": 1,
        "model": {"dir": "models/tiny", "model_json_sha256": ex.sha256_file(model_dir / "model.json"),
                  "state_dict_sha256": manifest["source"]["state_dict_sha256"]},
        "generator": {
            "command": "scripts/reference_lora.py",
            "pipeline": "diffusers.Flux2KleinPipeline + load_lora_weights + set_adapters(adapter_weights), fp32, CPU",
            "diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "peft": __import__("peft").__version__, "torch": torch.__version__.split("+")[0],
        },
        "conventions": {
            "arrays": "as testdata/reference/index.json: raw little-endian, C order",
            "loras": "files next to this index; scale is the adapter weight given to set_adapters (fal's loras[].scale)",
            "lora_effect": "max|final - final without LoRA| / max|final|: how far the LoRAs move the latents",
            "references": "reference images passed as image=[...] in this order: 8-bit RGB PNG, path relative to "
            "this index, size and SHA-256 of the file",
            "reference_effect": "max|final - final without the reference images| / max|final|",
        },
        "files": files,
        "cases": cases,
    }
    (out / "index.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    ex.log(f"wrote {out}/index.json: {len(cases)} cases, {len(files)} LoRA files")


if __name__ == "__main__":
    main()
