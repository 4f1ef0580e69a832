"""LoRA inputs of the exported transformer, and LoRA files in the layouts trainers write.

The transformer graph (scripts/export_onnx.py, default `--lora inputs`) takes a low-rank pair at
every nn.Linear of Flux2Transformer2DModel (the LoRA targets, in `named_modules` order):

    <module>.lora_A  [in, r]      <module>.lora_B  [r, out]      y = x·Wᵀ + (x·A)·B

with r a dynamic axis of its own per target.  Several LoRAs go in concatenated along r, each
one's scale (the request's scale × alpha/rank) folded into its rows of B; a target no LoRA
touches gets a rank-1 zero pair, which adds exactly 0.  docs/lora.md has the key mapping that
the Go side (internal/lora) implements; this module writes random LoRA files in each layout
for the reference cases (scripts/reference_lora.py) and is the Python twin used by tests.

Layouts written (module names: diffusers `transformer_blocks.0.attn.to_q`, BFL
`double_blocks.0.img_attn.qkv`):
  diffusers  transformer.<diffusers>.lora_A.weight [r,in] / lora_B.weight [out,r]
             (+ optional safetensors metadata `lora_adapter_metadata` with lora_alpha)
  bfl        diffusion_model.<bfl>.lora_A.weight / lora_B.weight (ComfyUI, ai-toolkit)
  kohya      lora_unet_<bfl with _>.lora_down.weight / lora_up.weight / alpha (kohya, musubi-tuner)
  fal        base_model.model.<bfl>.lora_A.weight / lora_B.weight (fal's trainer: PEFT around BFL's model)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

LORA_A, LORA_B = "lora_A", "lora_B"
FORMATS = ("diffusers", "bfl", "kohya", "fal")


def lora_targets(transformer) -> list[tuple[str, int, int]]:
    """(module name, in_features, out_features) of every nn.Linear, in named_modules order."""
    import torch

    return [(n, m.in_features, m.out_features) for n, m in transformer.named_modules() if isinstance(m, torch.nn.Linear)]


def input_names(targets) -> list[str]:
    """Graph input names, A then B per target, in target order."""
    out = []
    for name, _, _ in targets:
        out += [f"{name}.{LORA_A}", f"{name}.{LORA_B}"]
    return out


def example_inputs(targets, dtype, rank: int = 2, seed: int = 99) -> list:
    """Non-zero example pairs (rank 2, so the exporter keeps every rank axis dynamic)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for _, fin, fout in targets:
        out += [(0.1 * torch.randn(fin, rank, generator=g)).to(dtype), (0.1 * torch.randn(rank, fout, generator=g)).to(dtype)]
    return out


def stack(targets, adapters, dtype=np.float32) -> dict:
    """Graph inputs for LoRAs in canonical form.

    adapters: list of (pairs, scale) where pairs maps a diffusers module name to
    (A [r,in], B [out,r], alpha_over_rank).  Returns {input name: array}.
    """
    feeds = {}
    for name, fin, fout in targets:
        cols, rows = [], []
        for pairs, scale in adapters:
            if name in pairs:
                a, b, k = pairs[name]
                cols.append(np.asarray(a, np.float32).T)
                rows.append((np.asarray(b, np.float32) * np.float32(scale * k)).T)
        if not cols:
            cols, rows = [np.zeros((fin, 1), np.float32)], [np.zeros((1, fout), np.float32)]
        feeds[f"{name}.{LORA_A}"] = np.concatenate(cols, axis=1).astype(dtype)
        feeds[f"{name}.{LORA_B}"] = np.concatenate(rows, axis=0).astype(dtype)
    return feeds


# ----------------------------------------------------------------------------------------------
# BFL (black-forest-labs/flux2) module names ↔ diffusers module names
# ----------------------------------------------------------------------------------------------

