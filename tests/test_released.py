"""Released checkpoints in (longdna.models.released, longdna.hub, longdna.pretrained) and our models out (export).

Exactness is checked against the reference forward passes of tests/released_reference.py, written from the public
layouts' layer definitions, on random small checkpoints in the released file layouts (tests/released_fixtures.py)
served by a local stand-in for the Hugging Face Hub (tests/hub_server.py). Nothing contacts the internet.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import released_fixtures as fx
import released_reference as ref
import torch
from hub_server import LocalHub
from safetensors.torch import load_file

from longdna import vocab
from longdna.cli import main as cli_main
from longdna.models import build_model, load_pretrained, save_pretrained
from longdna.models.hyenadna import positional_features
from longdna.models.released import CHECKPOINT_FILES, export_released, read_released, read_state_dict
from longdna.models.released.tokens import checkpoint_vocabulary, token_map

REPO = Path(__file__).resolve().parents[1]
GENERATOR = torch.Generator().manual_seed(0)
TOKENS = torch.randint(vocab.A, vocab.N + 1, (2, 40), generator=GENERATOR)  # A C G T N only
TOKENS[0, :3] = torch.tensor([vocab.MASK, vocab.PAD, vocab.CLS])  # and some specials


def write(directory: Path, files: dict[str, bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return directory


def closed_form_tables_(model: ref.HyenaDNAForCausalLM) -> ref.HyenaDNAForCausalLM:
    """The reference with its stored positional tables replaced by our closed form (so that the two models share
    every input and must agree bit for bit)."""
    cfg = model.cfg
    z, t = positional_features(cfg["max_seq_len"], cfg["max_seq_len"], cfg["emb_dim"], torch.device("cpu"))
    with torch.no_grad():
        for layer in model.hyena.backbone.layers:
            layer.mixer.filter_fn.pos_emb.z.copy_(z[None])
            layer.mixer.filter_fn.pos_emb.t.copy_(t[None])
    return model


# -- HyenaDNA ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpoint-wrapped"])
def test_hyenadna_lightning_checkpoint_computes_the_public_forward(tmp_path: Path, checkpointing: bool) -> None:
    reference = closed_form_tables_(fx.hyenadna_reference(seed=1))
    released = read_released(write(tmp_path, fx.hyenadna_lightning_checkpoint(reference, checkpointing)))
    assert (released.layout, released.weights_file, released.training_length) == (
        "hyenadna-lightning",
        "weights.ckpt",
        64,
    )
    with torch.no_grad():
        assert torch.equal(released.model(TOKENS), reference(TOKENS)[..., : vocab.VOCAB_SIZE])
        assert torch.equal(released.model.embed(TOKENS), reference.embed(TOKENS))


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_hyenadna_hf_checkpoint_computes_the_public_forward(tmp_path: Path, weights: str) -> None:
    reference = closed_form_tables_(fx.hyenadna_reference(seed=2))
    released = read_released(write(tmp_path, fx.hyenadna_hf_checkpoint(reference, weights)))
    assert (released.layout, released.weights_file) == ("hyenadna-hf", weights)
    with torch.no_grad():
        assert torch.equal(released.model(TOKENS), reference(TOKENS)[..., : vocab.VOCAB_SIZE])


def test_hyenadna_stored_tables_differ_from_ours_by_rounding_only(tmp_path: Path) -> None:
    """The public code stores float32 linspace tables; ours is the closed form rounded once: the logits agree to
    float32 rounding amplified by the filter MLP's sines, no more."""
    reference = fx.hyenadna_reference(seed=3)
    model = read_released(write(tmp_path, fx.hyenadna_hf_checkpoint(reference))).model
    with torch.no_grad():
        torch.testing.assert_close(model(TOKENS), reference(TOKENS)[..., : vocab.VOCAB_SIZE], rtol=1e-4, atol=1e-4)


def test_hyenadna_checkpoint_problems_are_named(tmp_path: Path) -> None:
    reference = fx.hyenadna_reference(seed=4)
    files = fx.hyenadna_hf_checkpoint(reference, "pytorch_model.bin")
    state = torch.load(io.BytesIO(files["pytorch_model.bin"]), weights_only=True)

    def attempt(name: str, change) -> str:
        changed = dict(state)
        change(changed)
        directory = write(tmp_path / name, {**files, "pytorch_model.bin": fx._torch_bytes(changed)})
        with pytest.raises((KeyError, ValueError)) as error:
            read_released(directory)
        return str(error.value)

    key = "hyena.backbone.layers.0.mixer.in_proj.weight"
    assert key.removeprefix("hyena.") in attempt("missing", lambda s: s.pop(key))
    assert "has shape" in attempt("shape", lambda s: s.update({key: s[key][:-1]}))
    assert "no counterpart" in attempt("extra", lambda s: s.update({"hyena.backbone.extra.weight": torch.ones(1)}))
    assert "lm_head" in attempt("untied", lambda s: s.update({"lm_head.weight": s["lm_head.weight"] + 1}))
    z = "hyena.backbone.layers.1.mixer.filter_fn.pos_emb.z"
    assert "positional table" in attempt("trained-z", lambda s: s.update({z: s[z] + 0.1}))


