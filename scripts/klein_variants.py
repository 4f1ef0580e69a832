"""The FLUX.2 [klein] family: which checkpoints exist, their configurations, and how a model
directory says which one it holds.

Four published diffusers checkpoints share one architecture in two sizes (docs/variants.md):

  variant        repository                               text encoder   steps  guidance  CFG
  4b-base        black-forest-labs/FLUX.2-klein-base-4B   Qwen3-4B       50     4.0       yes
  4b-distilled   black-forest-labs/FLUX.2-klein-4B        Qwen3-4B       4      1.0       no
  9b-base        black-forest-labs/FLUX.2-klein-base-9B   Qwen3-8B       50     4.0       yes
  9b-distilled   black-forest-labs/FLUX.2-klein-9B        Qwen3-8B       4      1.0       no

Base and distilled checkpoints of one size have the same configurations; the checkpoint's
model_index.json says which it is (`is_distilled: true` on distilled ones, absent on base ones,
where diffusers' Flux2KleinPipeline defaults it to false).  A distilled pipeline never runs the
unconditional branch, whatever guidance_scale is asked for.

This module is pure Python (no torch), so the Makefile and tests can read the table cheaply.
"""

from __future__ import annotations

import dataclasses
from typing import Any

FAMILY = "flux.2-klein"
SIZES = ("4b", "9b")

# The key of model.json that says which checkpoint a directory holds.  A manifest without it is
# a FLUX.2 [klein] 4B Base export: every manifest written before variants existed, and
# models/tiny, which must regenerate byte-identically.
MANIFEST_KEY = "checkpoint"


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str  # "4b-base", the --variant value
    size: str  # "4b" | "9b"
    distilled: bool
    repo_id: str  # the published diffusers checkpoint
    display_name: str
    endpoint_prefix: str  # fal's endpoint id; /edit, /lora and /edit/lora hang below it
    default_steps: int
    default_guidance: float
    license: str
    # Seed offsets of the tiny model's own weights (None: the 4B Base stream, see build_tiny in
    # scripts/export_onnx.py).  A distilled checkpoint has transformer weights of its own; the text
    # encoder, VAE and safety checker are the same weights across a size (text encoder) or the
    # whole family (VAE, safety checker), as in the published checkpoints.
    tiny_transformer_seed: int | None

    @property
    def text_encoder(self) -> str:
        return TEXT_ENCODERS[self.size]

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_NAME

    @property
    def tiny_dir(self) -> str:
        """Committed tiny model directory, relative to the repository root."""
        return "models/tiny" if self.is_default else f"models/tiny-{self.name}"

    @property
    def reference_dir(self) -> str:
        """Committed reference outputs of the tiny model, relative to the repository root."""
        return "testdata/reference" if self.is_default else f"testdata/reference/{self.name}"

    @property
    def tiny_variant(self) -> str:
        """model.json `variant` of the tiny model ("tiny" for 4B Base, as it always was)."""
        return "tiny" if self.is_default else f"tiny-{self.name}"

    @property
    def tiny_shared(self) -> dict[str, str]:
        """What the committed tiny directory of this variant may take from a sibling's instead of
        holding a copy (model.json `shared`, docs/variants.md): name in the directory → the tiny
        directory that owns the same weights.  The 4B Base directory owns the tokenizer, the VAE
        graphs and the safety checker, which the whole family shares; the Base variant of a size
        owns that size's text encoder.  The exporter shares a name only where the bytes are the
        same (sha256), so this table says where to look, not what to assume."""
        if self.is_default:
            return {}
        family = DEFAULT.tiny_dir
        shared = {"tokenizer": family, "vae_decoder.onnx": family, "vae_encoder.onnx": family,
                  "safety_checker.onnx": family}
        owner = of(self.size, False)
        if owner is not self:
            shared["text_encoder.onnx"] = owner.tiny_dir
        return shared

    def tiny_name(self, precision: str = "fp32") -> str:
        what = "" if self.is_default else f" {self.size.upper()} {'distilled' if self.distilled else 'base'}"
        extra = "" if precision == "fp32" else f", {precision}"
        return f"kleinserve tiny{what} (random weights{extra})"

    def manifest_block(self) -> dict | None:
        """model.json[MANIFEST_KEY]; None for 4B Base (the key's absence means 4B Base)."""
        if self.is_default:
            return None
        return {
            "family": FAMILY,
            "variant": self.name,
            "size": self.size,
            "distilled": self.distilled,
            "repo_id": self.repo_id,
            "text_encoder": self.text_encoder,
            "endpoint_prefix": self.endpoint_prefix,
            "license": self.license,
        }

    def defaults(self) -> dict:
        """model.json `defaults`: the checkpoint's own (BFL's) defaults; the API has fal's."""
        return {"num_inference_steps": self.default_steps, "guidance_scale": self.default_guidance, "negative_prompt": ""}