BFL_GLOBALS = {
    "img_in": "x_embedder",
    "txt_in": "context_embedder",
    "time_in.in_layer": "time_guidance_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_guidance_embed.timestep_embedder.linear_2",
    "final_layer.linear": "proj_out",
    "final_layer.adaLN_modulation.1": "norm_out.linear",
    "single_stream_modulation.lin": "single_stream_modulation.linear",
    "double_stream_modulation_img.lin": "double_stream_modulation_img.linear",
    "double_stream_modulation_txt.lin": "double_stream_modulation_txt.linear",
}
BFL_DOUBLE = {
    "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
    "img_attn.proj": ("attn.to_out.0",),
    "txt_attn.proj": ("attn.to_add_out",),
    "img_mlp.0": ("ff.linear_in",),
    "img_mlp.2": ("ff.linear_out",),
    "txt_mlp.0": ("ff_context.linear_in",),
    "txt_mlp.2": ("ff_context.linear_out",),
}
BFL_SINGLE = {"linear1": ("attn.to_qkv_mlp_proj",), "linear2": ("attn.to_out",)}


def bfl_modules(config) -> dict[str, tuple[str, ...]]:
    """BFL module → the diffusers module(s) it covers (three for a fused qkv, split evenly by rows)."""
    out = {bfl: (diff,) for bfl, diff in BFL_GLOBALS.items()}
    for i in range(config.num_layers):
        for bfl, diffs in BFL_DOUBLE.items():
            out[f"double_blocks.{i}.{bfl}"] = tuple(f"transformer_blocks.{i}.{d}" for d in diffs)
    for i in range(config.num_single_layers):
        for bfl, diffs in BFL_SINGLE.items():
            out[f"single_blocks.{i}.{bfl}"] = tuple(f"single_transformer_blocks.{i}.{d}" for d in diffs)
    return out


# ----------------------------------------------------------------------------------------------
# Random LoRAs and their files
# ----------------------------------------------------------------------------------------------


def random_pairs(shapes: dict[str, tuple[int, int]], rank: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Seeded A [r,in] ~ N(0, 1/in) and B [out,r] ~ N(0, 0.1/r): the update B·A is about a third
    of a seeded base weight (N(0, 1/in)), visible in the output without swamping it."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in sorted(shapes):
        fin, fout = shapes[name]
        a = rng.standard_normal((rank, fin)).astype(np.float32) / np.float32(np.sqrt(fin))
        b = rng.standard_normal((fout, rank)).astype(np.float32) * np.float32(np.sqrt(0.1 / rank))
        out[name] = (a, b)
    return out


def diffusers_shapes(targets, include=None) -> dict[str, tuple[int, int]]:
    return {n: (fin, fout) for n, fin, fout in targets if include is None or include(n)}


def bfl_shapes(targets, config, include=None) -> dict[str, tuple[int, int]]:
    """BFL module → (in, out); a fused module's out is the sum of its parts."""
    by_name = {n: (fin, fout) for n, fin, fout in targets}
    out = {}
    for bfl, diffs in bfl_modules(config).items():
        if include is not None and not include(bfl):
            continue
        if diffs[0] not in by_name:
            continue
        out[bfl] = (by_name[diffs[0]][0], sum(by_name[d][1] for d in diffs))
    return out


def state_dict(fmt: str, pairs, alpha: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Keys and arrays of one LoRA file in a layout (pairs keyed by the layout's module names)."""
    sd = {}
    for name, (a, b) in pairs.items():
        if fmt == "diffusers":
            sd[f"transformer.{name}.lora_A.weight"], sd[f"transformer.{name}.lora_B.weight"] = a, b
        elif fmt == "bfl":
            sd[f"diffusion_model.{name}.lora_A.weight"], sd[f"diffusion_model.{name}.lora_B.weight"] = a, b
        elif fmt == "fal":
            sd[f"base_model.model.{name}.lora_A.weight"], sd[f"base_model.model.{name}.lora_B.weight"] = a, b
        elif fmt == "kohya":
            key = "lora_unet_" + name.replace(".", "_")
            sd[f"{key}.lora_down.weight"], sd[f"{key}.lora_up.weight"] = a, b
            if alpha is not None and name in alpha:
                sd[f"{key}.alpha"] = np.array(alpha[name], np.float32)
        else:
            raise ValueError(f"unknown LoRA layout {fmt!r}")
    return sd


def write_file(path: Path, sd: dict[str, np.ndarray], dtype: str = "float32", metadata: dict | None = None) -> None:
    """safetensors file of sd in float32, float16 or bfloat16, with its metadata keys sorted so that
    the same input always gives the same bytes.  A 0-d array (kohya's alpha) is written with shape
    [1]: np.ascontiguousarray returns at least one dimension."""
    import torch
    from safetensors.torch import save

    tdt = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)).to(tdt) for k, v in sd.items()}
    path.write_bytes(sorted_metadata(save(tensors, metadata=metadata)))


