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


def write_resample_fixtures(out: Path) -> None:
    from diffusers.pipelines.flux2.image_processor import Flux2ImageProcessor

    out.mkdir(parents=True, exist_ok=True)
    for p in list(out.glob("*.png")) + list(out.glob("*.bin")):
        p.unlink()
    sources = {}
    index_sources = []
    for name, w, h, seed, noise in RESAMPLE_SOURCES:
        pix = test_image(w, h, seed, noise)
        save_png(out / f"{name}.png", pix)
        sources[name] = pix
        index_sources.append({"name": name, "file": f"{name}.png", "width": w, "height": h})

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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resample-out", help="write the PIL resampling and preprocessing fixtures here")
    args = ap.parse_args(argv)
    if not args.resample_out:
        ap.error("give --resample-out")
    write_resample_fixtures(Path(args.resample_out))


if __name__ == "__main__":
    main()
