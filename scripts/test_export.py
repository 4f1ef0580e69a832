"""Parity tests for scripts/export_onnx.py and the committed tiny model / reference data.

Needs torch, diffusers, transformers, onnxruntime (scripts/requirements.txt); the whole module
is skipped when they are missing (CI has no torch).  Run:  python -m pytest -q -s scripts/

Relative error of an output a against its reference b is  max|a − b| / max|b|  over the
whole tensor (so it is scale-free and tolerant to near-zero elements).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")
ort = pytest.importorskip("onnxruntime")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export_onnx as ex  # noqa: E402
import klein_variants as kv  # noqa: E402
import lora_formats  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "models" / "tiny"
REFERENCE = REPO / "testdata" / "reference"
REL_TOL = 1e-5

ex.init_torch()
torch.set_num_threads(1)


def rel_err(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    denom = np.abs(b).max()
    return float(np.abs(a - b).max() / (denom if denom > 0 else 1.0))


@pytest.fixture(scope="module")
def tiny():
    return ex.build_tiny(ex.TINY_SEED)


@pytest.fixture(scope="module")
def manifest():
    return json.loads((TINY / "model.json").read_text())


@pytest.fixture(scope="module")
def sessions():
    return {g: ex.ort_session(TINY / f"{g}.onnx", threads=1) for g in ex.GRAPH_NAMES}


def test_manifest_matches_files_and_weights(tiny, manifest):
    for rel, info in manifest["files"].items():
        path = TINY / rel
        assert path.stat().st_size == info["bytes"], rel
        assert ex.sha256_file(path) == info["sha256"], rel
    for name, digest in manifest["source"]["state_dict_sha256"].items():
        assert ex.state_dict_sha256(getattr(tiny, name)) == digest, f"{name}: rebuilt weights differ from the manifest"
    for g in ex.GRAPH_NAMES:
        ins, outs = ex.graph_inputs(g, tiny), ex.GRAPH_IO[g][1]
        entry = manifest["graphs"][g]
        assert [i["name"] for i in entry["inputs"]] == list(ins)
        assert [o["name"] for o in entry["outputs"]] == list(outs)
    total = sum(f["bytes"] for f in manifest["files"].values())
    assert total <= 15 * 1000 * 1000, f"tiny model is {total} bytes"


# (graph, batch, h, w): batch and spatial sizes differ from the export example (2, 4, 3).
SHAPES = [(1, 4, 4), (3, 2, 5)]


@pytest.mark.parametrize("graph", ex.GRAPH_NAMES)
@pytest.mark.parametrize("batch,h,w", SHAPES)
def test_ort_matches_torch(graph, batch, h, w, tiny, sessions):
    module = ex.graph_module(graph, tiny)
    args = ex.example_inputs(graph, tiny, torch.float32, batch=batch, h=h, w=w)
    ins, outs = ex.graph_inputs(graph, tiny), ex.GRAPH_IO[graph][1]
    with torch.no_grad():
        want = module(*args)
    want = want if isinstance(want, tuple) else (want,)
    got = sessions[graph].run(list(outs), ex.graph_feeds(graph, tiny, args))
    for name, g, t in zip(outs, got, want):
        t = t.numpy()
        assert g.shape == t.shape, f"{graph}.{name}: {g.shape} vs {t.shape}"
        if t.dtype == np.bool_:
            assert (g == t).all(), f"{graph}.{name}"
            continue
        err = rel_err(g, t)
        print(f"\n  {graph}.{name} B={batch} h={h} w={w}: max rel err {err:.2e}")
        assert err < REL_TOL, f"{graph}.{name}: relative error {err:.3e}"


def test_text_encoder_graph_matches_pipeline_encoding(tiny, sessions):
    """ONNX text encoder == Flux2KleinPipeline._get_qwen3_prompt_embeds (full HF model, output_hidden_states)."""
    pipe = ex.build_tiny_pipeline(tiny, TINY / "tokenizer")
    prompts = ["", "a cat on a skateboard", "Ünïcödé 🐱 " * 20]
    with torch.no_grad():
        want = pipe._get_qwen3_prompt_embeds(pipe.text_encoder, pipe.tokenizer, prompts).numpy()
    ids, masks = zip(*(ex.tokenize_like_pipeline(pipe.tokenizer, p) for p in prompts))
    feeds = {"input_ids": torch.cat(ids).numpy(), "attention_mask": torch.cat(masks).numpy()}
    got = sessions["text_encoder"].run(None, feeds)[0]
    err = rel_err(got, want)
    print(f"\n  text_encoder vs pipeline encode: max rel err {err:.2e}")
    assert err < REL_TOL
    # Pad rows are real outputs (not zeros) and differ between prompts.
    assert np.abs(got[0, 100]).max() > 0 and not np.allclose(got[0, 100], got[1, 100])


def test_vae_encoder_inverts_layout(tiny):
    """Encoder patchify/BN-normalise is the inverse layout of the decoder's de-norm/unpatchify."""
    enc = ex.VaeEncoderGraph(tiny.vae)
    z = torch.randn(1, 32, 6, 4)
    b, c, h, w = z.shape
    packed = z.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)
    unpacked = packed.reshape(b, c, 2, 2, h // 2, w // 2).permute(0, 1, 4, 2, 5, 3).reshape(b, c, h, w)
    assert torch.equal(unpacked, z)
    normed = (packed - enc.bn_mean) / enc.bn_std
    assert torch.allclose(normed * enc.bn_std + enc.bn_mean, packed, atol=1e-6)
    # The BN statistics are not trivial.
    assert enc.bn_mean.abs().max() > 0.1 and (enc.bn_std - 1).abs().max() > 0.1


def test_tokenizer_vocab_merges_matches_tokenizer_json():
    """models/tiny/tokenizer (vocab.json+merges.txt) gives the same ids as the npm tokenizer.json."""
    from transformers import AutoTokenizer

    import os

    candidates = [os.environ.get("KLEINSERVE_TOKENIZER_JSON", ""), str(REPO / ".cache/tokenizer-qwen3/package/models"),
                  "/work/qwen3-tok/package/models"]
    src = next((Path(c) for c in candidates if c and (Path(c) / "tokenizer.json").exists()), None)
    if src is None:
        pytest.skip("full tokenizer.json not available (make .cache/tokenizer-qwen3/package/models/tokenizer.json)")
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(src / f, Path(tmp) / f)
        full = AutoTokenizer.from_pretrained(tmp)
    small = AutoTokenizer.from_pretrained(str(TINY / "tokenizer"))
    rng = np.random.default_rng(0)
    pieces = ["cat", " dog", "Hello", " world", "123", "4567", "  ", "\n", "\t", "é", "e\u0301", "Ω", "東京", "😀", "🚀",
              "👩‍👩‍👧", "<|im_end|>", "<think>", "don't", "I'M", " ", "—", "ß", "İ", "ǅ", "\u00a0", "a\u200bb", "!!", "...",
              "https://example.com/x?y=1", "C++", "naïve", "Ünïcödé", "ﬁ", "①", "𝔘"]
    strings = ["", " ", "a cat on a skateboard"]
    for _ in range(300):
        n = int(rng.integers(1, 12))
        strings.append("".join(pieces[int(i)] for i in rng.integers(0, len(pieces), n)))
    for s in strings:
        assert small(s)["input_ids"] == full(s)["input_ids"], repr(s)
    text = small.apply_chat_template([{"role": "user", "content": "a cat on a skateboard"}], tokenize=False,
                                     add_generation_prompt=True, enable_thinking=False)
    assert small(text)["input_ids"] == [151644, 872, 198, 64, 8251, 389, 264, 97982, 151645, 198, 151644, 77091, 198,
                                        151667, 271, 151668, 271]
    print(f"\n  tokenizer: {len(strings)} strings identical")


def no_lora_inputs(comps) -> dict:
    """The LoRA inputs of a request without LoRA: a rank-1 zero pair per target."""
    return {**lora_formats.stack(lora_formats.lora_targets(comps.transformer), []),
            lora_formats.ACTIVE_INPUT: np.array([False])}


NO_LORA = no_lora_inputs(ex.build_tiny(ex.TINY_SEED))


def test_lora_transformer_branches(tiny, sessions):
    """The LoRA transformer is one If over one set of weights: its branch without LoRA and its
    branch with zero pairs agree exactly, and its LoRA branch matches torch with random pairs."""
    import onnx

    model = onnx.load(str(TINY / "transformer.onnx"), load_external_data=False)
    assert [n.op_type for n in model.graph.node] == ["If"]
    names = [t.name for t in model.graph.initializer]
    for attr in model.graph.node[0].attribute:
        assert len(attr.g.initializer) == 0, f"{attr.name} holds weights of its own"
    assert sum(int(np.prod(t.dims)) for t in model.graph.initializer) >= ex.count_params(tiny.transformer)
    assert len(names) == len(set(names))
    args = ex.example_inputs("transformer", tiny, torch.float32, batch=2, h=3, w=5)
    feeds = ex.graph_feeds("transformer", tiny, args)
    zero = {**feeds, **NO_LORA}
    off = sessions["transformer"].run(None, zero)[0]
    on = sessions["transformer"].run(None, {**zero, lora_formats.ACTIVE_INPUT: np.array([True])})[0]
    assert np.array_equal(off, on)
    with torch.no_grad():
        want = ex.graph_module("transformer", tiny)(*args).numpy()
    got = sessions["transformer"].run(None, feeds)[0]
    assert rel_err(got, want) < REL_TOL and rel_err(got, off) > 1e-2


def test_lora_file_metadata_sorted(tmp_path):
    """write_file's bytes do not depend on the order safetensors emits metadata in: the keys come out
    sorted, and the file loads back with the same tensors and metadata."""
    from safetensors import safe_open

    metadata = {f"k{i}": f"v{i}" for i in (5, 2, 7, 0, 3, 6, 1, 4)}
    sd = {"a.lora_A.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "a.alpha": np.array([2.0], np.float32)}
    path = tmp_path / "x.safetensors"
    lora_formats.write_file(path, sd, "float32", metadata)
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    assert n % 8 == 0
    assert list(json.loads(data[8:8 + n])["__metadata__"]) == sorted(metadata)
    with safe_open(str(path), "np") as f:
        assert f.metadata() == metadata
        assert all(np.array_equal(f.get_tensor(k), v) for k, v in sd.items())


def load_array(desc, root: Path = REFERENCE):
    dtype = {"float32": "<f4", "int64": "<i8", "uint8": "u1", "bool": "?"}[desc["dtype"]]
    return np.fromfile(root / desc["file"], dtype=dtype).reshape(desc["shape"])


def test_reference_replayed_with_ort(sessions):
    """Replaying the reference cases with the ONNX graphs (host loop in numpy) reproduces them."""
    total = sum(p.stat().st_size for p in REFERENCE.iterdir() if p.is_file())
    assert total < 5e6
    replay_reference(REFERENCE, sessions, NO_LORA)


def replay_reference(root: Path, sessions, no_lora, distilled: bool = False) -> None:
    """Every case of root/index.json through the graphs of `sessions` (numpy host loop): prompt
    embeddings, latents per step and final, decoded image, safety flags and scores; then the
    stand-alone CLIP preprocessing vector."""
    index = json.loads((root / "index.json").read_text())
    flags = []
    for case in index["cases"]:
        a = {k: load_array(v, root) for k, v in case["arrays"].items()}
        n, g, cfg = case["num_inference_steps"], case["guidance_scale"], case["cfg"]
        h, w = case["height"] // 16, case["width"] // 16
        # A distilled pipeline runs one call per step whatever guidance it is given.
        assert cfg == (g > 1 and not distilled) and (("negative_prompt_embeds" in a) == cfg)
        # Schedule: mu and the float32 timestep formula.
        assert abs(case["mu"] - ex.compute_empirical_mu(h * w, n)) < 1e-12
        sig = a["sigmas"]
        assert sig.shape == (n + 1,) and sig[0] == 1.0 and sig[-1] == 0.0
        t_expect = (sig[:-1] * np.float32(1000)).astype(np.float32) / np.float32(1000)
        assert np.array_equal(a["timesteps"], t_expect.astype(np.float32)), case["name"]
        # Text encoder.
        pe = sessions["text_encoder"].run(None, {"input_ids": a["input_ids"], "attention_mask": a["attention_mask"]})[0]
        assert rel_err(pe, a["prompt_embeds"]) < REL_TOL, case["name"]
        if cfg:
            ne = sessions["text_encoder"].run(None, {"input_ids": a["negative_input_ids"],
                                                     "attention_mask": a["negative_attention_mask"]})[0]
            assert rel_err(ne, a["negative_prompt_embeds"]) < REL_TOL, case["name"]
        # Denoising loop on the recorded embeddings.
        b = case["num_images"]
        x = a["initial_noise"].reshape(b, 128, h * w).transpose(0, 2, 1).copy()
        img_ids = np.zeros((h * w, 4), np.int64)
        img_ids[:, 1] = np.arange(h * w) // w
        img_ids[:, 2] = np.arange(h * w) % w
        txt_ids = np.zeros((512, 4), np.int64)
        txt_ids[:, 3] = np.arange(512)

        def dit(embeds, t):
            return sessions["transformer"].run(None, {
                "hidden_states": x, "encoder_hidden_states": np.repeat(embeds, b, axis=0),
                "timestep": np.full((b,), t, np.float32), "img_ids": img_ids, "txt_ids": txt_ids, **no_lora})[0]

        for i in range(n):
            v = dit(a["prompt_embeds"], a["timesteps"][i])
            if cfg:
                vn = dit(a["negative_prompt_embeds"], a["timesteps"][i])
                v = vn + np.float32(g) * (v - vn)
            x = (x + (sig[i + 1] - sig[i]) * v).astype(np.float32)
            if "latents_per_step" in a:
                assert rel_err(x, a["latents_per_step"][i]) < 1e-4, (case["name"], i)
        err = rel_err(x, a["final_latents"])
        # fp32 accumulated over up to 50 steps of an independently computed graph.
        assert err < 1e-4, (case["name"], err)
        # Decode the reference latents and convert like diffusers.
        z = a["final_latents"].transpose(0, 2, 1).reshape(b, 128, h, w)
        img = sessions["vae_decoder"].run(None, {"latents": np.ascontiguousarray(z)})[0]
        u8 = (np.clip(img / 2 + 0.5, 0, 1).transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)
        diff = np.abs(u8.astype(int) - a["image"].astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, case["name"]
        # Safety: preprocess the reference uint8 image, run the ONNX checker.
        clip = np.stack([ex.clip_preprocess(im) for im in a["image"]])
        if "clip_input" in a:
            assert rel_err(clip, a["clip_input"]) < 1e-6
        nsfw, scores = sessions["safety_checker"].run(None, {"clip_input": clip})
        assert np.array_equal(nsfw, a["has_nsfw_concepts"]), case["name"]
        assert rel_err(scores, a["concept_scores"]) < REL_TOL
        flags += list(nsfw)
        print(f"\n  {case['name']}: final latents rel err {err:.2e}, image max |diff| {diff.max()}")
    assert any(flags) and not all(flags)
    cv = index["clip_preprocess"]
    clip = ex.clip_preprocess(load_array(cv["image"], root)[0])
    assert rel_err(clip, load_array(cv["clip_input"], root)[0]) < 1e-6


def test_clip_resize_matrix_properties():
    for n_in, n_out in [(64, 224), (480, 224), (224, 224), (1000, 224)]:
        r = ex.triangle_resize_matrix(n_in, n_out)
        assert r.shape == (n_out, n_in)
        assert np.allclose(r.sum(axis=1), 1.0) and (r >= 0).all()
        # A ramp stays (nearly) a ramp with slope n_in/n_out away from the clamped edges.
        out = r @ np.arange(n_in, dtype=np.float64)
        mid = out[n_out // 4 : 3 * n_out // 4]
        assert np.allclose(np.diff(mid), n_in / n_out, rtol=0.05)
    assert np.allclose(ex.triangle_resize_matrix(224, 224), np.eye(224))
    # Golden values (also for the Go port): 2→1 averages, 4→2 uses a radius-2 triangle,
    # 2→4 is bilinear with half-pixel centres and clamped edges.
    assert np.allclose(ex.triangle_resize_matrix(2, 1), [[0.5, 0.5]])
    assert np.allclose(ex.triangle_resize_matrix(4, 2), [[3 / 7, 3 / 7, 1 / 7, 0], [0, 1 / 7, 3 / 7, 3 / 7]])
    assert np.allclose(ex.triangle_resize_matrix(2, 4), [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])


def test_guidance_moves_latents(tiny):
    """The tiny DiT responds to the text: cond and uncond velocities differ noticeably."""
    pipe = ex.build_tiny_pipeline(tiny, TINY / "tokenizer")
    with torch.no_grad():
        pos, _ = pipe.encode_prompt("a red fox in the snow")
        neg, _ = pipe.encode_prompt("")
        args = ex.example_inputs("transformer", tiny, torch.float32, batch=1, h=4, w=4)
        dit = ex.TransformerGraph(tiny.transformer)
        vp = dit(args[0], pos, args[2], args[3], args[4])
        vn = dit(args[0], neg, args[2], args[3], args[4])
    ratio = float((vp - vn).abs().mean() / vn.abs().mean())
    print(f"\n  mean|v_cond - v_uncond| / mean|v_uncond| = {ratio:.3f}")
    assert ratio > 0.05


# ----------------------------------------------------------------------------------------------
# --attention: models/tiny's transformer is fused (the default: opset 23, ONNX `Attention` nodes);
# --attention decomposed (opset 20, MatMul/Softmax/MatMul) stays available and must agree with it
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def decomposed_transformer(tiny, tmp_path_factory):
    """The tiny transformer exported with --attention decomposed (same code path as the CLI)."""
    out = tmp_path_factory.mktemp("decomposed")
    facts = ex.export_all(tiny, out, ex.resolve_precisions("fp32", None), graphs=("transformer",), attention="decomposed")
    assert "attention" not in facts["transformer"]
    return out / "transformer.onnx"


def test_default_attention_is_fused(decomposed_transformer, tiny, manifest):
    assert ex.DEFAULT_ATTENTION == "fused"
    blocks = tiny.transformer.config.num_layers + tiny.transformer.config.num_single_layers
    fused = ex.attention_op_counts(TINY / "transformer.onnx")
    decomposed = ex.attention_op_counts(decomposed_transformer)
    print(f"\n  fused (models/tiny) {fused}\n  decomposed {decomposed}")
    # Each of the LoRA transformer's two branches (lora_active or not) has one per block.
    assert fused["Attention"] == 2 * blocks and fused["Softmax"] == 0
    assert decomposed["Attention"] == 0 and decomposed["Softmax"] == 2 * blocks
    io = ex.graph_io_from_file(TINY / "transformer.onnx")
    assert io["opset"] == ex.FUSED_ATTENTION_OPSET
    assert manifest["graphs"]["transformer"]["attention"] == "fused"
    assert manifest["source"]["attention"] == {"mode": "fused", "opset": ex.FUSED_ATTENTION_OPSET, "graphs": ["transformer"]}
    for g in ex.GRAPH_NAMES:
        if g not in ex.FUSED_ATTENTION_GRAPHS:
            assert manifest["graphs"][g]["opset"] == ex.OPSET and "attention" not in manifest["graphs"][g], g
    # Same graph interface: the Go pipeline feeds either unchanged.
    want = ex.graph_io_from_file(decomposed_transformer)
    assert want["opset"] == ex.OPSET
    assert io["inputs"] == want["inputs"] and io["outputs"] == want["outputs"]


@pytest.mark.parametrize("batch,h,w", SHAPES)
def test_decomposed_transformer_matches_torch_and_fused(decomposed_transformer, batch, h, w, tiny, sessions):
    module = ex.graph_module("transformer", tiny)
    args = ex.example_inputs("transformer", tiny, torch.float32, batch=batch, h=h, w=w)
    feeds = ex.graph_feeds("transformer", tiny, args)
    with torch.no_grad():
        want = module(*args).numpy()
    got = ex.ort_session(decomposed_transformer, threads=1).run(None, feeds)[0]
    fused = sessions["transformer"].run(None, feeds)[0]
    e_torch, e_fused, e_fused_torch = rel_err(got, want), rel_err(got, fused), rel_err(fused, want)
    print(f"\n  B={batch} h={h} w={w}: rel err vs torch: decomposed {e_torch:.2e}, fused {e_fused_torch:.2e}; "
          f"decomposed vs fused {e_fused:.2e}")
    assert got.shape == want.shape
    assert e_torch < REL_TOL and e_fused < REL_TOL


def test_decomposed_transformer_replays_reference(decomposed_transformer):
    """The denoising loop of every reference case, with the decomposed DiT, ends on the reference
    latents (test_reference_replayed_with_ort does the same with models/tiny's fused one)."""
    index = json.loads((REFERENCE / "index.json").read_text())
    dit = ex.ort_session(decomposed_transformer, threads=1)
    for case in index["cases"]:
        a = {k: load_array(v) for k, v in case["arrays"].items()}
        n, g, cfg, b = case["num_inference_steps"], case["guidance_scale"], case["cfg"], case["num_images"]
        h, w = case["height"] // 16, case["width"] // 16
        x = a["initial_noise"].reshape(b, 128, h * w).transpose(0, 2, 1).copy()
        img_ids = np.zeros((h * w, 4), np.int64)
        img_ids[:, 1], img_ids[:, 2] = np.arange(h * w) // w, np.arange(h * w) % w
        txt_ids = np.zeros((512, 4), np.int64)
        txt_ids[:, 3] = np.arange(512)
        sig = a["sigmas"]
        for i in range(n):
            def velocity(embeds):
                return dit.run(None, {"hidden_states": x, "encoder_hidden_states": np.repeat(embeds, b, axis=0),
                                      "timestep": np.full((b,), a["timesteps"][i], np.float32),
                                      "img_ids": img_ids, "txt_ids": txt_ids, **NO_LORA})[0]
            v = velocity(a["prompt_embeds"])
            if cfg:
                vn = velocity(a["negative_prompt_embeds"])
                v = vn + np.float32(g) * (v - vn)
            x = (x + (sig[i + 1] - sig[i]) * v).astype(np.float32)
        err = rel_err(x, a["final_latents"])
        print(f"\n  {case['name']}: decomposed final latents rel err {err:.2e}")
        assert err < 1e-4, (case["name"], err)  # the bound test_reference_replayed_with_ort uses


def decomposed_model_dir(decomposed_transformer: Path, dst: Path) -> Path:
    """models/tiny with its transformer replaced by the decomposed export, manifest updated the
    way write_manifest writes it (file size/hash, graph opset, no attention keys)."""
    import shutil

    shutil.copytree(TINY, dst)
    shutil.copyfile(decomposed_transformer, dst / "transformer.onnx")
    manifest = json.loads((TINY / "model.json").read_text())
    path = dst / "transformer.onnx"
    manifest["files"]["transformer.onnx"] = {"bytes": path.stat().st_size, "sha256": ex.sha256_file(path)}
    manifest["graphs"]["transformer"].update(ex.graph_io_from_file(path))
    del manifest["graphs"]["transformer"]["attention"], manifest["source"]["attention"]
    (dst / "model.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return dst


def test_go_pipeline_runs_decomposed_export(decomposed_transformer, tmp_path):
    """`server generate` (Go, ONNX Runtime C library from scripts/install_ort.sh) loads the
    decomposed transformer and gives the same image as with the fused models/tiny (±1 per channel).
    The safety checker is off: the tiny checker flags this image, and a black image compares
    nothing."""
    import os
    import shutil
    import subprocess

    from PIL import Image

    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    lib = REPO / ".ort" / "lib" / "libonnxruntime.so"
    if go is None or not lib.exists():
        pytest.skip("needs go and .ort/lib/libonnxruntime.so (make ort)")
    decomposed_dir = decomposed_model_dir(decomposed_transformer, tmp_path / "tiny-decomposed")
    server = tmp_path / "server"
    subprocess.run([go, "build", "-o", str(server), "./cmd/server"], cwd=REPO, check=True)
    env = {**os.environ, "LD_LIBRARY_PATH": str(lib.parent)}
    images = {}
    for name, models in (("fused", TINY), ("decomposed", decomposed_dir)):
        out = tmp_path / f"{name}.png"
        run = subprocess.run([str(server), "generate", "-models", str(models), "-ort-lib", str(lib), "-prompt",
                              "a red fox in the snow", "-width", "96", "-height", "64", "-steps", "8", "-guidance", "4",
                              "-seed", "7", "-threads", "1", "-no-safety-checker", "-out", str(out)], cwd=REPO, env=env,
                             capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, f"{name}: {run.stderr}"
        images[name] = np.asarray(Image.open(out).convert("RGB")).astype(int)
    diff = np.abs(images["decomposed"] - images["fused"])
    print(f"\n  Go generate 96x64, 8 steps: decomposed vs fused image max |diff| {diff.max()}, "
          f"{(diff > 0).mean():.2e} of values differ; image std {images['fused'].std():.1f}")
    assert images["fused"].std() > 5  # a real image, not a flat one
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


@pytest.fixture(scope="module")
def tiny_branches(tmp_path_factory):
    """The pre-LoRA and LoRA graphs of the tiny transformer as export_lora_transformer exports them
    before the join (inline weights): {"base": path, "lora": path}."""
    comps = ex.build_tiny(ex.TINY_SEED)
    root = tmp_path_factory.mktemp("branches")
    paths = {}
    for name, lora in (("base", False), ("lora", True)):
        comps.lora = lora
        path = root / name / "transformer.onnx"
        path.parent.mkdir()
        ex.export_module(ex.graph_module("transformer", comps), ex.example_inputs("transformer", comps, torch.float32),
                         path, ex.graph_inputs("transformer", comps)[: None if not lora else -1], ("noise_pred",),
                         ex.dynamic_shapes_for("transformer", comps),
                         opset=ex.graph_opset("transformer", ex.DEFAULT_ATTENTION))
        paths[name] = path
    return paths


def copy_branches(paths: dict, root: Path) -> dict:
    """A fresh copy of the branch graphs (merge_branches moves the pre-LoRA data file)."""
    import shutil

    out = {}
    for name, path in paths.items():
        (root / name).mkdir(parents=True)
        for f in path.parent.iterdir():
            shutil.copyfile(f, root / name / f.name)
        out[name] = root / name / path.name
    return out


def test_merge_branches_inline_is_the_committed_model(tiny_branches, tmp_path):
    """The join of the inline branch graphs is models/tiny's transformer, byte for byte."""
    paths = copy_branches(tiny_branches, tmp_path)
    out = tmp_path / "out" / "transformer.onnx"
    out.parent.mkdir()
    facts = lora_formats.merge_branches(paths["base"], paths["lora"], out, external=False)
    assert facts["lora_only_initializers"] == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["transformer.onnx"]
    assert ex.sha256_file(out) == ex.sha256_file(TINY / "transformer.onnx")


def test_merge_branches_with_external_data(tiny_branches, tiny, sessions, tmp_path):
    """merge_branches on graphs whose weights are in external data files (as the real model's
    are) gives models/tiny's transformer but for where the bytes live: the pre-LoRA graph's data
    file, moved next to it unchanged, read by both branches."""
    import onnx

    paths = {}
    for name, inline in tiny_branches.items():
        ext = tmp_path / name / "transformer.onnx"
        ext.parent.mkdir()
        onnx.save_model(onnx.load(str(inline)), str(ext), save_as_external_data=True, all_tensors_to_one_file=True,
                        location="transformer.onnx.data", size_threshold=0)
        paths[name] = ext
    base_data = ex.sha256_file(tmp_path / "base" / "transformer.onnx.data")
    out = tmp_path / "out" / "transformer.onnx"
    out.parent.mkdir()
    facts = lora_formats.merge_branches(paths["base"], paths["lora"], out, external=True)
    assert facts["lora_only_initializers"] == 0
    assert not (tmp_path / "base" / "transformer.onnx.data").exists()
    assert ex.sha256_file(tmp_path / "out" / "transformer.onnx.data") == base_data

    def without_locations(model) -> bytes:
        for t in onnx.external_data_helper._get_all_tensors(model):
            t.ClearField("data_location")
        return model.SerializeToString()

    assert without_locations(onnx.load(str(out))) == without_locations(onnx.load(str(TINY / "transformer.onnx")))
    merged = ex.ort_session(out, threads=1)
    args = ex.example_inputs("transformer", tiny, torch.float32, batch=1, h=2, w=3)
    for active in (True, False):
        feeds = {**ex.graph_feeds("transformer", tiny, args), lora_formats.ACTIVE_INPUT: np.array([active])}
        assert np.array_equal(merged.run(None, feeds)[0], sessions["transformer"].run(None, feeds)[0]), active


def test_content_key_by_value_wherever_stored(tmp_path):
    """content_key depends on element type, shape and values only: the same values in raw_data,
    in typed fields and in a data file give one key; another type, shape or value another."""
    from onnx import TensorProto, helper, numpy_helper

    a = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    raw = numpy_helper.from_array(a, "raw")
    typed = helper.make_tensor("typed", TensorProto.FLOAT, [3, 4], a.ravel().tolist())
    assert not typed.HasField("raw_data")
    (tmp_path / "w.data").write_bytes(b"\0" * 40 + a.tobytes() + b"\1" * 8)
    ext = TensorProto(name="ext", data_type=TensorProto.FLOAT, dims=[3, 4], data_location=TensorProto.EXTERNAL)
    for k, v in (("location", "w.data"), ("offset", "40"), ("length", str(a.nbytes))):
        e = ext.external_data.add()
        e.key, e.value = k, v
    buf = bytearray(5)  # smaller than the tensor: the bytes come through the buffer in pieces
    key = lora_formats.content_key(raw, tmp_path, buf)
    assert lora_formats.content_key(typed, tmp_path, buf) == key
    assert lora_formats.content_key(ext, tmp_path, buf) == key
    others = [numpy_helper.from_array(a.view(np.int32)), numpy_helper.from_array(a.reshape(4, 3)),
              numpy_helper.from_array(a + 1)]
    assert len({key, *(lora_formats.content_key(t, tmp_path, buf) for t in others)}) == 4
    for entry, value in ((0, os.path.join(os.pardir, "w.data")), (0, os.path.join("sub", "w.data")), (2, str(a.nbytes + 9))):
        bad = TensorProto()
        bad.CopyFrom(ext)
        bad.external_data[entry].value = value
        with pytest.raises(ValueError, match="ext"):
            lora_formats.content_key(bad, tmp_path, buf)


# A weight of the synthetic join below: 64 MiB, four times the join's read buffer.
STREAM_DIM = 4096


def synthetic_branches(root: Path) -> tuple[dict, dict]:
    """Pre-LoRA graph  y = (x·W1)·W2  and LoRA graph  y = (x·W1)·W2 + (x·L)·s + a  (a: an input, L
    and s: weights only it has), with external data; the LoRA graph names and orders its copies of
    W1 and W2 differently.  Returns ({"base", "lora"}: path, {name: array})."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    n = STREAM_DIM
    w = {k: (rng.standard_normal((n, n), dtype=np.float32) / np.float32(n ** 0.5)) for k in ("w1", "w2", "l")}
    w["s"] = np.array([0.5], np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, n])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])
    base = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])],
        "base", [x], [y], [numpy_helper.from_array(w["w1"], "w1"), numpy_helper.from_array(w["w2"], "w2")])
    lora = helper.make_graph(
        [helper.make_node("MatMul", ["x", "p1"], ["h"]), helper.make_node("MatMul", ["h", "p2"], ["z"]),
         helper.make_node("MatMul", ["x", "l"], ["u"]), helper.make_node("Mul", ["u", "s"], ["v"]),
         helper.make_node("Add", ["z", "v"], ["zv"]), helper.make_node("Add", ["zv", "a"], ["y"])],
        "lora", [x, a], [y], [numpy_helper.from_array(w["w2"], "p2"), numpy_helper.from_array(w["l"], "l"),
                              numpy_helper.from_array(w["s"], "s"), numpy_helper.from_array(w["w1"], "p1")])
    paths = {}
    for name, g in (("base", base), ("lora", lora)):
        path = root / name / "transformer.onnx"
        path.parent.mkdir(parents=True)
        onnx.save_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), str(path),
                        save_as_external_data=True, all_tensors_to_one_file=True, location="transformer.onnx.data",
                        size_threshold=0)
        paths[name] = path
    return paths, w


def test_merge_branches_appends_only_lora_weights(tmp_path):
    """With external data the model's data file is the pre-LoRA graph's, unchanged, followed by the
    LoRA-only weight over SMALL_INITIALIZER_BYTES; the small one is inlined in its branch, and each
    branch computes what its source graph computes."""
    import onnx

    paths, w = synthetic_branches(tmp_path / "src")
    base_data = (tmp_path / "src" / "base" / "transformer.onnx.data").read_bytes()
    sources = {name: ex.ort_session(path, threads=1) for name, path in paths.items()}
    out = tmp_path / "out" / "transformer.onnx"
    out.parent.mkdir()
    facts = lora_formats.merge_branches(paths["base"], paths["lora"], out, external=True)
    assert facts["shared_initializers"] == 2 and facts["lora_only_initializers"] == 2
    data = (tmp_path / "out" / "transformer.onnx.data").read_bytes()
    assert data == base_data + w["l"].tobytes()

    model = onnx.load(str(out), load_external_data=False)
    assert [t.name for t in model.graph.initializer] == ["w1", "w2"]
    then_g = next(a.g for a in model.graph.node[0].attribute if a.name == "then_branch")
    local = {t.name: t for t in then_g.initializer}
    assert sorted(local) == ["lora/l", "lora/s"]
    assert lora_formats.external_info(local["lora/l"]) == {"location": "transformer.onnx.data",
                                                           "offset": str(len(base_data)), "length": str(w["l"].nbytes)}
    assert not lora_formats.is_external(local["lora/s"])

    rng = np.random.default_rng(6)
    feeds = {"x": rng.standard_normal((1, STREAM_DIM), dtype=np.float32),
             "a": rng.standard_normal((1, STREAM_DIM), dtype=np.float32)}
    merged = ex.ort_session(out, threads=1)
    for active, name in ((True, "lora"), (False, "base")):
        want = sources[name].run(None, feeds if name == "lora" else {"x": feeds["x"]})[0]
        got = merged.run(None, {**feeds, lora_formats.ACTIVE_INPUT: np.array([active])})[0]
        assert np.array_equal(got, want), name


def test_merge_branches_memory_does_not_grow_with_weights(tmp_path):
    """The join of external-data graphs holds no weight in memory: in a fresh process its peak RSS
    (Linux) rises above the resident size before it by less than half of one of the synthetic
    graphs' weights (64 MiB each, 128 MiB per graph): by its read buffer and the graphs' structure."""
    import subprocess

    paths, w = synthetic_branches(tmp_path / "src")
    largest = max(a.nbytes for a in w.values())
    assert largest >= 4 * lora_formats.STREAM_CHUNK_BYTES
    script = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import numpy, onnx, onnx.helper, onnx.numpy_helper
import lora_formats
def status(key):  # kB; VmHWM is this process's peak (ru_maxrss would carry the parent's over exec)
    words = Path("/proc/self/status").read_text().split()
    return int(words[words.index(key + ":") + 1]) * 1024
out = Path(sys.argv[4])
out.parent.mkdir()
before = status("VmRSS")
lora_formats.merge_branches(Path(sys.argv[2]), Path(sys.argv[3]), out, external=True)
print(status("VmHWM") - before)
"""
    run = subprocess.run([sys.executable, "-c", script, str(Path(lora_formats.__file__).parent), str(paths["base"]),
                          str(paths["lora"]), str(tmp_path / "out" / "transformer.onnx")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    grew = int(run.stdout.split()[-1])
    print(f"\n  join of 2 × {2 * largest / 2**20:.0f} MiB of external weights: peak RSS +{grew / 2**20:.1f} MiB")
    assert grew < largest // 2


# ----------------------------------------------------------------------------------------------
# The klein family: tiny models of the other variants, their references, and the --from path
# ----------------------------------------------------------------------------------------------

VARIANTS = list(kv.VARIANTS.values())
OTHER_VARIANTS = [v for v in VARIANTS if not v.is_default]
VARIANT_IDS = [v.name for v in VARIANTS]
OTHER_IDS = [v.name for v in OTHER_VARIANTS]


def read_manifest(model_dir: Path) -> dict:
    return json.loads((model_dir / "model.json").read_text())


@pytest.fixture(scope="module")
def variant_comps():
    """Tiny torch components per variant, built once each on first use."""
    cache = {}

    def get(v):
        if v.name not in cache:
            cache[v.name] = ex.build_tiny(ex.TINY_SEED, v)
        return cache[v.name]

    return get


@pytest.fixture(scope="module")
def variant_sessions():
    cache = {}

    def get(model_dir: Path):
        if model_dir not in cache:
            cache[model_dir] = {g: ex.ort_session(ex.model_path(model_dir, f"{g}.onnx"), threads=1) for g in ex.GRAPH_NAMES}
        return cache[model_dir]

    return get


def test_variant_table():
    """The four published checkpoints, their fal endpoints and defaults, and the configuration
    facts the sizes rest on (docs/variants.md)."""
    got = {v.name: (v.repo_id, v.endpoint_prefix, v.distilled, v.default_steps, v.default_guidance, v.text_encoder)
           for v in VARIANTS}
    assert got == {
        "4b-base": ("black-forest-labs/FLUX.2-klein-base-4B", "fal-ai/flux-2/klein/4b/base", False, 50, 4.0, "Qwen/Qwen3-4B"),
        "4b-distilled": ("black-forest-labs/FLUX.2-klein-4B", "fal-ai/flux-2/klein/4b", True, 4, 1.0, "Qwen/Qwen3-4B"),
        "9b-base": ("black-forest-labs/FLUX.2-klein-base-9B", "fal-ai/flux-2/klein/9b/base", False, 50, 4.0, "Qwen/Qwen3-8B"),
        "9b-distilled": ("black-forest-labs/FLUX.2-klein-9B", "fal-ai/flux-2/klein/9b", True, 4, 1.0, "Qwen/Qwen3-8B"),
    }
    assert kv.DEFAULT.manifest_block() is None and all(v.manifest_block()["variant"] == v.name for v in OTHER_VARIANTS)
    assert set(ex.REFERENCE_CASES) == set(kv.VARIANTS)
    for size in kv.SIZES:
        for tiny, tcfg, qcfg in ((False, kv.transformer_config(size), kv.text_encoder_config(size)),
                                 (True, kv.tiny_transformer_config(size), kv.tiny_text_encoder_config(size))):
            # Three tapped hidden states side by side feed the DiT's context embedder.
            assert tcfg["joint_attention_dim"] == len(ex.HIDDEN_LAYERS) * qcfg["hidden_size"]
            assert sum(tcfg["axes_dims_rope"]) == tcfg["attention_head_dim"]
            assert qcfg["num_hidden_layers"] > max(ex.HIDDEN_LAYERS)
            assert kv.detect_size(tcfg) == (size, tiny)
            assert kv.check_text_encoder(qcfg, tcfg, size, tiny, ex.HIDDEN_LAYERS) == []
        # The 9B tiny differs from the 4B tiny in the shapes where the real ones differ.
    for key in ("num_layers", "num_single_layers", "num_attention_heads", "joint_attention_dim"):
        assert kv.transformer_config("9b")[key] > kv.transformer_config("4b")[key]
        assert kv.tiny_transformer_config("9b")[key] > kv.tiny_transformer_config("4b")[key]
    assert kv.tiny_text_encoder_config("9b")["hidden_size"] > kv.tiny_text_encoder_config("4b")["hidden_size"]
    # Full-size parameter counts on the meta device: the 4B ones models/README.md gives, the
    # transformer of "9B", and Qwen3-8B's 8.19 B (its untied lm_head included).
    c4, c9 = ex.full_size_param_counts("4b"), ex.full_size_param_counts("9b")
    print(f"\n  4B {c4}\n  9B {c9}")
    assert (c4["transformer"], c4["text_encoder"], c4["text_encoder_full_36_layers"]) == (3875544576, 3114088192, 4022468096)
    assert (c9["transformer"], c9["text_encoder"], c9["text_encoder_full_36_layers"]) == (9078581248, 5831883520, 8190735360)
    assert {k: c4[k] for k in ("vae_decoder", "vae_encoder", "safety_checker")} == \
        {k: c9[k] for k in ("vae_decoder", "vae_encoder", "safety_checker")}


def test_variant_resolution_from_configuration():
    """A checkpoint's size comes from its transformer config, base/distilled from is_distilled;
    --variant must agree; a non-klein transformer is refused, naming the key."""
    for v in VARIANTS:
        for cfg in (kv.transformer_config(v.size), kv.tiny_transformer_config(v.size)):
            assert kv.resolve(cfg, v.distilled, None)[0] is v
            assert kv.resolve(cfg, v.distilled, v.name)[0] is v
    with pytest.raises(ValueError, match="is_distilled=True"):
        kv.resolve(kv.transformer_config("4b"), True, "4b-base")
    with pytest.raises(ValueError, match="9B configuration"):
        kv.resolve(kv.transformer_config("9b"), False, "4b-base")
    odd = {**kv.transformer_config("4b"), "num_layers": 3}
    with pytest.raises(ValueError, match="matches no FLUX.2 \\[klein\\] size.*pass --variant"):
        kv.resolve(odd, False, None)
    assert kv.resolve(odd, False, "4b-base")[0] is kv.DEFAULT  # a depth-reduced export, named by hand
    with pytest.raises(ValueError, match="guidance_embeds True"):
        kv.resolve({**kv.transformer_config("4b"), "guidance_embeds": True}, False, None)
    with pytest.raises(ValueError, match="joint_attention_dim 12288"):
        kv.check_text_encoder(kv.text_encoder_config("4b"), kv.transformer_config("9b"), "9b", False, ex.HIDDEN_LAYERS)
    with pytest.raises(ValueError, match="unknown variant"):
        kv.get("4b-turbo")


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_variant_manifest_matches_files_and_weights(variant, variant_comps):
    model_dir = REPO / variant.tiny_dir
    man = read_manifest(model_dir)
    comps = variant_comps(variant)
    assert kv.from_manifest(man) is variant and man["variant"] == variant.tiny_variant
    assert man.get(kv.MANIFEST_KEY) == variant.manifest_block()
    assert man["defaults"] == variant.defaults()
    for rel, info in man["files"].items():
        path = ex.model_path(model_dir, rel, man)
        assert path.stat().st_size == info["bytes"], rel
        assert ex.sha256_file(path) == info["sha256"], rel
    for name, digest in man["source"]["state_dict_sha256"].items():
        assert ex.state_dict_sha256(getattr(comps, name)) == digest, f"{variant.name} {name}: rebuilt weights differ"
    for g in ex.GRAPH_NAMES:
        entry = man["graphs"][g]
        assert [i["name"] for i in entry["inputs"]] == ex.graph_inputs(g, comps)
        assert [o["name"] for o in entry["outputs"]] == list(ex.GRAPH_IO[g][1])
    te, tr = kv.tiny_text_encoder_config(variant.size), kv.tiny_transformer_config(variant.size)
    assert man["text"]["hidden_size"] == te["hidden_size"] and man["text"]["joint_attention_dim"] == tr["joint_attention_dim"]
    assert {k: man["architecture"]["transformer"][k] for k in kv.SIZE_KEYS} == {k: tr[k] for k in kv.SIZE_KEYS}
    # prompt_embeds [B,512,3·hidden] and encoder_hidden_states [B,512,J] agree in the files themselves.
    emb = man["graphs"]["text_encoder"]["outputs"][0]["shape"][2]
    ctx = man["graphs"]["transformer"]["inputs"][1]["shape"][2]
    assert emb == ctx == tr["joint_attention_dim"]
    total = sum(f["bytes"] for f in man["files"].values())
    print(f"\n  {variant.tiny_dir}: {total / 1e6:.2f} MB, params {man['param_counts']}")
    # Most of it is the real tokenizer (4.5 MB) and the text encoder's 151936-row embedding.
    assert total <= 16 * 1000 * 1000


def test_variants_share_weights_like_the_published_checkpoints():
    """One text encoder per size (the server can load it once, by content hash), one VAE, safety
    checker and tokenizer for the family; a transformer of its own per variant.  The committed
    directories hold each of these bytes once: a variant's model.json `shared` points at the
    owning sibling's copy (klein_variants.Variant.tiny_shared)."""
    files = {v.name: read_manifest(REPO / v.tiny_dir)["files"] for v in VARIANTS}
    digest = {name: {rel: info["sha256"] for rel, info in f.items()} for name, f in files.items()}
    shared = [rel for rel in digest["4b-base"] if rel not in ("text_encoder.onnx", "transformer.onnx")]
    assert {"vae_decoder.onnx", "vae_encoder.onnx", "safety_checker.onnx", "tokenizer/vocab.json"} <= set(shared)
    for v in OTHER_VARIANTS:
        assert set(digest[v.name]) == set(digest["4b-base"])
        for rel in shared:
            assert digest[v.name][rel] == digest["4b-base"][rel], (v.name, rel)
    te = {name: d["text_encoder.onnx"] for name, d in digest.items()}
    assert te["4b-base"] == te["4b-distilled"] and te["9b-base"] == te["9b-distilled"] and te["4b-base"] != te["9b-base"]
    assert len({d["transformer.onnx"] for d in digest.values()}) == len(VARIANTS)
    for v in VARIANTS:
        model_dir = REPO / v.tiny_dir
        man = read_manifest(model_dir)
        want = {name: Path(owner).name for name, owner in v.tiny_shared.items()}
        assert man.get(ex.SHARED_KEY, {}) == want, v.name
        for name in want:
            assert not (model_dir / name).exists(), f"{v.tiny_dir}/{name}: a copy next to the shared one"
    assert ex.model_path(REPO / "models/tiny-9b-distilled", "text_encoder.onnx").resolve() == \
        (REPO / "models/tiny-9b-base/text_encoder.onnx").resolve()
    assert ex.model_path(REPO / "models/tiny-4b-distilled", "tokenizer/vocab.json").resolve() == \
        (REPO / "models/tiny/tokenizer/vocab.json").resolve()


@pytest.mark.parametrize("variant", OTHER_VARIANTS, ids=OTHER_IDS)
@pytest.mark.parametrize("graph", ["text_encoder", "transformer"])
def test_variant_ort_matches_torch(variant, graph, variant_comps, variant_sessions):
    comps = variant_comps(variant)
    module = ex.graph_module(graph, comps)
    args = ex.example_inputs(graph, comps, torch.float32, batch=3, h=2, w=5)
    with torch.no_grad():
        want = module(*args).numpy()
    got = variant_sessions(REPO / variant.tiny_dir)[graph].run(None, ex.graph_feeds(graph, comps, args))[0]
    err = rel_err(got, want)
    print(f"\n  {variant.name} {graph}: max rel err {err:.2e}")
    assert got.shape == want.shape and err < REL_TOL


@pytest.mark.parametrize("variant", OTHER_VARIANTS, ids=OTHER_IDS)
def test_variant_guidance_moves_latents(variant, variant_comps):
    """Each tiny DiT responds to the text (a distilled one too: the text still steers it)."""
    comps = variant_comps(variant)
    pipe = ex.build_tiny_pipeline(comps, ex.model_path(REPO / variant.tiny_dir, "tokenizer"), distilled=variant.distilled)
    with torch.no_grad():
        pos, _ = pipe.encode_prompt("a red fox in the snow")
        neg, _ = pipe.encode_prompt("")
        args = ex.example_inputs("transformer", comps, torch.float32, batch=1, h=4, w=4)
        dit = ex.TransformerGraph(comps.transformer)
        vp, vn = dit(args[0], pos, *args[2:5]), dit(args[0], neg, *args[2:5])
    ratio = float((vp - vn).abs().mean() / vn.abs().mean())
    print(f"\n  {variant.name}: mean|v_cond - v_uncond| / mean|v_uncond| = {ratio:.3f}")
    assert ratio > 0.05


@pytest.mark.parametrize("variant", OTHER_VARIANTS, ids=OTHER_IDS)
def test_variant_reference_index(variant):
    """testdata/reference/<variant>/index.json names its model (by manifest hash) and variant; a
    distilled reference has no CFG case, even where guidance_scale > 1 was asked for."""
    root = REPO / variant.reference_dir
    index = json.loads((root / "index.json").read_text())
    model_dir = REPO / variant.tiny_dir
    assert index["model"]["dir"] == variant.tiny_dir
    assert index["model"]["model_json_sha256"] == ex.sha256_file(model_dir / "model.json")
    assert index["model"][kv.MANIFEST_KEY] == variant.manifest_block()
    assert index["model"]["state_dict_sha256"] == read_manifest(model_dir)["source"]["state_dict_sha256"]
    cases = index["cases"]
    assert [c["name"] for c in cases] == [c["name"] for c in ex.REFERENCE_CASES[variant.name]]
    if variant.distilled:
        assert not any(c["cfg"] for c in cases) and any(c["guidance_scale"] > 1 for c in cases)
        assert max(c["num_inference_steps"] for c in cases) == 8
    else:
        assert any(c["cfg"] for c in cases) and any(not c["cfg"] for c in cases)
    total = sum(p.stat().st_size for p in root.iterdir() if p.is_file())
    assert total < 5e6


def test_array_writer_writes_each_content_once(tmp_path):
    """With reuse, an array whose bytes a file already holds (its own, or one of a reuse folder)
    is named, relative to the writer's folder, instead of written again; without, every array
    gets its file."""
    base, variant = tmp_path / "ref", tmp_path / "ref" / "v"
    variant.mkdir(parents=True)
    a, b = np.arange(600, dtype=np.float32).reshape(2, 300), np.ones(400, dtype=np.int64)
    small = np.arange(3, dtype=np.float32)
    w0 = ex.ArrayWriter(base, reuse=[])
    assert w0.put("a", a)["file"] == "a.bin" and w0.put("s", small)["file"] == "s.bin"
    w = ex.ArrayWriter(variant, reuse=[base])
    assert w.put("x", a) == {"file": os.path.relpath(base / "a.bin", variant), "dtype": "float32", "shape": [2, 300]}
    assert w.put("y", b)["file"] == "y.bin" and w.put("z", b)["file"] == "y.bin"
    # Same bytes, another dtype and shape: the descriptor says how to read them.
    same = np.frombuffer(b.tobytes(), dtype=np.uint8)
    assert w.put("u", same) == {"file": "y.bin", "dtype": "uint8", "shape": [3200]}
    # Under REUSE_MIN_BYTES an array keeps its own file.
    assert w.put("t", small)["file"] == "t.bin"
    assert sorted(p.name for p in variant.iterdir()) == ["t.bin", "y.bin"]
    assert np.array_equal(load_array(w.put("x2", a), variant), a)
    plain = ex.ArrayWriter(tmp_path / "ref")
    assert plain.put("c", a)["file"] == "c.bin" and (base / "c.bin").read_bytes() == (base / "a.bin").read_bytes()


def test_reference_directories_hold_each_content_once():
    """testdata/reference and the variants' reference directories hold no two files with the same
    bytes (but the small ones ArrayWriter leaves alone); a variant's index names the 4B Base
    directory's CLIP preprocessing vector, and may name an earlier variant's files."""
    seen = {}
    for v in VARIANTS:
        root = REPO / v.reference_dir
        for p in sorted(root.glob("*.bin")):
            if p.stat().st_size < ex.ArrayWriter.REUSE_MIN_BYTES:
                continue
            digest = ex.sha256_file(p)
            assert digest not in seen, f"{p} has the bytes of {seen[digest]}"
            seen[digest] = p
        index = json.loads((root / "index.json").read_text())
        for desc in [a for c in index["cases"] for a in c["arrays"].values()] + list(index["clip_preprocess"].values()):
            assert (root / desc["file"]).is_file(), (v.name, desc["file"])
        if not v.is_default:
            assert {k: (root / d["file"]).resolve() for k, d in index["clip_preprocess"].items()} == \
                {k: (REFERENCE / f"clip_preprocess.{k}.bin").resolve() for k in ("image", "clip_input")}


@pytest.mark.parametrize("variant", OTHER_VARIANTS, ids=OTHER_IDS)
def test_variant_reference_replayed_with_ort(variant, variant_comps, variant_sessions):
    """The committed graphs of each tiny variant reproduce its diffusers reference outputs."""
    replay_reference(REPO / variant.reference_dir, variant_sessions(REPO / variant.tiny_dir),
                     no_lora_inputs(variant_comps(variant)), distilled=variant.distilled)


# --from: the path a user with real weights takes.  The published checkpoints are diffusers
# save_pretrained directories (model_index.json, sharded safetensors, tokenizer/); the tiny
# pipeline of each variant is saved the same way, with shards forced small, and exported.

SHARD = "200KB"


def save_checkpoint(comps, variant, root: Path) -> tuple[Path, Path]:
    """The tiny pipeline as a diffusers checkpoint directory, and its safety checker as a local
    copy (what a host without hub access passes to --safety-from)."""
    pipe = ex.build_tiny_pipeline(comps, ex.model_path(REPO / variant.tiny_dir, "tokenizer"), distilled=variant.distilled)
    ckpt, safety = root / "checkpoint", root / "safety-checker"
    pipe.save_pretrained(ckpt, max_shard_size=SHARD)
    comps.safety_checker.save_pretrained(safety)
    return ckpt, safety


@pytest.fixture(scope="module")
def from_exports(variant_comps, tmp_path_factory):
    """variant → (checkpoint dir, safety dir, exported model dir), exported with the CLI's own
    entry point, once per variant."""
    cache = {}

    def get(v):
        if v.name not in cache:
            root = tmp_path_factory.mktemp(f"from-{v.name}")
            ckpt, safety = save_checkpoint(variant_comps(v), v, root)
            out = root / "model"
            ex.main(["--from", str(ckpt), "--safety-from", str(safety), "--out", str(out), "--threads", "1"])
            cache[v.name] = (ckpt, safety, out)
        return cache[v.name]

    return get


def initializers(path: Path) -> dict:
    """name → (dtype, dims, raw bytes) of every initializer, subgraphs included."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    out = {}

    for graph in ex.all_graphs(model.graph):
        for t in graph.initializer:
            a = numpy_helper.to_array(t)
            out[t.name] = (a.dtype.str, a.shape, a.tobytes())
    return out


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_from_checkpoint_equals_tiny_export(variant, variant_comps, variant_sessions, from_exports):
    """`--from DIR --safety-from DIR` on the saved (sharded) tiny checkpoint of each variant gives
    the graphs of `--tiny --variant`: identical initializers and interfaces, equal ONNX Runtime
    outputs on fixed inputs, the same manifest facts, a tokenizer giving the same ids; and the
    export replays the variant's reference outputs."""
    ckpt, _, out = from_exports(variant)
    tiny_dir = REPO / variant.tiny_dir
    comps = variant_comps(variant)
    # Really sharded, as the published checkpoints are.
    for sub, stem in (("transformer", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"),
                      ("text_encoder", "model")):
        shards = sorted((ckpt / sub).glob(f"{stem}-*.safetensors"))
        assert len(shards) >= 2 and (ckpt / sub / f"{stem}.safetensors.index.json").exists(), (sub, shards)
    assert json.loads((ckpt / "model_index.json").read_text()).get("is_distilled", False) == variant.distilled
    want_man, got_man = read_manifest(tiny_dir), read_manifest(out)
    assert got_man.get(kv.MANIFEST_KEY) == variant.manifest_block() and got_man["defaults"] == variant.defaults()
    assert got_man["variant"] == want_man["variant"] and got_man["name"] == want_man["name"]
    for key in ("text", "latent", "scheduler", "param_counts"):
        assert got_man[key] == want_man[key], key
    assert got_man["architecture"]["transformer"] == want_man["architecture"]["transformer"]
    # A real export is self-contained: every file in its own directory.
    assert ex.SHARED_KEY not in got_man and all((out / rel).is_file() for rel in got_man["files"])
    identical = []
    for g in ex.GRAPH_NAMES:
        want_path = ex.model_path(tiny_dir, f"{g}.onnx", want_man)
        got_io, want_io = ex.graph_io_from_file(out / f"{g}.onnx"), ex.graph_io_from_file(want_path)
        assert got_io == want_io, g
        assert initializers(out / f"{g}.onnx") == initializers(want_path), f"{g}: initializers differ"
        identical.append(ex.sha256_file(out / f"{g}.onnx") == ex.sha256_file(want_path))
        args = ex.example_inputs(g, comps, torch.float32, batch=2, h=3, w=2)
        feeds = ex.graph_feeds(g, comps, args)
        got = ex.ort_session(out / f"{g}.onnx", threads=1).run(None, feeds)
        want = variant_sessions(tiny_dir)[g].run(None, feeds)
        for a, b in zip(got, want):
            assert np.array_equal(a, b), g
    print(f"\n  {variant.name}: graphs byte-identical to the --tiny export: {dict(zip(ex.GRAPH_NAMES, identical))}")
    # The same modules through the same exporter: the files are the same bytes, not just equal.
    assert all(identical)
    # The tokenizer went through save_pretrained (tokenizer.json) and back to vocab/merges.
    from transformers import AutoTokenizer

    tiny_tokenizer = ex.model_path(tiny_dir, "tokenizer", want_man)
    for f in ("vocab.json", "merges.txt"):
        assert (out / "tokenizer" / f).read_bytes() == (tiny_tokenizer / f).read_bytes(), f

    mine, theirs = AutoTokenizer.from_pretrained(str(out / "tokenizer")), AutoTokenizer.from_pretrained(str(tiny_tokenizer))
    for prompt in ["", "a cat on a skateboard", "Ünïcödé café — 東京の夜景 🌃🐱", ex.LONG_PROMPT]:
        assert ex.tokenize_like_pipeline(mine, prompt)[0].tolist() == ex.tokenize_like_pipeline(theirs, prompt)[0].tolist()
    replay_reference(REPO / variant.reference_dir, variant_sessions(out), no_lora_inputs(comps), distilled=variant.distilled)


def test_from_checkpoint_refuses_a_contradicting_variant(variant_comps, tmp_path):
    """--variant is checked against the checkpoint's own configuration, and model_index.json
    without is_distilled (the published base checkpoints) means base."""
    v = kv.VARIANTS["4b-distilled"]
    ckpt, _ = save_checkpoint(variant_comps(v), v, tmp_path)
    assert ex.checkpoint_variant(str(ckpt), None) == (v, True)
    for wrong, what in (("4b-base", "is_distilled=True"), ("9b-distilled", "4B configuration")):
        with pytest.raises(SystemExit, match=f"--variant {wrong}: .*{what}"):
            ex.main(["--from", str(ckpt), "--variant", wrong, "--out", str(tmp_path / "never"), "--threads", "1"])
    assert not (tmp_path / "never").exists()
    index = json.loads((ckpt / "model_index.json").read_text())
    del index["is_distilled"]
    (ckpt / "model_index.json").write_text(json.dumps(index))
    assert ex.checkpoint_variant(str(ckpt), None) == (kv.DEFAULT, True)
