"""Embedding without Ray: model resolution (offline), preprocessing, the CPU stage, inputs, plans."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

torch = pytest.importorskip("torch", reason="the embed extra (torch, open-clip-torch) is not installed")
open_clip = pytest.importorskip("open_clip", reason="the embed extra (open-clip-torch) is not installed")

from PIL import Image  # noqa: E402
from sklearn.datasets import load_sample_image  # noqa: E402

from raymap.embed import (  # noqa: E402
    MissingWeightsError,
    OpenClipEmbedder,
    batch_rows,
    image_uuid,
    plan_inference,
    read_input,
    resolve_model,
)
from raymap.embed.images import ERROR, PIXELS, THUMBNAIL, geometric_transform, prepare_images  # noqa: E402
from raymap.embed.pipeline import PREPROCESS_CPUS  # noqa: E402

ARCH, SIZE = "ViT-S-32", 64  # smallest open_clip ViT, at 64 px: ~1 s to build, milliseconds per image


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "china.jpg"
    Image.fromarray(load_sample_image("china.jpg")).save(path)
    return path


def _write_config(folder: Path) -> None:
    """open_clip_config.json of a ViT-S-32 at 64 px with its own normalisation, as a hub snapshot holds."""
    cfg = open_clip.get_model_config(ARCH)
    cfg["vision_cfg"]["image_size"] = SIZE
    config = {"model_cfg": cfg, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(config))


def _save_tiny_model(folder: Path, seed: int) -> tuple[Path, torch.nn.Module]:
    """A real open_clip checkpoint + config from a seeded random ViT-S-32 at 64 px."""
    torch.manual_seed(seed)
    model = open_clip.create_model(ARCH, force_image_size=SIZE)
    _write_config(folder)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder / "open_clip_pytorch_model.bin", model.eval()


def _reference_embedding(model, image: Image.Image, preprocess_cfg: dict) -> np.ndarray:
    from open_clip.transform import PreprocessCfg, image_transform_v2

    x = image_transform_v2(PreprocessCfg(**preprocess_cfg), is_train=False)(image)[None]
    with torch.inference_mode():
        return torch.nn.functional.normalize(model.encode_image(x), dim=-1).numpy()


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown model 'ViT-Nope-1'.*ViT-B-32"):
        resolve_model("ViT-Nope-1")


@pytest.mark.parametrize(
    ("name", "pretrained", "match"),
    [
        ("ViT-B-32", "openai", r"ViT-B-32 \(openai\).*not in"),
        ("ViT-B-32", "/no/such/weights.pt", "neither a file nor an open_clip tag"),
        ("bioclip", None, r"hf-hub:imageomics/bioclip\).*not in"),
        ("hf-hub:someone/missing", None, "nothing is downloaded at run time"),
    ],
)
def test_missing_weights_are_a_clear_error(tmp_path: Path, name: str, pretrained: str | None, match: str):
    with pytest.raises(MissingWeightsError, match=match):
        resolve_model(name, pretrained, cache_dir=tmp_path)


def test_model_folder_without_weights_is_refused(tmp_path: Path):
    _write_config(tmp_path)
    with pytest.raises(MissingWeightsError, match="has no weights"):
        resolve_model(f"local-dir:{tmp_path}")
    with pytest.raises(ValueError, match="image_size"):
        resolve_model(ARCH, image_size=0)


def test_weights_load_offline_from_a_file_and_from_the_hub_cache(tmp_path: Path, photo: Path):
    """A checkpoint file, and BioCLIP's hub name served from a (hand-laid) Hugging Face cache, load for real."""
    weights, model = _save_tiny_model(tmp_path / "export", seed=7)
    image = Image.open(photo).convert("RGB")

    spec = resolve_model(ARCH, str(weights), image_size=SIZE)
    assert spec.checkpoint == str(weights) and spec.dim == 384 and spec.input_hw == (SIZE, SIZE)
    embedder = OpenClipEmbedder(spec, seed=0)  # another seed: only loaded weights can reproduce the reference
    pixels = np.asarray(geometric_transform(spec.preprocess)(image))[None]
    np.testing.assert_allclose(embedder.embed(pixels), _reference_embedding(model, image, spec.preprocess), atol=1e-5)

    repo = tmp_path / "hub" / "models--imageomics--bioclip"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    _save_tiny_model(repo / "snapshots" / ("0" * 40), seed=7)
    spec = resolve_model("bioclip", cache_dir=tmp_path / "hub")
    assert spec.arch.startswith("local-dir:") and spec.preprocess["mean"] == [0.5] * 3
    assert spec.describe()["model"] == "bioclip" and spec.weights == "hf-hub:imageomics/bioclip@" + "0" * 40
    pixels = np.asarray(geometric_transform(spec.preprocess)(image))[None]
    got = OpenClipEmbedder(spec, seed=0).embed(pixels)
    np.testing.assert_allclose(got, _reference_embedding(model, image, spec.preprocess), atol=1e-5)