DEFAULT_NAME = "4b-base"
TEXT_ENCODERS = {"4b": "Qwen/Qwen3-4B", "9b": "Qwen/Qwen3-8B"}
LICENSES = {"4b": "apache-2.0", "9b": "flux-non-commercial"}


def _variant(size: str, distilled: bool, seed: int | None) -> Variant:
    upper = size.upper()
    return Variant(
        name=f"{size}-{'distilled' if distilled else 'base'}",
        size=size,
        distilled=distilled,
        repo_id=f"black-forest-labs/FLUX.2-klein-{upper}" if distilled else f"black-forest-labs/FLUX.2-klein-base-{upper}",
        display_name=f"FLUX.2 [klein] {upper}" + ("" if distilled else " Base"),
        endpoint_prefix=f"fal-ai/flux-2/klein/{size}" + ("" if distilled else "/base"),
        default_steps=4 if distilled else 50,
        default_guidance=1.0 if distilled else 4.0,
        license=LICENSES[size],
        tiny_transformer_seed=seed,
    )


VARIANTS = {
    v.name: v
    for v in (_variant("4b", False, None), _variant("4b", True, 1), _variant("9b", False, 2), _variant("9b", True, 3))
}
DEFAULT = VARIANTS[DEFAULT_NAME]
# Seed offset of the tiny 9B text encoder (shared by both 9B variants); the tiny 4B one is the
# 4B Base stream's.
TINY_TEXT_ENCODER_SEED = {"4b": None, "9b": 4}


def get(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"--variant: unknown variant {name!r}; one of {', '.join(VARIANTS)}") from None


def of(size: str, distilled: bool) -> Variant:
    return VARIANTS[f"{size}-{'distilled' if distilled else 'base'}"]


def from_manifest(manifest: dict) -> Variant:
    """The variant a model.json describes (no MANIFEST_KEY: 4B Base)."""
    block = manifest.get(MANIFEST_KEY)
    if block is None:
        return DEFAULT
    v = get(block["variant"])
    if block != v.manifest_block():
        raise ValueError(f"model.json {MANIFEST_KEY} {block} does not match the {v.name} variant {v.manifest_block()}")
    return v


# ----------------------------------------------------------------------------------------------
# Configurations (diffusers Flux2Transformer2DModel / transformers Qwen3Config kwargs)
# ----------------------------------------------------------------------------------------------


def transformer_config(size: str) -> dict:
    """Flux2Transformer2DModel config of a klein size (diffusers' convert_flux2_to_diffusers.py
    klein-4b / klein-9b; BFL's Klein4BParams / Klein9BParams).  joint_attention_dim is three
    text-encoder hidden states side by side (3 × 2560, 3 × 4096)."""
    base = dict(
        patch_size=1,
        in_channels=128,
        out_channels=None,
        num_layers=5,
        num_single_layers=20,
        attention_head_dim=128,
        num_attention_heads=24,
        joint_attention_dim=7680,
        timestep_guidance_channels=256,
        mlp_ratio=3.0,
        axes_dims_rope=(32, 32, 32, 32),
        rope_theta=2000,
        eps=1e-6,
        guidance_embeds=False,
    )
    if size == "4b":
        return base
    if size == "9b":
        return {**base, "num_layers": 8, "num_single_layers": 24, "num_attention_heads": 32, "joint_attention_dim": 12288}
    raise ValueError(f"unknown size {size!r}")


def text_encoder_config(size: str) -> dict:
    """Qwen3 text encoder config: Qwen3-4B (4B) or Qwen3-8B (9B), as BFL's Qwen3Embedder loads
    them.  Qwen3-8B is wider (4096, MLP 12288) with the same 36 layers, the same 32/8 heads of
    128 and an untied lm_head (not exported)."""
    base = dict(
        vocab_size=151936,
        hidden_size=2560,
        intermediate_size=9728,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        hidden_act="silu",
        max_position_embeddings=40960,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        attention_bias=False,
        tie_word_embeddings=True,
        bos_token_id=151643,
        eos_token_id=151645,
    )
    if size == "4b":
        return base
    if size == "9b":
        return {**base, "hidden_size": 4096, "intermediate_size": 12288, "tie_word_embeddings": False}
    raise ValueError(f"unknown size {size!r}")


