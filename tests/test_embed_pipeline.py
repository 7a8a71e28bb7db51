"""Embedding on a real local Ray: real images, real torch, a random-weight open_clip ViT; resume; embed -> map."""

from __future__ import annotations

import io
import json
import runpy
import sys
import uuid
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

pytest.importorskip("open_clip", reason="the embed extra (torch, open-clip-torch) is not installed")

from PIL import Image
from sklearn.datasets import load_digits, load_sample_images

from raymap.embed import embed, read_model_metadata, read_summary

pytestmark = pytest.mark.ray
MODEL = {"model": "ViT-S-32", "image_size": 64, "thumbnail_size": 48}  # small and fast; random weights
BUDGET = "8MiB"  # a handful of images per batch, so several batches flow through the pool
N_DIGITS = 10
JOB = Path(__file__).resolve().parent.parent / "jobs" / "embed.py"


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's two sample photos and ten digits as files, plus three files that are not images."""
    root = tmp_path_factory.mktemp("embed") / "collection"
    (root / "photos").mkdir(parents=True)
    (root / "digits").mkdir()
    samples = load_sample_images()
    for name, pixels in zip(samples.filenames, samples.images, strict=True):
        Image.fromarray(pixels).save(root / "photos" / Path(name).name)
    digits = load_digits().images
    for i in range(N_DIGITS):
        img = Image.fromarray((digits[i] / 16 * 255).astype(np.uint8)).resize((32, 32), Image.Resampling.NEAREST)
        img.save(root / "digits" / f"digit{i}.png")
    (root / "README.txt").write_text("not an image")
    (root / "digits" / "empty.png").write_bytes(b"")
    data = (root / "photos" / "china.jpg").read_bytes()
    (root / "photos" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    return root


def _table(parquet: Path):
    return ds.dataset(parquet, format="parquet", partitioning="hive").to_table()


def _by_uuid(parquet: Path) -> dict[str, np.ndarray]:
    t = _table(parquet)
    return dict(
        zip(t.column("uuid").to_pylist(), np.stack(t.column("emb").to_numpy(zero_copy_only=False)), strict=True)
    )


def _embed_actors() -> list[str]:
    from ray._private import state

    return [
        a["ActorClassName"]
        for a in state.actors().values()
        if a["State"] != "DEAD" and "ImageEmbedActor" in a["ActorClassName"]
    ]


@pytest.fixture(scope="module")
def folder_run(ray_cluster, image_folder: Path, tmp_path_factory: pytest.TempPathFactory):
    return embed(image_folder, tmp_path_factory.mktemp("out") / "folder", memory_budget=BUDGET, **MODEL)


def test_folder_embeds_images_and_reports_bad_files(folder_run, image_folder: Path):
    import h5py

    r = folder_run
    assert (r.n_embedded, r.n_skipped, r.n_already) == (N_DIGITS + 2, 3, 0)
    reasons = dict(r.skipped)
    assert set(reasons) == {
        (image_folder / p).resolve().as_uri() for p in ("README.txt", "digits/empty.png", "photos/truncated.jpg")
    }
    assert "truncated" in reasons[(image_folder / "photos" / "truncated.jpg").resolve().as_uri()]

    t = _table(r.parquet)
    assert t.num_rows == N_DIGITS + 2
    assert str(t.schema.field("emb").type) == "fixed_size_list<element: float>[384]"
    emb = np.stack(t.column("emb").to_numpy(zero_copy_only=False))
    assert emb.dtype == np.float32 and emb.shape == (N_DIGITS + 2, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    assert len(np.unique(emb.round(4), axis=0)) == N_DIGITS + 2  # distinct images, distinct embeddings
    ident = t.column("identifier").to_pylist()
    assert t.column("uuid").to_pylist() == [str(uuid.uuid5(uuid.NAMESPACE_URL, i)) for i in ident]
    assert sorted(set(t.column("folder").to_pylist())) == ["digits", "photos"]
    assert sorted(p.name for p in r.parquet.iterdir()) == ["source_dataset=collection"]

    model = read_model_metadata(r.parquet)
    assert model["model"] == "ViT-S-32" and model["image_size"] == [64, 64] and model["normalized"] == "l2"
    assert model["preprocess"]["resize_mode"] == "shortest" and model["weights"].startswith("random")
    sidecar = json.loads((r.root / "embed.json").read_text())
    assert sidecar["model"] == model and sidecar["n_rows"] == N_DIGITS + 2
    run = sidecar["runs"][-1]
    assert run["skipped"] == 3 and run["device"] == "cpu" and run["actors"] == 1
    assert 0 < run["actor_busy_s"] <= run["actor_alive_s"] and 0 < run["actor_busy_share"] <= 1
    assert "_actor" not in t.column_names  # timing columns stay out of the dataset

    with h5py.File(r.images_h5) as h5:
        assert sorted(h5) == sorted(t.column("uuid").to_pylist())
        first = t.column("uuid")[0].as_py()
        thumb = Image.open(io.BytesIO(h5[first][()].tobytes()))
        assert thumb.format == "JPEG" and max(thumb.size) <= 48
    assert _embed_actors() == []  # the model pool lived only while the images flowed


def test_manifest_carries_metadata_resumes_and_is_deterministic(
    folder_run, image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    rows = ["identifier,family,genus,img_type,source_dataset"]
    rows += [
        f"collection/digits/digit{i}.png,Digit,{'even' if i % 2 == 0 else 'odd'},drawing,digits"
        for i in range(N_DIGITS)
    ]
    rows += [f"collection/photos/{n},Photo,{n[:-4]},photo,sklearn" for n in ("china.jpg", "flower.jpg")]
    half = image_folder.parent / "half.csv"
    half.write_text("\n".join(rows[:7]) + "\n")
    full = image_folder.parent / "full.csv"
    full.write_text("\n".join(rows) + "\n")
    out = tmp_path / "manifest"

    first = embed(half, out, memory_budget=BUDGET, **MODEL)
    assert (first.n_embedded, first.n_already) == (6, 0)
    second = embed(full, out, memory_budget=BUDGET, **MODEL)
    assert (second.n_embedded, second.n_already, second.n_skipped) == (N_DIGITS + 2 - 6, 6, 0)
    t = _table(first.parquet)
    assert t.num_rows == N_DIGITS + 2 and len(set(t.column("uuid").to_pylist())) == N_DIGITS + 2
    assert sorted(p.relative_to(out / "embeddings").parts[:2] for p in (out / "embeddings").rglob("*.parquet"))[0] == (
        "source_dataset=digits",
        "img_type=drawing",
    )
    by_genus = dict(zip(t.column("identifier").to_pylist(), t.column("genus").to_pylist(), strict=True))
    assert by_genus["collection/digits/digit3.png"] == "odd" and by_genus["collection/photos/china.jpg"] == "china"

    # The same pixels give the same embedding in another run, batch and input form (folder vs manifest).
    from raymap.embed import image_uuid

    folder_emb, manifest_emb = _by_uuid(folder_run.parquet), _by_uuid(first.parquet)
    for i in range(N_DIGITS):
        a = folder_emb[image_uuid((image_folder / "digits" / f"digit{i}.png").resolve().as_uri())]
        np.testing.assert_allclose(manifest_emb[image_uuid(f"collection/digits/digit{i}.png")], a, atol=1e-5)

    from raymap.cli import main

    assert main(["embed", str(full), "--out", str(out), "--model", "ViT-S-32", "--image-size", "64"]) == 0
    assert read_summary(out)["runs"][-1]["already_embedded"] == N_DIGITS + 2
    argv = [str(JOB), str(full), "--out", str(out), "--model", "ViT-S-32", "--image-size", "64"]
    monkeypatch.setattr(sys, "argv", argv)
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:  # the job entry point as `ray job submit` runs it; nothing left to embed
        runpy.run_path(str(JOB), run_name="__main__")
    assert done.value.code == 0
    assert json.loads(capsys.readouterr().out)["already_embedded"] == N_DIGITS + 2
    with pytest.raises(ValueError, match="another model"):
        embed(full, out, model="ViT-S-32", image_size=96)
    assert main(["embed", str(tmp_path / "missing"), "--out", str(out)]) == 2
    capsys.readouterr()
    assert main(["embed", str(full), "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "no-cache")]) == 2
    assert "hf-hub:imageomics/bioclip" in capsys.readouterr().err  # the default model, never downloaded


def test_embedded_parquet_maps_without_conversion(folder_run, image_folder: Path, tmp_path: Path):
    """embed -> open_source (hive-partitioned ParquetSource) -> raymap.map of one subset onto the rest."""
    import raymap
    from raymap.sources import ParquetSource, open_source

    source = open_source(folder_run.parquet)
    assert isinstance(source, ParquetSource) and (source.n_rows, source.dim) == (N_DIGITS + 2, 384)
    result = raymap.map(
        folder_run.parquet,
        folder_run.parquet,
        tmp_path / "map.zarr",
        k=3,
        query_filter={"folder": "photos"},
        reference_filter={"folder": "digits"},
        transfer={"folder": "categorical"},
    )
    indices, distances = result.neighbors()
    assert indices.shape == (2, 3) and np.isfinite(distances).all()
    assert result.labels("folder").tolist() == ["digits", "digits"]