# -- Caduceus ---------------------------------------------------------------------------------------------------
CADUCEUS_VARIANTS = [
    (rcps, fused, weights)
    for rcps in (True, False)
    for fused in (True, False)
    for weights in ("model.safetensors", "pytorch_model.bin")
    if fused or weights == "model.safetensors"
]


@pytest.mark.parametrize(
    ("rcps", "fused", "weights"),
    CADUCEUS_VARIANTS,
    ids=[f"{'ps' if r else 'ph'}-{'fused' if f else 'unfused'}-{w.split('.')[-1]}" for r, f, w in CADUCEUS_VARIANTS],
)
def test_caduceus_checkpoint_computes_the_public_forward(tmp_path: Path, rcps: bool, fused: bool, weights: str) -> None:
    reference = fx.caduceus_reference(fx.caduceus_config(rcps, fused), seed=5)
    released = read_released(write(tmp_path, fx.caduceus_checkpoint(reference, weights, model_max_length=131072)))
    assert (released.layout, released.training_length, released.model.config.rcps) == ("caduceus-hf", 131072, rcps)
    with torch.no_grad():
        torch.testing.assert_close(
            released.model(TOKENS), reference(TOKENS)[..., : vocab.VOCAB_SIZE], rtol=1e-5, atol=1e-5
        )


def test_caduceus_ps_fused_path_swaps_the_strand_halves(tmp_path: Path) -> None:
    """The same weights read without the fused path's strand handling compute something else: the conjugation
    in longdna.models.released.caduceus is what makes the loaded model exact."""
    config = fx.caduceus_config(rcps=True, fused=True)
    reference = fx.caduceus_reference(config, seed=6)
    files = fx.caduceus_checkpoint(reference)
    fused = read_released(write(tmp_path / "fused", files)).model
    unfused_files = {**files, "config.json": json.dumps({**config, "fused_add_norm": False}).encode()}
    unfused = read_released(write(tmp_path / "unfused", unfused_files)).model
    with torch.no_grad():
        assert (fused(TOKENS) - unfused(TOKENS)).abs().max() > 1e-2
        rc = vocab.reverse_complement(TOKENS)  # the loaded PS model is RC-equivariant
        complement = torch.as_tensor(vocab.COMPLEMENT)
        torch.testing.assert_close(fused(rc), fused(TOKENS).flip(1)[..., complement], rtol=1e-5, atol=1e-5)


def test_caduceus_with_another_tokenizer_maps_ids_by_name(tmp_path: Path) -> None:
    """The Caduceus repository's later tokenizer numbers 10 special tokens first (A=10): the ids are read from the
    checkpoint's tokenizer_config.json and the complement map checked against them."""
    their_ids = {
        **{token: i for i, token in fx.LATER_CADUCEUS_SPECIALS.items()},
        **{base: 10 + k for k, base in enumerate("ACGTN")},
    }
    complement = list(range(16))
    for a, b in (("A", "T"), ("C", "G")):
        complement[their_ids[a]], complement[their_ids[b]] = their_ids[b], their_ids[a]
    reference = fx.caduceus_reference(fx.caduceus_config(rcps=True, complement=complement), seed=7)
    files = fx.caduceus_checkpoint(reference, specials={v: k for k, v in their_ids.items() if k.startswith("[")})
    released = read_released(write(tmp_path, files))
    ids = [their_ids[token] for token in vocab.TOKENS]
    assert released.token_ids == ids
    with torch.no_grad():
        torch.testing.assert_close(
            released.model(TOKENS), reference(torch.tensor(ids)[TOKENS])[..., ids], rtol=1e-5, atol=1e-5
        )