@pytest.mark.parametrize(
    "cfg",
    [
        {"size": SIZE},
        {"size": (48, 64)},
        {"size": (64, 40)},
        {"size": SIZE, "interpolation": "bilinear"},
        {"size": (48, 64), "resize_mode": "squash"},
        {"size": SIZE, "resize_mode": "longest", "fill_color": 128},
        {"size": (48, 64), "resize_mode": "longest"},
    ],
)
def test_pillow_preprocessing_is_open_clips_pixel_for_pixel(photo: Path, cfg: dict):
    """The torch-free resize/crop of the CPU workers == open_clip's eval transform before ToTensor."""
    from dataclasses import asdict

    from open_clip.transform import PreprocessCfg, image_transform_v2
    from torchvision.transforms import Compose

    full = PreprocessCfg(**cfg)
    reference = Compose(image_transform_v2(full, is_train=False).transforms[:-2])
    ours = geometric_transform(asdict(full))
    image = Image.open(photo).convert("RGB")
    for img in (image, image.crop((0, 0, 150, 300)), image.crop((10, 10, 41, 40)), image.resize(full.input_size[1:])):
        np.testing.assert_array_equal(np.asarray(ours(img)), np.asarray(reference(img)))


def test_split_preprocessing_equals_open_clips_transform(photo: Path):
    """uint8 resize/crop on the CPU worker + normalise on the device == open_clip's own eval transform."""
    spec = resolve_model(ARCH, image_size=SIZE)
    embedder = OpenClipEmbedder(spec)
    _, _, full = open_clip.create_model_and_transforms(ARCH, force_image_size=SIZE)
    image = Image.open(photo).convert("RGB")
    pixels = np.asarray(geometric_transform(spec.preprocess)(image))
    assert pixels.dtype == np.uint8 and pixels.shape == (SIZE, SIZE, 3)
    np.testing.assert_allclose(embedder.to_input(pixels[None])[0].numpy(), full(image).numpy(), atol=1e-5)
    out = embedder.embed(np.stack([pixels, pixels[::-1]]))
    assert out.shape == (2, 384) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="expected"):
        embedder.embed(pixels)


def test_prepare_images_keeps_bad_files_as_reported_rows(tmp_path: Path, photo: Path):
    (tmp_path / "notes.txt").write_text("not an image")
    data = photo.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 3])
    paths = [str(photo), str(tmp_path / "notes.txt"), str(tmp_path / "truncated.jpg"), str(tmp_path / "gone.png"), None]
    batch = pa.table({"identifier": [f"id{i}" for i in range(5)], "_path": pa.array(paths, pa.string())})
    spec = resolve_model(ARCH, image_size=SIZE)
    out = prepare_images(batch, spec.preprocess, thumbnail_size=32)
    errors = out.column(ERROR).to_pylist()
    assert errors[0] is None
    assert "UnidentifiedImageError" in errors[1]
    assert "truncated" in errors[2]
    assert "FileNotFoundError" in errors[3]
    assert "remote" in errors[4]
    pixels = out.column(PIXELS).combine_chunks().to_numpy_ndarray()
    assert pixels.shape == (5, SIZE, SIZE, 3) and pixels[0].any() and not pixels[1:].any()
    thumb = Image.open(io.BytesIO(out.column(THUMBNAIL)[0].as_py()))
    assert thumb.format == "JPEG" and max(thumb.size) == 32
    assert out.column("identifier").to_pylist() == batch.column("identifier").to_pylist()