def sorted_metadata(data: bytes) -> bytes:
    """The safetensors file `data` with the keys of its __metadata__ in sorted order.  safetensors
    serialises the metadata from a Rust hash map, whose order changes from one process to the next;
    the rest of the header (compact JSON, tensors in data order, space padding to a multiple of 8)
    is rewritten as safetensors writes it."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    if len(text) != n:
        raise RuntimeError(f"rewritten safetensors header is {len(text)} bytes, was {n}")
    return n.to_bytes(8, "little") + text + data[8 + n:]


def diffusers_metadata(pairs, rank: int, alpha: float) -> dict:
    """safetensors metadata the way diffusers' save_lora_weights writes a LoraConfig."""
    cfg = {"r": rank, "lora_alpha": alpha, "target_modules": sorted(pairs)}
    return {"format": "pt", "lora_adapter_metadata": json.dumps({f"transformer.{k}": v for k, v in cfg.items()},
                                                                indent=2, sort_keys=True)}


# ----------------------------------------------------------------------------------------------
# One graph, two branches: the exact pre-LoRA forward, and the forward with the low-rank pairs
# ----------------------------------------------------------------------------------------------

ACTIVE_INPUT = "lora_active"
SMALL_INITIALIZER_BYTES = 1024
# The join reads weights from their data files through one buffer of this size (to hash them, and
# to copy a LoRA-only weight), so its memory does not grow with the model or its largest tensor.
STREAM_CHUNK_BYTES = 16 * 1024**2


def external_info(t) -> dict[str, str]:
    """The external_data entries of a TensorProto (location, offset, length, ...)."""
    return {e.key: e.value for e in t.external_data}


def is_external(t) -> bool:
    import onnx

    return t.HasField("data_location") and t.data_location == onnx.TensorProto.EXTERNAL