def test_token_ids_are_read_from_the_tokenizer_config() -> None:
    assert token_map(checkpoint_vocabulary(None, "x"), "x") == list(range(12))
    released = fx.tokenizer_config(fx.RELEASED_SPECIALS, 1024)
    assert token_map(checkpoint_vocabulary(released, "x"), "x") == list(range(12))  # [RESERVED] at the gap: 5
    with pytest.raises(ValueError, match=r"x: the checkpoint's tokenizer has no \['\[MASK\]'\]"):
        token_map(
            checkpoint_vocabulary(
                fx.tokenizer_config({0: "[CLS]", 1: "[SEP]", 2: "[BOS]", 4: "[PAD]", 5: "[RESERVED]", 6: "[UNK]"}, 1),
                "x",
            ),
            "x",
        )


def test_caduceus_checkpoint_problems_are_named(tmp_path: Path) -> None:
    config = fx.caduceus_config(rcps=True, n_layer=2)
    reference = fx.caduceus_reference(config, seed=8)
    files = fx.caduceus_checkpoint(reference, "pytorch_model.bin")
    state = torch.load(io.BytesIO(files["pytorch_model.bin"]), weights_only=True)

    def attempt(name: str, change_state=None, change_config=None) -> str:
        changed_state, changed_config = dict(state), json.loads(files["config.json"])
        (change_state or (lambda s: None))(changed_state)
        (change_config or (lambda c: None))(changed_config)
        directory = write(
            tmp_path / name,
            {
                **files,
                "pytorch_model.bin": fx._torch_bytes(changed_state),
                "config.json": json.dumps(changed_config).encode(),
            },
        )
        with pytest.raises((KeyError, ValueError)) as error:
            read_released(directory)
        return str(error.value)

    rev = "caduceus.backbone.layers.1.mixer.submodule.mamba_rev.in_proj.weight"
    assert "are tied" in attempt("untied", lambda s: s.update({rev: s[rev] + 1}))
    assert "complement_map sends A" in attempt(
        "complement", change_config=lambda c: c["complement_map"].update({"7": 7})
    )
    assert "odd n_layer" in attempt("odd", change_config=lambda c: c.update({"n_layer": 3}))
    assert "rms_norm false" in attempt("layernorm", change_config=lambda c: c.update({"rms_norm": False}))
    assert "lm_head" in attempt("head", lambda s: s.update({"lm_head.lm_head.weight": s["lm_head.lm_head.weight"] * 2}))
    assert "lacks" in attempt("missing", lambda s: s.pop("caduceus.backbone.norm_f.weight"))


def test_pickled_checkpoints_run_no_code(tmp_path: Path) -> None:
    """A Lightning checkpoint names classes beside its tensors (hyper-parameters): they are read as inert
    stand-ins by the weights-only unpickler, never imported or called."""
    module = types.ModuleType("lightning_hparams")
    sys.modules["lightning_hparams"] = module

    class Hyper:  # an object a loader would have to import
        def __init__(self) -> None:
            self.lr = 1e-3

    class AttributeDict(dict):  # and a dict subclass
        pass

    for cls in (Hyper, AttributeDict):
        cls.__module__, cls.__qualname__ = "lightning_hparams", cls.__name__
        setattr(module, cls.__name__, cls)
    for name, hyper in (("object", Hyper()), ("dict", AttributeDict(lr=1e-3))):
        torch.save(
            {"state_dict": {"model.backbone.x": torch.ones(2)}, "hyper_parameters": hyper}, tmp_path / f"{name}.ckpt"
        )
    del sys.modules["lightning_hparams"]
    for name in ("object", "dict"):
        assert list(read_state_dict(tmp_path / f"{name}.ckpt")) == ["model.backbone.x"]


# -- released sizes ---------------------------------------------------------------------------------------------
#: (d_model, n_layer, d_inner, max_seq_len) of every released HyenaDNA and its published parameter count
HYENADNA_RELEASES = {
    "tiny-1k": (128, 2, 512, 1026, 436_096),
    "tiny-1k-d256": (256, 2, 1024, 1026, 1_641_088),
    "tiny-16k-d128": (128, 2, 512, 16386, 436_096),
    "small-32k": (256, 4, 1024, 32770, 3_277_568),
    "medium-160k": (256, 8, 1024, 160002, 6_550_528),
    "medium-450k": (256, 8, 1024, 450002, 6_550_528),
    "large-1m": (256, 8, 1024, 1000002, 6_550_528),
}
#: (rcps, d_model, n_layer, training length) of the released Caduceus and their published parameter counts
CADUCEUS_RELEASES = {
    "ps_seqlen-131k_d_model-256_n_layer-16": (True, 256, 16, 131072, 7_725_312),
    "ph_seqlen-131k_d_model-256_n_layer-16": (False, 256, 16, 131072, 7_725_312),
    "ps_seqlen-1k_d_model-256_n_layer-4_lr-8e-3": (True, 256, 4, 1024, 1_934_592),
    "ph_seqlen-1k_d_model-256_n_layer-4_lr-8e-3": (False, 256, 4, 1024, 1_934_592),
    "ps_seqlen-1k_d_model-118_n_layer-4_lr-8e-3": (True, 118, 4, 1024, 470_702),
    "ph_seqlen-1k_d_model-118_n_layer-4_lr-8e-3": (False, 118, 4, 1024, 470_702),
}