def test_read_input_folder_and_manifest(tmp_path: Path, photo: Path):
    folder = tmp_path / "collection"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.jpg").write_bytes(photo.read_bytes())
    (folder / "b.jpg").write_bytes(photo.read_bytes())
    (folder / ".hidden").write_text("x")
    table = read_input(folder)
    assert table.num_rows == 2
    ident = table.column("identifier").to_pylist()
    assert ident == [(folder / "b.jpg").resolve().as_uri(), (folder / "sub" / "a.jpg").resolve().as_uri()]
    assert table.column("uuid").to_pylist() == [str(uuid.uuid5(uuid.NAMESPACE_URL, i)) for i in ident]
    assert table.column("folder").to_pylist() == [".", "sub"] and set(table.column("source_dataset").to_pylist()) == {
        "collection"
    }

    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "identifier,genus,uuid\n"
        "collection/b.jpg,Felis,\n"
        f"{(folder / 'sub' / 'a.jpg').as_uri()},Canis,u-given\n"
        "collection/b.jpg,Felis,\n"
        "https://example.invalid/c.jpg,Ursus,\n"
    )
    table = read_input(manifest)
    assert table.num_rows == 3  # the repeated identifier is embedded once
    assert table.column("uuid").to_pylist() == [
        image_uuid("collection/b.jpg"),
        "u-given",
        image_uuid("https://example.invalid/c.jpg"),
    ]
    assert table.column("_path").to_pylist() == [str((folder / "b.jpg").resolve()), str(folder / "sub" / "a.jpg"), None]
    assert table.column("genus").to_pylist() == ["Felis", "Canis", "Ursus"]
    assert table.column("source_dataset").to_pylist() == ["m"] * 3


@pytest.mark.parametrize(
    ("content", "name", "error", "match"),
    [
        (None, "empty", ValueError, "empty folder"),
        ("path,genus\na.jpg,Felis\n", "m.csv", ValueError, r"no 'identifier' column; columns: \['path', 'genus'\]"),
        ("identifier,emb\na.jpg,1\n", "m.csv", ValueError, "reserved"),
        ("identifier,genus\n", "m.csv", ValueError, "no rows"),
        ("x", "m.json", ValueError, "expected an image folder or a manifest"),
    ],
)
def test_bad_inputs_are_clear_errors(tmp_path: Path, content: str | None, name: str, error: type, match: str):
    path = tmp_path / name
    if content is None:
        path.mkdir()
    else:
        path.write_text(content)
    with pytest.raises(error, match=match):
        read_input(path)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_input(tmp_path / "nothing-here")


def test_inference_plan_and_batch_size_follow_the_cluster_and_memory():
    cpu = plan_inference(total_cpus=2, node_cpus=2, n_gpus=0)
    assert (cpu.device, cpu.n_actors, cpu.num_gpus, cpu.threads) == ("cpu", 1, 0.0, 2)
    assert cpu.num_cpus + PREPROCESS_CPUS <= 2 and cpu.num_cpus != PREPROCESS_CPUS  # no deadlock, no fusion
    gpu = plan_inference(total_cpus=32, node_cpus=16, n_gpus=4)
    assert (gpu.device, gpu.n_actors, gpu.num_gpus) == ("cuda", 4, 1.0)
    spec = resolve_model("ViT-B-32")
    small, large = batch_rows(spec, "64MiB", "cpu"), batch_rows(spec, "1GiB", "cpu")
    assert 1 <= small < large <= 1024 and large & (large - 1) == 0
    assert batch_rows(spec, "1GiB", "cuda") >= large  # fp16 activations are half the bytes
    assert large * spec.bytes_per_image() <= 2**30
    assert batch_rows(spec, 1, "cpu") == 1