def tensor_chunks(t, base_dir: Path, buf: bytearray):
    """The bytes a TensorProto stores, in order, in little-endian ONNX raw layout: read from its
    data file through `buf` (each chunk is a view of `buf`, valid until the next one), or its
    raw_data, or its typed fields converted to raw layout (small tensors only: exporters write
    raw_data)."""
    import onnx
    from onnx import numpy_helper

    if is_external(t):
        info = external_info(t)
        location = info.get("location", "")
        if not location or Path(location).name != location or location in (".", ".."):
            raise ValueError(f"{t.name}: external data location {location!r} is not a file next to the graph")
        offset = int(info.get("offset", 0))
        with open(Path(base_dir) / location, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            length = int(info["length"]) if "length" in info else size - offset
            if offset < 0 or length < 0 or offset + length > size:
                raise ValueError(f"{t.name}: external data [{offset}, {offset + length}) is outside {location} "
                                 f"({size} bytes)")
            f.seek(offset)
            view = memoryview(buf)
            while length:
                n = f.readinto(view[:min(length, len(buf))])
                if not n:
                    raise ValueError(f"{t.name}: {location} ended early")
                yield view[:n]
                length -= n
    elif t.HasField("raw_data"):
        yield t.raw_data
    elif t.data_type == onnx.TensorProto.STRING:
        yield b"".join(len(s).to_bytes(8, "little") + s for s in t.string_data)
    else:
        yield numpy_helper.from_array(numpy_helper.to_array(t)).raw_data


def content_key(t, base_dir: Path, buf: bytearray) -> tuple[int, tuple[int, ...], str]:
    """(element type, shape, SHA-256 of the stored bytes): equal for two initializers that hold the
    same values, wherever each stores them."""
    h = hashlib.sha256()
    for chunk in tensor_chunks(t, base_dir, buf):
        h.update(chunk)
    return t.data_type, tuple(t.dims), h.hexdigest()


def append_external(t, src_dir: Path, dst, dst_name: str, buf: bytearray) -> None:
    """Copy an external tensor's bytes to the end of the open data file `dst` (named `dst_name`,
    next to the graph) and point the tensor at them."""
    offset = dst.seek(0, os.SEEK_END)
    for chunk in tensor_chunks(t, src_dir, buf):
        dst.write(chunk)
    set_external(t, dst_name, offset, dst.tell() - offset)


def set_external(t, location: str, offset: int, length: int) -> None:
    """Point a TensorProto at length bytes of the data file `location` from offset, in place of
    whatever held its values."""
    import onnx

    for field in ("raw_data", "float_data", "int32_data"):
        t.ClearField(field)
    t.data_location = onnx.TensorProto.EXTERNAL
    del t.external_data[:]
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        entry = t.external_data.add()
        entry.key, entry.value = key, str(value)


def inline_small_external(base, base_path: Path, data_name: str, external: bool) -> None:
    """Check that the pre-LoRA graph's external initializers are all in `data_name`, and inline those
    of at most SMALL_INITIALIZER_BYTES: shape inference inside the If branches reads small
    constants (axes, shapes) and cannot read them from a data file."""
    import onnx

    for t in base.graph.initializer:
        if not is_external(t):
            continue
        info = external_info(t)
        if not external:
            raise ValueError(f"{base_path}: {t.name} is in external data, but the join was asked for an inline model")
        if info.get("location") != data_name:
            raise ValueError(f"{base_path}: {t.name} is stored in {info.get('location')}, want {data_name}")
        if int(info.get("length", 0)) <= SMALL_INITIALIZER_BYTES:
            onnx.external_data_helper.load_external_data_for_tensor(t, str(base_path.parent))
            t.data_location = onnx.TensorProto.DEFAULT
            del t.external_data[:]


def split_lora_initializers(lora, lora_dir: Path, outer: dict, external: bool, buf: bytearray):
    """Match the LoRA graph's initializers to the pre-LoRA graph's by content (`outer`: content_key →
    name).  Returns ({LoRA name: pre-LoRA name}, [copies of the LoRA-only ones], [those of them to
    copy into the model's data file]).  A LoRA-only initializer is inlined when small or when the
    model is inline; with external data a larger one keeps its reference, to be rewritten by
    append_external.  Nothing returned refers into `lora`, so the caller can free it."""
    import onnx

    to_outer, local, to_append = {}, [], []
    for t in lora.graph.initializer:
        twin = outer.get(content_key(t, lora_dir, buf))
        if twin is not None:
            to_outer[t.name] = twin
            continue
        c = onnx.TensorProto()
        c.CopyFrom(t)
        if is_external(c):
            if external and int(external_info(c).get("length", SMALL_INITIALIZER_BYTES + 1)) > SMALL_INITIALIZER_BYTES:
                to_append.append(c)
            else:
                onnx.external_data_helper.load_external_data_for_tensor(c, str(lora_dir))
        local.append(c)
    return to_outer, local, to_append


def merge_branches(base_path: Path, lora_path: Path, out_path: Path, external: bool) -> dict:
    """Join the pre-LoRA graph and the LoRA graph into one model: If(lora_active) runs the LoRA
    forward, else the pre-LoRA one, so a request without LoRA costs exactly what it cost before
    the LoRA inputs existed.  Both branches read one set of weights: every initializer of the LoRA
    graph is matched by content to the pre-LoRA graph's (the exporter names folded constants
    differently in the two) and read from the outer scope; one that has no twin stays inside its
    branch.  Returns counts for the log.

    With external data (`external`; both graphs keep their weights in `<graph>.onnx.data` next to
    them) the weights are never held in memory: they are hashed from their data files through one
    STREAM_CHUNK_BYTES buffer, the pre-LoRA graph's data file becomes the model's (moved, not
    rewritten), and a LoRA-only weight over SMALL_INITIALIZER_BYTES is copied to its end (the
    branch reads it from there).  Inline graphs (under 2 GB) peak at about three times their
    weights: loading a graph, and serialising the model, each hold two copies for a moment."""
    import shutil

    import onnx
    from onnx import helper

    data_name = out_path.name + ".data"
    buf = bytearray(STREAM_CHUNK_BYTES)

    base = onnx.load(str(base_path), load_external_data=False)
    inline_small_external(base, base_path, data_name, external)
    # On equal contents the last initializer wins, as it always has (the output stays byte-identical).
    outer = {content_key(t, base_path.parent, buf): t.name for t in base.graph.initializer}
    lora = onnx.load(str(lora_path), load_external_data=False)
    lora_to_outer, lora_local, to_append = split_lora_initializers(lora, lora_path.parent, outer, external, buf)

    graph_inputs = {i.name for i in lora.graph.input}
    outer_names = graph_inputs | {t.name for t in base.graph.initializer}

    def branch(g, prefix: str, rename_init: dict, local_inits: list):
        def ren(name: str) -> str:
            if name == "" or name in graph_inputs:
                return name
            if name in rename_init:
                return rename_init[name]
            if name in outer_names and prefix == "base/":
                return name
            return prefix + name

        nodes = []
        for n in g.node:
            m = onnx.NodeProto()
            m.CopyFrom(n)
            m.name = prefix + n.name if n.name else ""
            m.input[:] = [ren(x) for x in n.input]
            m.output[:] = [ren(x) for x in n.output]
            nodes.append(m)
        def renamed(protos, cls):
            out = []
            for p in protos:
                c = cls()
                c.CopyFrom(p)
                c.name = ren(p.name)
                out.append(c)
            return out

        sub = helper.make_graph(nodes, prefix.rstrip("/"), [], renamed(g.output, onnx.ValueInfoProto),
                                initializer=renamed(local_inits, onnx.TensorProto))
        sub.value_info.extend(renamed(g.value_info, onnx.ValueInfoProto))
        return sub

    for stale in (out_path, out_path.with_name(data_name)):
        if stale.exists():
            stale.unlink()
    if external:
        shutil.move(str(base_path.with_name(base_path.name + ".data")), str(out_path.with_name(data_name)))
        if to_append:
            with open(out_path.with_name(data_name), "r+b") as dst:
                for t in to_append:
                    append_external(t, lora_path.parent, dst, data_name, buf)

    then_g = branch(lora.graph, "lora/", lora_to_outer, lora_local)
    else_g = branch(base.graph, "base/", {}, [])
    counts = {"shared_initializers": len(lora_to_outer), "lora_only_initializers": len(lora_local),
              "base_nodes": len(base.graph.node), "lora_nodes": len(lora.graph.node)}
    active = helper.make_tensor_value_info(ACTIVE_INPUT, onnx.TensorProto.BOOL, [1])
    if_node = helper.make_node("If", [ACTIVE_INPUT], [o.name for o in lora.graph.output], name="lora_or_base",
                               then_branch=then_g, else_branch=else_g)
    graph = helper.make_graph([if_node], "transformer", list(lora.graph.input) + [active], list(lora.graph.output))
    model = helper.make_model(graph, opset_imports=list(lora.opset_import), ir_version=lora.ir_version)
    model.producer_name, model.producer_version = lora.producer_name, lora.producer_version
    del lora, then_g, else_g, graph
    # The weights go in last, straight into the model (make_graph and make_model would copy them
    # twice), and the source graph goes before the model is serialised.
    model.graph.initializer.extend(base.graph.initializer)
    del base
    onnx.save_model(model, str(out_path))  # external initializers keep their references
    return counts