@pytest.mark.parametrize("name", list(HYENADNA_RELEASES))
def test_every_released_hyenadna_size_maps_to_its_published_shape(name: str) -> None:
    from longdna.models.released import hyenadna

    d_model, n_layer, d_inner, l_max, parameters = HYENADNA_RELEASES[name]
    hf = {
        "model_type": "hyenadna",
        "d_model": d_model,
        "n_layer": n_layer,
        "d_inner": d_inner,
        "max_seq_len": l_max,
        "emb_dim": 5,
        "filter_order": 64,
        "short_filter_order": 3,
        "hyena_order": 2,
        "num_inner_mlps": 2,
        "activation_freq": 10,
        "vocab_size": 12,
        "pad_vocab_size_multiple": 8,
    }
    lightning = {
        "d_model": d_model,
        "n_layer": n_layer,
        "d_inner": d_inner,
        "vocab_size": 12,
        "pad_vocab_size_multiple": 8,
        "residual_in_fp32": True,
        "checkpoint_mixer": name == "large-1m",
        "layer": {
            "_name_": "hyena",
            "emb_dim": 5,
            "filter_order": 64,
            "local_order": 3,
            "l_max": l_max,
            "modulate": True,
            "w": 10,
        },
    }
    configs = [hyenadna.released_config(raw, name) for raw in (hf, lightning)]
    for config in configs:
        assert (
            build_model(
                "hyenadna", **{k: getattr(config, k) for k in ("d_model", "n_layer", "d_inner", "l_max")}
            ).num_parameters()
            == parameters
        )
        assert hyenadna.training_length(config) == l_max - 2
    assert {k: v for k, v in vars(configs[0]).items() if k not in ("initializer_range", "residual_in_fp32")} == {
        k: v for k, v in vars(configs[1]).items() if k not in ("initializer_range", "residual_in_fp32")
    }


@pytest.mark.parametrize("name", list(CADUCEUS_RELEASES))
def test_every_released_caduceus_maps_to_its_published_shape(name: str) -> None:
    from longdna.models.released import caduceus

    rcps, d_model, n_layer, _, parameters = CADUCEUS_RELEASES[name]
    raw = {**fx.caduceus_config(rcps, d_model=d_model, n_layer=n_layer)}
    raw["ssm_cfg"] = {**raw["ssm_cfg"], "d_state": 16}
    config = caduceus.released_config(raw, name)
    assert (
        build_model(
            "caduceus", **{k: getattr(config, k) for k in ("d_model", "n_layer", "rcps", "d_state")}
        ).num_parameters()
        == parameters
    )


# -- export -----------------------------------------------------------------------------------------------------
def our_hyenadna() -> torch.nn.Module:
    torch.manual_seed(11)
    model = build_model("hyenadna", d_model=16, n_layer=2, d_inner=32, l_max=66, filter_order=16, embed_dropout=0.0)
    return ref.randomize_(model, torch.Generator().manual_seed(12))


def test_hyenadna_export_is_what_the_public_code_reads(tmp_path: Path) -> None:
    """weights.ckpt holds every tensor of the public model under model. (its loader looks each one up), and the
    public forward on them is ours; reading the export back gives our model again."""
    model = our_hyenadna()
    assert export_released(model, tmp_path, "hyenadna", training_length=64) == ["config.json", "weights.ckpt"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["layer"]["l_max"], config["layer"]["local_order"], config["d_inner"]) == (66, 3, 32)
    stored = torch.load(tmp_path / "weights.ckpt", weights_only=True)["state_dict"]
    reference = fx.hyenadna_reference(seed=0)  # random; every tensor is replaced below, as the public loader does
    public = {key: stored["model." + key.removeprefix("hyena.")] for key in reference.state_dict()}
    reference.load_state_dict(public, strict=True)
    with torch.no_grad():
        assert torch.equal(reference(TOKENS)[..., : vocab.VOCAB_SIZE], model(TOKENS))
        assert torch.equal(read_released(tmp_path).model(TOKENS), model(TOKENS))


