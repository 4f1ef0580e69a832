#!/usr/bin/env python3
"""Reference data for reference-image editing: what the Go side is tested against.

Two parts, each deterministic (regenerating gives the same bytes):

  --resample-out internal/imageprep/testdata
      PIL's Image.resize on seeded 8-bit RGB images (every filter the Go port has, many sizes,
      up and down, odd ratios) and diffusers' reference preprocessing (Flux2ImageProcessor checks,
      the pipeline's 1024² pixel budget, multiples of 16, preprocess(resize_mode="crop")).
      Needs numpy, Pillow and diffusers only.

  --edit-out testdata/reference/edit [--model models/tiny]
      diffusers' Flux2KleinPipeline(image=[...]) on the tiny model (rebuilt from its seed by
      scripts/export_onnx.py and checked against models/tiny/model.json): cases with 1, 2 and 4
      reference images, with and without CFG, one reference above the pixel budget and one case
      without an explicit output size. The reference images are written as PNG next to the arrays.
      `scripts/export_onnx.py --reference` runs this part too (write_edit_cases).

The array files and index.json follow testdata/reference/README.md; the edit-specific arrays are
described in testdata/reference/edit/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

FILTERS = {
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


# ----------------------------------------------------------------------------------------------
# Deterministic test images
# ----------------------------------------------------------------------------------------------


def test_image(width: int, height: int, seed: int, noise: int = 255) -> np.ndarray:
    """A seeded uint8 RGB image [H,W,3]: gradients, hard-edged shapes (ringing and clipping in the
    negative lobes of the filters) and uniform noise of amplitude `noise` (0: none; small values
    keep large images compressible as PNG)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.stack(
        [
            255.0 * xx / max(width - 1, 1),
            255.0 * yy / max(height - 1, 1),
            127.5 + 127.5 * np.sin((xx + 2 * yy) * (2 * np.pi / max(7.0, width / 5.0))),
        ],
        axis=-1,
    )
    for _ in range(4):  # saturated rectangles
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(1, max(2, width // 2))), y0 + int(rng.integers(1, max(2, height // 2)))
        img[y0:y1, x0:x1] = rng.choice([0.0, 255.0], size=3)
    cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.1, 0.4) * min(width, height)
    img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = [255.0, 255.0, 0.0]
    if noise:
        img += rng.integers(-noise, noise + 1, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def save_png(path: Path, pixels: np.ndarray) -> None:
    # No ancillary chunks, fixed compression: the file bytes are reproducible.
    Image.fromarray(pixels, mode="RGB").save(path, format="PNG", optimize=False, compress_level=9)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------------------------
# Part 1: PIL resampling and diffusers' reference preprocessing
# ----------------------------------------------------------------------------------------------

# name, width, height, seed, noise
RESAMPLE_SOURCES = [
    ("noise_64x64", 64, 64, 1, 255),
    ("odd_97x61", 97, 61, 2, 255),
    ("wide_130x47", 130, 47, 3, 255),
    ("tall_33x200", 33, 200, 4, 255),
    ("mixed_161x127", 161, 127, 5, 60),
    ("tiny_3x2", 3, 2, 6, 255),
]

# source, filter, width, height: up, down, one axis, odd ratios, down to a single pixel
RESAMPLE_CASES = [
    ("noise_64x64", "lanczos", 32, 32),
    ("noise_64x64", "lanczos", 17, 23),
    ("noise_64x64", "lanczos", 64, 31),
    ("noise_64x64", "lanczos", 29, 64),
    ("noise_64x64", "lanczos", 96, 96),
    ("noise_64x64", "lanczos", 150, 70),
    ("noise_64x64", "lanczos", 1, 1),
    ("noise_64x64", "lanczos", 63, 65),
    ("noise_64x64", "lanczos", 60, 56),  # height shrinks by exactly twice the width: horizontal pass first
    ("noise_64x64", "lanczos", 60, 55),  # by more than twice: vertical pass first
    ("odd_97x61", "lanczos", 96, 48),
    ("odd_97x61", "lanczos", 50, 83),
    ("odd_97x61", "lanczos", 13, 9),
    ("odd_97x61", "lanczos", 140, 90),
    ("odd_97x61", "lanczos", 97, 7),
    ("wide_130x47", "lanczos", 128, 46),
    ("wide_130x47", "lanczos", 35, 47),
    ("wide_130x47", "lanczos", 131, 48),
    ("tall_33x200", "lanczos", 16, 128),
    ("tall_33x200", "lanczos", 66, 150),
    ("tall_33x200", "lanczos", 5, 200),
    ("mixed_161x127", "lanczos", 80, 63),
    ("mixed_161x127", "lanczos", 77, 127),
    ("mixed_161x127", "lanczos", 159, 126),
    ("mixed_161x127", "lanczos", 40, 30),
    ("tiny_3x2", "lanczos", 7, 5),
    ("tiny_3x2", "lanczos", 1, 2),
    ("odd_97x61", "bicubic", 50, 83),
    ("odd_97x61", "bicubic", 150, 40),
    ("mixed_161x127", "bicubic", 100, 100),
    ("odd_97x61", "bilinear", 50, 83),
    ("noise_64x64", "bilinear", 100, 20),
    ("odd_97x61", "hamming", 50, 83),
    ("noise_64x64", "hamming", 100, 20),
    ("odd_97x61", "box", 50, 83),
    ("noise_64x64", "box", 100, 20),
    ("tiny_3x2", "bicubic", 8, 8),
]

# name, width, height, seed, noise: the whole reference path of the pipeline
PREPARE_SOURCES = [
    ("multiple_of_16_64x96", 64, 96, 11, 255),  # kept as is
    ("odd_100x72", 100, 72, 12, 255),  # floor to 96x64, centre crop
    ("odd_150x90", 150, 90, 13, 255),
    ("tall_70x301", 70, 301, 14, 255),
    ("aspect_8_512x64", 512, 64, 15, 255),  # the largest aspect ratio accepted
    ("wide_600x80", 600, 80, 16, 40),
    ("budget_1100x1000", 1100, 1000, 17, 0),  # above 1024²: LANCZOS to the budget first
]

# width, height and the check that rejects them (diffusers raises ValueError)
REJECTED_SIZES = [(63, 100, "min_side"), (100, 40, "min_side"), (513, 64, "aspect"), (64, 600, "aspect")]

# Every byte value through diffusers' normalisation (pil_to_numpy + normalize).
NORMALIZE_SIZE = (16, 16)


def diffusers_prepare(processor, pil: Image.Image):
    """The reference path of Flux2KleinPipeline.__call__ (step 4) for one image; returns the
    preprocessed tensor [1,3,H,W] and its size."""
    processor.check_image_input(pil)
    width, height = pil.size
    if width * height > 1024 * 1024:
        pil = processor._resize_to_target_area(pil, 1024 * 1024)
        width, height = pil.size
    multiple_of = 16  # pipeline.vae_scale_factor * 2
    width = (width // multiple_of) * multiple_of
    height = (height // multiple_of) * multiple_of
    return processor.preprocess(pil, height=height, width=width, resize_mode="crop"), width, height


def tensor_to_u8(t) -> np.ndarray:
    """Invert diffusers' normalisation exactly: [1,3,H,W] in [-1,1] -> uint8 [H,W,3], checking that
    the tensor holds exactly the values 2*(u/255)-1 of those bytes."""
    arr = t[0].permute(1, 2, 0).numpy()
    u8 = np.rint((arr + 1) / 2 * 255).astype(np.uint8)
    again = np.float32(2.0) * (u8.astype(np.float32) / np.float32(255.0)) - np.float32(1.0)
    if not np.array_equal(again.astype(np.float32), arr):
        raise RuntimeError("preprocessed tensor is not 2*(u/255)-1 of whole bytes")
    return u8


def write_images(out: Path, table) -> tuple[dict, list]:
    """Writes the test images of a (name, width, height, seed, noise) table as NAME.png in out:
    their pixels by name, and their index entries."""
    pixels, index = {}, []
    for name, w, h, seed, noise in table:
        pix = test_image(w, h, seed, noise)
        save_png(out / f"{name}.png", pix)
        pixels[name] = pix
        index.append({"name": name, "file": f"{name}.png", "width": w, "height": h})
    return pixels, index


def write_resample_fixtures(out: Path) -> None:
    from diffusers.pipelines.flux2.image_processor import Flux2ImageProcessor

    out.mkdir(parents=True, exist_ok=True)
    for p in list(out.glob("*.png")) + list(out.glob("*.bin")):
        p.unlink()
    sources, index_sources = write_images(out, RESAMPLE_SOURCES)

    blob = bytearray()
    cases = []
    for src, filt, w, h in RESAMPLE_CASES:
        res = np.asarray(Image.fromarray(sources[src], mode="RGB").resize((w, h), FILTERS[filt]))
        data = res.tobytes()
        cases.append({"source": src, "filter": filt, "width": w, "height": h, "offset": len(blob),
                      "bytes": len(data), "sha256": sha256_bytes(data)})
        blob += data
    (out / "resize.bin").write_bytes(bytes(blob))

    processor = Flux2ImageProcessor(vae_scale_factor=16)  # as the pipeline builds it
    if processor.config.resample != "lanczos" or processor.config.reducing_gap is not None:
        raise RuntimeError(f"unexpected processor config {dict(processor.config)}")
    prepared = []
    for name, w, h, seed, noise in PREPARE_SOURCES:
        pix = test_image(w, h, seed, noise)
        save_png(out / f"{name}.png", pix)
        tensor, pw, ph = diffusers_prepare(processor, Image.fromarray(pix, mode="RGB"))
        u8 = tensor_to_u8(tensor)
        if u8.shape != (ph, pw, 3):
            raise RuntimeError(f"{name}: preprocess gave {u8.shape}, expected {ph}x{pw}")
        entry = {"name": name, "file": f"{name}.png", "width": w, "height": h,
                 "processed_width": pw, "processed_height": ph, "sha256": sha256_bytes(u8.tobytes())}
        if pw * ph <= 128 * 128:  # small results are kept whole, so a failure can show where
            entry["processed_file"] = f"{name}.processed.bin"
            (out / entry["processed_file"]).write_bytes(u8.tobytes())
        prepared.append(entry)

    rejected = []
    for w, h, why in REJECTED_SIZES:
        try:
            processor.check_image_input(Image.new("RGB", (w, h)))
        except ValueError as e:
            rejected.append({"width": w, "height": h, "rule": why, "diffusers_message": str(e)})
        else:
            raise RuntimeError(f"diffusers accepted {w}x{h}")

    # Byte value u sits at pixel u of a 16x16 image, in all three channels.
    values = np.arange(256, dtype=np.uint8).reshape(NORMALIZE_SIZE[1], NORMALIZE_SIZE[0])
    t = processor.preprocess(Image.fromarray(np.stack([values] * 3, axis=-1), mode="RGB"), height=16, width=16)
    normalized = [float(v) for v in t[0, 0].flatten().numpy()]
    if not all(t[0, c].flatten().tolist() == normalized for c in range(3)):
        raise RuntimeError("channels normalise differently")

    import PIL
    import diffusers

    index = {
        "format_version": 1,
        "generator": {"command": "scripts/reference_edit.py --resample-out", "pillow": PIL.__version__,
                      "numpy": np.__version__, "diffusers": diffusers.__version__},
        "conventions": {
            "images": "PNG, 8-bit RGB, no ancillary chunks; pixels row-major, 3 bytes each",
            "resize": "PIL Image.resize((width, height), filter) of the source, default box, no reducing_gap; "
            "bytes [offset, offset+bytes) of resize.bin, uint8 [height,width,3]",
            "prepare": "Flux2KleinPipeline's reference path: check_image_input, _resize_to_target_area above 1024², "
            "floor to multiples of 16, Flux2ImageProcessor.preprocess(resize_mode='crop'); the tensor mapped back "
            "to bytes exactly (uint8 [processed_height,processed_width,3]); sha256 of those bytes",
            "normalize": "float32 value diffusers' preprocess gives byte value u (index u), in every channel",
            "rejected": "sizes check_image_input refuses",
        },
        "sources": index_sources,
        "resize": cases,
        "prepare": prepared,
        "rejected": rejected,
        "normalize": normalized,
    }
    (out / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"wrote {out}: {len(cases)} resize cases, {len(prepared)} prepared references, {total / 1e6:.2f} MB", file=sys.stderr)


# ----------------------------------------------------------------------------------------------
# Part 2: Flux2KleinPipeline(image=[...]) on the tiny model
# ----------------------------------------------------------------------------------------------

# name, width, height, seed, noise: the reference images (PNG in the output directory)
EDIT_REFERENCES = [
    ("ref_100x72", 100, 72, 31, 255),
    ("ref_150x90", 150, 90, 32, 255),
    ("ref_64x128", 64, 128, 33, 255),
    ("ref_120x72", 120, 72, 34, 255),
    ("ref_64x64", 64, 64, 35, 255),
    ("ref_81x130", 81, 130, 36, 255),
    ("ref_200x70", 200, 70, 37, 255),
    ("ref_96x96", 96, 96, 38, 255),
    ("ref_1100x1000", 1100, 1000, 39, 0),  # above the 1024² budget; no noise keeps the PNG small
]

# width/height None: the pipeline takes the first reference's processed size.
EDIT_CASES = [
    dict(name="edit_1ref_cfg_64x64", prompt="make it a watercolour painting", references=["ref_100x72"],
         width=64, height=64, num_inference_steps=4, guidance_scale=4.0, num_images=1, seed=21),
    dict(name="edit_1ref_default_size_no_cfg", prompt="the same scene at night", references=["ref_150x90"],
         width=None, height=None, num_inference_steps=3, guidance_scale=1.0, num_images=1, seed=22),
    dict(name="edit_2refs_cfg_80x64", prompt="the cat from image 1 in the room of image 2",
         references=["ref_64x128", "ref_120x72"], width=80, height=64, num_inference_steps=3, guidance_scale=3.5,
         num_images=1, seed=23),
    dict(name="edit_4refs_2images_cfg_64x48", prompt="a collage of all four", references=["ref_64x64", "ref_81x130", "ref_200x70", "ref_96x96"],
         width=64, height=48, num_inference_steps=2, guidance_scale=5.0, num_images=2, seed=24),
    dict(name="edit_budget_ref_no_cfg_64x48", prompt="a postcard of this", references=["ref_1100x1000"],
         width=64, height=48, num_inference_steps=2, guidance_scale=1.0, num_images=1, seed=25),
]

# Reference tokens and ids above these sizes are not written (the budget case's 4087 tokens would
# take 2 MB); that case is checked through its final latents and image, and its ids follow the rule
# checked here for every case.
MAX_TOKEN_BYTES = 256 * 1024
MAX_IDS_BYTES = 64 * 1024


def write_edit_cases(pipe, out: Path) -> None:
    """Run every edit case through diffusers' Flux2KleinPipeline (`pipe`, the tiny model's, fp32 CPU)
    and write the arrays, the reference PNGs and index.json into `out`."""
    import torch

    from export_onnx import ArrayWriter, compute_empirical_mu

    out.mkdir(parents=True, exist_ok=True)
    for p in list(out.glob("*.bin")) + list(out.glob("*.png")):
        p.unlink()
    writer = ArrayWriter(out)
    refs, index_refs = write_images(out, EDIT_REFERENCES)

    calls: list[dict] = []

    def hook(_module, _args, kwargs):
        calls.append({k: kwargs[k].detach().clone() for k in ("hidden_states", "img_ids", "timestep", "encoder_hidden_states")})

    prepared: list = []
    preprocess = pipe.image_processor.preprocess

    def recording_preprocess(*args, **kwargs):
        t = preprocess(*args, **kwargs)
        prepared.append(t.detach().clone())
        return t

    pipe.image_processor.preprocess = recording_preprocess
    handle = pipe.transformer.register_forward_pre_hook(hook, with_kwargs=True)
    cases_out = []
    try:
        for case in EDIT_CASES:
            calls.clear()
            prepared.clear()
            name, steps, g, n_img = case["name"], case["num_inference_steps"], case["guidance_scale"], case["num_images"]
            images = [Image.fromarray(refs[r], mode="RGB") for r in case["references"]]
            # The output size the pipeline will use: given, or the first reference's processed size.
            sizes = []
            for im in images:
                w, h = im.size
                if w * h > 1024 * 1024:
                    w, h = pipe.image_processor._resize_to_target_area(im, 1024 * 1024).size
                sizes.append((w // 16 * 16, h // 16 * 16))
            width = case["width"] or sizes[0][0]
            height = case["height"] or sizes[0][1]
            hh, ww = height // 16, width // 16
            cfg = g > 1
            gen = torch.Generator().manual_seed(case["seed"])
            noise = torch.randn(n_img, 128, hh, ww, generator=gen, dtype=torch.float32)
            per_step = []

            def on_step(_pipe, i, t, kw):
                per_step.append(kw["latents"].detach().clone())
                return kw

            with torch.no_grad():
                result = pipe(image=images, prompt=case["prompt"], height=case["height"], width=case["width"],
                              num_inference_steps=steps, guidance_scale=g, num_images_per_prompt=n_img,
                              latents=noise.clone(), output_type="np", callback_on_step_end=on_step,
                              callback_on_step_end_tensor_inputs=["latents"]).images
            image_u8 = (result * 255).round().astype("uint8")
            if image_u8.shape != (n_img, height, width, 3):
                raise RuntimeError(f"{name}: output {image_u8.shape}, expected {height}x{width}")

            # What the pipeline fed the transformer, checked against the rules the Go side follows.
            S = hh * ww
            per_call = 2 if cfg else 1
            if len(calls) != steps * per_call:
                raise RuntimeError(f"{name}: {len(calls)} transformer calls, expected {steps * per_call}")
            if len(prepared) != len(images):
                raise RuntimeError(f"{name}: {len(prepared)} preprocessed references, expected {len(images)}")
            grids = [(t.shape[2] // 16, t.shape[3] // 16) for t in prepared]
            if [(gw * 16, gh * 16) for gh, gw in grids] != sizes:
                raise RuntimeError(f"{name}: preprocessed sizes {grids} differ from {sizes}")
            s_ref = sum(gh * gw for gh, gw in grids)
            first = calls[0]
            ref_tokens = first["hidden_states"][0, S:]
            ids = first["img_ids"][0]
            want_ids = [[0, r, c, 0] for r in range(hh) for c in range(ww)]
            for k, (gh, gw) in enumerate(grids):
                want_ids += [[10 + 10 * k, r, c, 0] for r in range(gh) for c in range(gw)]
            if ids.tolist() != want_ids:
                raise RuntimeError(f"{name}: img_ids differ from [T=0 target | T=10,20,... references]")
            for c in calls:
                hs = c["hidden_states"]
                if hs.shape != (n_img, S + s_ref, 128) or not torch.equal(c["img_ids"][0], ids):
                    raise RuntimeError(f"{name}: a call has hidden_states {tuple(hs.shape)} or other ids")
                for b in range(n_img):
                    if not torch.equal(hs[b, S:], ref_tokens):
                        raise RuntimeError(f"{name}: reference tokens differ between calls or rows")
            packed_noise = noise.reshape(n_img, 128, S).permute(0, 2, 1)
            if not torch.equal(first["hidden_states"][:, :S], packed_noise):
                raise RuntimeError(f"{name}: first transformer input is not the packed initial noise")
            timesteps = [float(calls[i * per_call]["timestep"][0]) for i in range(steps)]

            arrays = {
                "initial_noise": writer.put(f"{name}.initial_noise", noise.numpy()),
                "sigmas": writer.put(f"{name}.sigmas", pipe.scheduler.sigmas.detach().float().numpy()),
                "timesteps": writer.put(f"{name}.timesteps", np.array(timesteps, dtype=np.float32)),
                "final_latents": writer.put(f"{name}.final_latents", per_step[-1].numpy().astype(np.float32)),
                "image": writer.put(f"{name}.image", image_u8),
            }
            if ids.numel() * 8 <= MAX_IDS_BYTES:
                arrays["img_ids"] = writer.put(f"{name}.img_ids", ids.numpy().astype(np.int64))
            if s_ref * 128 * 4 <= MAX_TOKEN_BYTES:
                arrays["reference_tokens"] = writer.put(f"{name}.reference_tokens", ref_tokens.numpy().astype(np.float32))
            entry = {k: case[k] for k in ("name", "prompt", "references", "num_inference_steps", "guidance_scale", "num_images", "seed")}
            entry.update({
                "width": case["width"], "height": case["height"],
                "output_width": width, "output_height": height,
                "cfg": cfg, "mu": compute_empirical_mu(S, steps), "image_seq_len": S,
                "reference_grids": [[gh, gw] for gh, gw in grids], "reference_seq_len": s_ref,
                "prepared_sha256": [sha256_bytes(tensor_to_u8(t).tobytes()) for t in prepared],
                "arrays": arrays,
            })
            cases_out.append(entry)
            motion = float((per_step[-1] - packed_noise).abs().mean())
            print(f"  {name}: {len(images)} refs {grids}, out {width}x{height}, {steps} steps, cfg={cfg}, "
                  f"|x_final-noise|={motion:.3f}", file=sys.stderr)
    finally:
        handle.remove()
        pipe.image_processor.preprocess = preprocess

    import diffusers
    import transformers

    index = {
        "format_version": 1,
        "generator": {
            "command": "scripts/reference_edit.py --edit-out (also run by scripts/export_onnx.py --reference)",
            "pipeline": "diffusers.Flux2KleinPipeline(image=[...]), fp32, CPU",
            "diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "torch": torch.__version__.split("+")[0], "pillow": Image.__version__,
        },
        "conventions": {
            "arrays": "as testdata/reference/index.json: raw little-endian, C order",
            "references": "8-bit RGB PNG files, passed to the pipeline as PIL images in the order of the case",
            "width_height": "null: not passed; the output takes the first reference's processed size (output_width/height)",
            "reference_grids": "[h, w] latent grid of each reference after preprocessing (processed size / 16)",
            "prepared_sha256": "sha256 of each preprocessed reference as bytes (uint8 [H,W,3]), before normalisation",
            "img_ids": "[S+S_ref, 4] ids of every transformer call: target [0,row,col,0], then reference k [10+10k,row,col,0]; "
            "omitted above 64 KiB",
            "reference_tokens": "[S_ref,128] the packed, BN-normalised reference latents the transformer saw after the "
            "target tokens (identical in every call and row); omitted above 256 KiB",
            "final_latents": "[B,S,128] target tokens after the last step",
            "image": "uint8 [B,H,W,3] decoded output",
            "initial_noise": "[B,128,H/16,W/16], torch.randn with the case's seed, passed as latents=",
        },
        "references": index_refs,
        "cases": cases_out,
    }
    (out / "index.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"wrote {out}: {len(cases_out)} edit cases, {total / 1e6:.2f} MB", file=sys.stderr)


def write_edit_standalone(model_dir: Path, out: Path) -> None:
    """Rebuild the tiny pipeline as scripts/export_onnx.py --reference does, then write the edit cases."""
    import torch

    import export_onnx as ex

    ex.init_torch()
    torch.set_num_threads(1)  # as export_onnx --reference: reproducible float sums
    _, _, _, pipe = ex.load_tiny(model_dir, ex.kv.DEFAULT)
    write_edit_cases(pipe, out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resample-out", help="write the PIL resampling and preprocessing fixtures here")
    ap.add_argument("--edit-out", help="write the edit reference cases here")
    ap.add_argument("--model", default="models/tiny", help="--edit-out: tiny model directory")
    args = ap.parse_args(argv)
    if not (args.resample_out or args.edit_out):
        ap.error("give --resample-out and/or --edit-out")
    if args.resample_out:
        write_resample_fixtures(Path(args.resample_out))
    if args.edit_out:
        write_edit_standalone(Path(args.model), Path(args.edit_out))


if __name__ == "__main__":
    main()