# The tiny models: the real configs with widths and depths overridden.  The 9B tiny differs from
# the 4B tiny where the real 9B differs from the real 4B: more blocks and heads in the DiT, a
# wider text encoder (hence a wider joint_attention_dim) with an untied lm_head.  Both text
# encoders keep the real 151936-row vocabulary and 28 layers (see scripts/export_onnx.py).
TINY_TRANSFORMER = {
    "4b": {"num_layers": 2, "num_single_layers": 2, "attention_head_dim": 16, "num_attention_heads": 2,
           "joint_attention_dim": 24, "axes_dims_rope": (4, 4, 4, 4)},
    "9b": {"num_layers": 3, "num_single_layers": 3, "attention_head_dim": 16, "num_attention_heads": 3,
           "joint_attention_dim": 36, "axes_dims_rope": (4, 4, 4, 4)},
}
TINY_TEXT_ENCODER = {
    "4b": {"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 28, "num_attention_heads": 2,
           "num_key_value_heads": 1, "head_dim": 4},
    "9b": {"hidden_size": 12, "intermediate_size": 24, "num_hidden_layers": 28, "num_attention_heads": 3,
           "num_key_value_heads": 1, "head_dim": 4},
}


def tiny_transformer_config(size: str) -> dict:
    return {**transformer_config(size), **TINY_TRANSFORMER[size]}


def tiny_text_encoder_config(size: str) -> dict:
    return {**text_encoder_config(size), **TINY_TEXT_ENCODER[size]}


# ----------------------------------------------------------------------------------------------
# Reading a checkpoint's own configuration
# ----------------------------------------------------------------------------------------------

# The keys that tell the sizes apart; every other key of transformer_config must equal the
# checkpoint's for it to be a klein transformer at all.
SIZE_KEYS = ("num_layers", "num_single_layers", "attention_head_dim", "num_attention_heads", "joint_attention_dim")


def _norm(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def detect_size(config: dict) -> tuple[str | None, bool]:
    """(size, tiny) of a Flux2Transformer2DModel config, matched against the real and tiny
    configs of each size on SIZE_KEYS; (None, False) when none matches."""
    for size in SIZES:
        for tiny, want in ((False, transformer_config(size)), (True, tiny_transformer_config(size))):
            if all(_norm(config.get(k)) == _norm(want[k]) for k in SIZE_KEYS):
                return size, tiny
    return None, False


def check_klein_transformer(config: dict) -> None:
    """Raise if a transformer config differs from klein's outside the size keys (a FLUX.2 [dev]
    transformer, for one, has a guidance embedder)."""
    want = transformer_config("4b")
    bad = [f"{k} {config.get(k)!r} (klein: {want[k]!r})" for k in want
           if k not in SIZE_KEYS and k != "axes_dims_rope" and _norm(config.get(k, want[k])) != _norm(want[k])]
    if bad:
        raise ValueError("transformer/config.json is not a FLUX.2 [klein] transformer: " + ", ".join(bad))


def resolve(transformer_cfg: dict, is_distilled: bool, requested: str | None) -> tuple[Variant, bool]:
    """The variant of a checkpoint from its own configuration: the size from the transformer
    config, base or distilled from model_index.json's is_distilled.  `requested` (--variant) must
    agree; it is needed only for a transformer of a shape neither real nor tiny."""
    check_klein_transformer(transformer_cfg)
    size, tiny = detect_size(transformer_cfg)
    if requested is not None:
        v = get(requested)
        if size is not None and size != v.size:
            raise ValueError(f"--variant {v.name}: the checkpoint's transformer is the {size.upper()} configuration "
                             f"({', '.join(f'{k}={transformer_cfg.get(k)}' for k in SIZE_KEYS)})")
        if v.distilled != is_distilled:
            raise ValueError(f"--variant {v.name}: the checkpoint's model_index.json has is_distilled={is_distilled}")
        return v, tiny
    if size is None:
        raise ValueError("transformer/config.json matches no FLUX.2 [klein] size ("
                         + ", ".join(f"{k}={transformer_cfg.get(k)}" for k in SIZE_KEYS) + "); pass --variant")
    return of(size, is_distilled), tiny


def check_text_encoder(te_cfg: dict, transformer_cfg: dict, size: str, tiny: bool, taps) -> list[str]:
    """Raise if the text encoder cannot feed the transformer; return warnings where it differs
    from the size's Qwen3 configuration in a key that shapes the graph."""
    hidden, joint = te_cfg.get("hidden_size"), transformer_cfg.get("joint_attention_dim")
    if hidden is None or len(taps) * hidden != joint:
        raise ValueError(f"text_encoder hidden_size {hidden} × {len(taps)} tapped layers != the transformer's "
                         f"joint_attention_dim {joint}")
    if te_cfg.get("num_hidden_layers", 0) < max(taps):
        raise ValueError(f"text_encoder has {te_cfg.get('num_hidden_layers')} layers; the taps need {max(taps)}")
    want = tiny_text_encoder_config(size) if tiny else text_encoder_config(size)
    keys = ("vocab_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps")
    return [f"text_encoder {k} = {te_cfg.get(k)!r}, {TEXT_ENCODERS[size]} has {want[k]!r}"
            for k in keys if te_cfg.get(k) != want[k]]