def test_hyenadna_export_refuses_what_the_public_code_cannot_compute(tmp_path: Path) -> None:
    model = build_model("hyenadna", d_model=16, n_layer=1, short_filter_order=7)
    with pytest.raises(ValueError, match="short_filter_order=7, but the released code only computes 3"):
        export_released(model, tmp_path, "hyenadna", training_length=64)
    with pytest.raises(ValueError, match="--format caduceus needs a Caduceus model, not hyenadna"):
        export_released(model, tmp_path, "caduceus", training_length=64)


@pytest.mark.parametrize(("rcps", "n_layer"), [(True, 4), (True, 3), (False, 3)], ids=["ps-even", "ps-odd", "ph"])
def test_caduceus_export_is_what_caduceus_for_masked_lm_reads(tmp_path: Path, rcps: bool, n_layer: int) -> None:
    torch.manual_seed(13)
    model = ref.randomize_(
        build_model("caduceus", d_model=8, n_layer=n_layer, d_state=4, rcps=rcps), torch.Generator().manual_seed(14)
    )
    export_released(model, tmp_path, "caduceus", training_length=2048)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["fused_add_norm"] == (not (rcps and n_layer % 2))  # the released path where it can express it
    reference = ref.CaduceusForMaskedLM(config)
    reference.load_state_dict(load_file(tmp_path / "model.safetensors"), strict=True)
    with torch.no_grad():
        theirs = reference.eval()(TOKENS)[..., : vocab.VOCAB_SIZE]
        torch.testing.assert_close(theirs, model(TOKENS), rtol=1e-5, atol=1e-5)
        released = read_released(tmp_path)
        assert released.training_length == 2048
        assert torch.equal(released.model(TOKENS), model(TOKENS))


def test_a_released_caduceus_comes_back_unchanged_from_import_and_export(tmp_path: Path) -> None:
    """Import (strand-frame conjugation, id mapping) and export are inverses: every released tensor returns bit for
    bit (tied tensors the file stored once come back under both names)."""
    reference = fx.caduceus_reference(fx.caduceus_config(rcps=True, n_layer=4), seed=15)
    files = fx.caduceus_checkpoint(reference)
    released = read_released(write(tmp_path / "released", files))
    export_released(released.model, tmp_path / "out", "caduceus", training_length=released.training_length)
    original, exported = (
        load_file(tmp_path / "released" / "model.safetensors"),
        load_file(tmp_path / "out" / "model.safetensors"),
    )
    assert set(original) < set(exported)
    assert all(torch.equal(original[key], exported[key]) for key in original)


def test_export_command_takes_pretraining_outputs_and_finetuned_runs(tmp_path: Path, capsys) -> None:
    from longdna.data.benchmarks.format import BenchmarkInfo
    from longdna.models import SequenceClassifier
    from longdna.settings import FinetuneConfig
    from longdna.train.finetuned import save_finetuned

    model = our_hyenadna()
    save_pretrained(model, tmp_path / "pretrained", pretrain={"objective": "causal", "config": {"seq_len": 64}})
    assert cli_main(["export", str(tmp_path / "pretrained"), str(tmp_path / "out"), "--format", "hyenadna"]) == 0
    with torch.no_grad():
        assert torch.equal(read_released(tmp_path / "out").model(TOKENS), model(TOKENS))

    classifier = SequenceClassifier(model, 3)
    info = BenchmarkInfo(name="toy", task="classification", num_outputs=3, metric="accuracy")
    save_finetuned(
        classifier,
        tmp_path / "run",
        info,
        FinetuneConfig(),
        train_length=40,
        target_shift=torch.zeros(3).numpy(),
        target_scale=torch.ones(3).numpy(),
    )
    assert cli_main(["export", str(tmp_path / "run"), str(tmp_path / "out2"), "--format", "hyenadna"]) == 0
    assert "without its 3-output head" in capsys.readouterr().out
    with torch.no_grad():
        assert torch.equal(read_released(tmp_path / "out2").model(TOKENS), model(TOKENS))
    assert cli_main(["export", str(tmp_path / "run"), str(tmp_path / "out3"), "--format", "caduceus"]) == 1
    assert "needs a Caduceus model" in capsys.readouterr().err


# -- the Hub ----------------------------------------------------------------------------------------------------
def hub_env(hub: LocalHub, home: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(home),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        **extra,
    }


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """huggingface_hub reads its environment variables when imported: each configuration runs in its process."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)


def test_fetch_resolves_and_records_the_revision_and_honours_the_hub_environment(tmp_path: Path) -> None:
    code = (
        "import json; from longdna.hub import fetch\n"  # no torch: a fast process
        f"path, record = fetch({{spec!r}}, {CHECKPOINT_FILES!r})\n"
        "print(json.dumps({{'path': str(path), **record}}))"
    )
    reference = fx.caduceus_reference(fx.caduceus_config(rcps=True), seed=20)
    files = fx.caduceus_checkpoint(reference)
    with LocalHub() as hub:
        pinned = hub.commit("kuleshov-group/caduceus-ps_seqlen-1k", {**files, "README.md": b"card"}, tags=("v1",))
        latest = hub.commit(
            "kuleshov-group/caduceus-ps_seqlen-1k", {**files, "config.json": files["config.json"] + b" "}
        )
        env = hub_env(hub, tmp_path / "hf")

        def fetch(spec: str, env: dict[str, str] = env) -> dict:
            result = run_python(code.format(spec=spec), env)
            assert result.returncode == 0, result.stderr
            return json.loads(result.stdout)

        record = fetch("hf:kuleshov-group/caduceus-ps_seqlen-1k@v1")
        assert (record["commit"], record["revision"], record["endpoint"]) == (pinned, "v1", hub.url)
        assert sorted(os.listdir(record["path"])) == ["config.json", "model.safetensors", "tokenizer_config.json"]
        assert Path(record["path"]).is_relative_to(tmp_path / "hf" / "hub")  # HF_HOME's cache
        assert (
            record["files"]["model.safetensors"] == __import__("hashlib").sha256(files["model.safetensors"]).hexdigest()
        )
        assert fetch("hf:kuleshov-group/caduceus-ps_seqlen-1k")["commit"] == latest
        assert fetch(f"hf:kuleshov-group/caduceus-ps_seqlen-1k@{pinned}")["commit"] == pinned
        assert ("GET", f"/lfs/{__import__('hashlib').sha256(files['model.safetensors']).hexdigest()}") in hub.requests

        served = len(hub.requests)  # offline: from the cache, and the Hub is never asked
        offline = fetch("hf:kuleshov-group/caduceus-ps_seqlen-1k@v1", {**env, "HF_HUB_OFFLINE": "1"})
        assert offline["commit"] == pinned and len(hub.requests) == served

        for spec, message in (
            ("hf:kuleshov-group/nope", "no such model repository"),
            ("hf:kuleshov-group/caduceus-ps_seqlen-1k@v9", "has no revision 'v9'"),
        ):
            result = run_python(code.format(spec=spec), env)
            assert result.returncode != 0 and message in result.stderr
        result = run_python(code.format(spec="hf:kuleshov-group/other@v1"), {**env, "HF_HUB_OFFLINE": "1"})
        assert result.returncode != 0 and "not in the Hugging Face cache" in result.stderr


def test_import_writes_our_checkpoint_with_its_provenance(tmp_path: Path) -> None:
    reference = fx.caduceus_reference(fx.caduceus_config(rcps=True), seed=21)
    out = tmp_path / "out"
    code = (
        "from longdna.pretrained import import_pretrained\n"
        "for arch, preset in (('caduceus', 'caduceus-ps-1k-d118'), ('hyenadna', None), ('caduceus', None)):\n"
        "    try:\n"
        f"        import_pretrained('hf:kuleshov-group/caduceus-ps_seqlen-1k@v1', {str(out)!r}, arch=arch,"
        " preset=preset, model='cad')\n"
        "        print('imported')\n"
        "    except ValueError as err:\n"
        "        print(err)\n"
    )
    with LocalHub() as hub:
        commit = hub.commit("kuleshov-group/caduceus-ps_seqlen-1k", fx.caduceus_checkpoint(reference), tags=("v1",))
        result = run_python(code, hub_env(hub, tmp_path / "hf"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "models.cad.preset: 'caduceus-ps-1k-d118' is {'d_model': 118, 'n_layer': 4, 'rcps': True},"
        " but hf:kuleshov-group/caduceus-ps_seqlen-1k@v1 has {'d_model': 8, 'n_layer': 4, 'rcps': True}",
        "models.cad.arch: 'hyenadna', but hf:kuleshov-group/caduceus-ps_seqlen-1k@v1 is a caduceus checkpoint",
        "imported",
    ]
    meta = json.loads((out / "config.json").read_text())
    assert meta["arch"] == "caduceus" and meta["pretrain"] == {"objective": "masked", "config": {"seq_len": 1024}}
    assert meta["released"]["commit"] == commit and meta["released"]["layout"] == "caduceus-hf"
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors", "tokenizer.json"]
    with torch.no_grad():
        torch.testing.assert_close(
            load_pretrained(out)(TOKENS), reference(TOKENS)[..., : vocab.VOCAB_SIZE], rtol=1e-5, atol=1e-5
        )


def test_a_local_checkpoint_is_imported_and_scored_like_a_pretraining_run(tmp_path: Path) -> None:
    """A local directory as ``pretrained``: imported with its path and checksums, then scored on the test split
    (summary.json, metrics.jsonl) with exactly the public model's next-token loss."""
    import torch.nn.functional as F

    from longdna.data.genome.demo import DemoGenomeSpec, generate_demo_genome
    from longdna.data.tokens.shards import GenomeShards, split_regions, tokenize_chromosome, write_manifest
    from longdna.data.tokens.windows import SequentialWindows
    from longdna.pretrained import import_pretrained, score_pretrained
    from longdna.settings import PretrainConfig

    spec = DemoGenomeSpec(
        chromosome_lengths=(30_000, 20_000, 20_000),
        telomere_gap=1_000,
        centromere_gap=2_000,
        short_gaps=0,
        isochore_mean_length=10_000,
    )
    generate_demo_genome(tmp_path / "genome.fa.gz", spec)
    lengths = {
        c: tokenize_chromosome(tmp_path / "genome.fa.gz", c, tmp_path / "shards")["length"]
        for c in spec.chromosome_names
    }
    write_manifest(tmp_path / "shards", spec.chromosome_names, split_regions(lengths, valid=["chr2"], test=["chr3"]))
    reference = closed_form_tables_(fx.hyenadna_reference(seed=40, max_seq_len=130))
    release = write(tmp_path / "release", fx.hyenadna_lightning_checkpoint(reference))
    record = import_pretrained(str(release), tmp_path / "model", arch="hyenadna", model="local")
    assert record["path"] == str(release.resolve()) and set(record["files"]) == {"config.json", "weights.ckpt"}
    config = PretrainConfig.from_dict({"seq_len": 64, "eval_lengths": [64, 128], "eval_windows": 3, "batch_size": 2})
    summary = score_pretrained(tmp_path / "model", tmp_path / "shards", config)
    windows = SequentialWindows(GenomeShards(tmp_path / "shards"), "test", 65, max_windows=3)
    tokens = torch.stack([windows[i] for i in range(len(windows))])
    targets = tokens[:, 1:].masked_fill(torch.isin(tokens[:, 1:], torch.tensor([vocab.N, vocab.PAD])), -100)
    with torch.no_grad():
        loss = F.cross_entropy(
            reference(tokens[:, :-1])[..., : vocab.VOCAB_SIZE].reshape(-1, vocab.VOCAB_SIZE), targets.reshape(-1)
        )
    assert summary["test_by_length"]["64"]["loss"] == pytest.approx(loss.item(), rel=1e-6)
    rows = [json.loads(line) for line in (tmp_path / "model" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"], r.get("seq_len")) for r in rows] == [
        ("valid", 0, None),
        ("test", 0, 64),
        ("test", 0, 128),
    ]
    assert json.loads((tmp_path / "model" / "summary.json").read_text())["released"] == str(release)


# -- the workflow -----------------------------------------------------------------------------------------------
def released_config(workdir: Path, hyena_spec: str, caduceus_spec: str) -> Path:
    """tests/data/ci_config.yaml with two released backbones instead of pretraining, fine-tuned on the motif task
    (from their weights and, for HyenaDNA, from scratch in the same architecture)."""
    import yaml
    from conftest import CI_CONFIG

    config = yaml.safe_load(CI_CONFIG.read_text())
    config["models"] = {
        "hyena_released": {"arch": "hyenadna", "pretrained": hyena_spec},
        "caduceus_released": {"arch": "caduceus", "pretrained": caduceus_spec},
    }
    config["pretrain"]["eval_lengths"] = [256, 512]
    config["benchmarks"] = {"motif": {"suite": "demo", "task": "motif", "n_train": 48, "n_test": 32}}
    config["finetune"] = {
        "seeds": [1],
        "settings": {"epochs": 1, "batch_size": 16, "lr": 0.003},
        "models": {
            "hyena": {"backbone": "hyena_released"},
            "hyena_scratch": {"backbone": "hyena_released", "settings": {"init": "scratch"}},
        },
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_dry_run_plans_fetches_and_names_bad_sources(tmp_path: Path) -> None:
    from conftest import snakemake
    from test_workflow import job_counts

    config = released_config(tmp_path, "hf:LongSafari/hyenadna-tiny-1k-seqlen-hf@v1", str(tmp_path))
    counts = job_counts(snakemake(tmp_path, "-n", configfile=config).stdout)
    assert counts["fetch_pretrained"] == 2 and counts["test_pretrained"] == 2 and "pretrain_model" not in counts
    assert counts["finetune_model"] == 2
    bad = config.read_text().replace("hf:LongSafari/hyenadna-tiny-1k-seqlen-hf@v1", "hf:hyenadna-tiny-1k@")
    (tmp_path / "bad.yaml").write_text(bad.replace(str(tmp_path), str(tmp_path / "missing")))
    result = snakemake(tmp_path, "-n", configfile=tmp_path / "bad.yaml", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "config error at models.hyena_released.pretrained: 'hf:hyenadna-tiny-1k@': expected hf:OWNER/NAME" in output
    assert f"config error at models.caduceus_released.pretrained: '{tmp_path / 'missing'}' is neither" in output


@pytest.mark.slow
def test_workflow_fine_tunes_released_checkpoints_from_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci_workflow: Path
) -> None:
    import shutil

    from conftest import snakemake

    for stage in ("genome", "tokens"):  # the CI workflow's genome and shards: the same config entries
        shutil.copytree(ci_workflow / "results" / stage, tmp_path / "results" / stage)

    hyena = fx.hyenadna_reference(seed=31, d_model=32, n_layer=2, max_seq_len=258)
    caduceus = fx.caduceus_reference(fx.caduceus_config(rcps=True, n_layer=2, d_model=16), seed=32)
    config = released_config(
        tmp_path, "hf:LongSafari/hyenadna-tiny-fixture-seqlen-hf@v1", "hf:kuleshov-group/caduceus-ps_seqlen-1k_fixture"
    )
    for key, value in {
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }.items():
        monkeypatch.setenv(key, value)
    with LocalHub() as hub:
        pinned = hub.commit(
            "LongSafari/hyenadna-tiny-fixture-seqlen-hf", fx.hyenadna_hf_checkpoint(hyena), tags=("v1",)
        )
        hub.commit("LongSafari/hyenadna-tiny-fixture-seqlen-hf", {"config.json": b"{}"})  # main moved on: not used
        hub.commit(
            "kuleshov-group/caduceus-ps_seqlen-1k_fixture", fx.caduceus_checkpoint(caduceus, model_max_length=256)
        )
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        result = snakemake(tmp_path, configfile=config)
    jobs = result.stdout + result.stderr
    assert "rule fetch_pretrained" in jobs and "rule prepare_genome" not in jobs
    pretrain = tmp_path / "results" / "pretrain"
    meta = json.loads((pretrain / "hyena_released" / "config.json").read_text())
    assert (meta["released"]["commit"], meta["released"]["revision"]) == (pinned, "v1")
    assert meta["pretrain"]["config"]["seq_len"] == 256  # max_seq_len 258 - 2
    summary = json.loads((pretrain / "caduceus_released" / "summary.json").read_text())
    assert summary["objective"] == "masked" and set(summary["test_by_length"]) == {"256", "512"}
    with torch.no_grad():
        torch.testing.assert_close(
            load_pretrained(pretrain / "hyena_released")(TOKENS),
            hyena(TOKENS)[..., : vocab.VOCAB_SIZE],
            rtol=1e-4,
            atol=1e-4,
        )
    runs = {
        m: json.loads((tmp_path / f"results/finetune/motif/{m}/seed1/metrics.json").read_text())
        for m in ("hyena", "hyena_scratch")
    }
    assert (
        runs["hyena"]["num_parameters"]
        == runs["hyena_scratch"]["num_parameters"]
        == load_pretrained(pretrain / "hyena_released").num_parameters()
    )
    assert "hyena_scratch" in (tmp_path / "results/evaluation/table.md").read_text()
    assert "Nothing to be done" in snakemake(tmp_path, "-n", configfile=config).stdout
    # the Hub is gone: offline, a forced refetch is served by huggingface_hub's cache, same commit
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snakemake(
        tmp_path, "results/pretrain/hyena_released/config.json", "--forcerun", "fetch_pretrained", configfile=config
    )
    assert json.loads((pretrain / "hyena_released" / "config.json").read_text())["released"]["commit"] == pinned
