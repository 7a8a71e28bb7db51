"""Result summaries (streamed over a real mapping store), the map payload and the page's HTML pieces."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pytest

from serve import render, results
from serve.scatter import colors_for, density_png, hover_columns, payload


def test_histogram_and_top_with_other() -> None:
    assert results.histogram(np.array([0.0, 0.05, 0.5, 1.0]), 0.0, 1.0, bins=4).tolist() == [2, 0, 1, 1]
    assert results.histogram(np.array([3.0, 3.0]), 3.0, 3.0, bins=2).tolist() == [2, 0]  # flat range
    counts = {"a": 5, "b": 3, "c": 1, "d": 1}
    assert results.top_with_other(counts, top=2) == {"a": 5, "b": 3, results.OTHER: 2}


def test_confusion_table_keeps_the_largest_labels() -> None:
    pairs = {("a", "a"): 8, ("a", "b"): 2, ("b", "b"): 5, ("c", "a"): 1}
    assert results.confusion_table(pairs, top=2) == {
        "a": {"a": 8, "b": 2},
        "b": {"b": 5},
        results.OTHER: {"a": 1},
    }


@pytest.mark.ray
def test_summarize_streams_a_mapping_store(ray_cluster, atlas, tmp_path, monkeypatch) -> None:
    import raymap
    from raymap.sources import open_source

    query, reference = str(atlas.query["parquet"]), str(atlas.reference["parquet"])
    fields = {"cell_type": "categorical", "score": "numeric"}
    result = raymap.map(query, reference, tmp_path / "m.zarr", k=10, transfer=fields)
    monkeypatch.setattr(results, "CHUNK_ROWS", 700)  # several chunks, the last one short
    summary = results.summarize(result.path, query, fields)

    n = result.shape[0]
    pred = result.labels("cell_type").astype(str)
    truth = np.asarray(open_source(query).read_column("cell_type")).astype(str)
    labels, counts = np.unique(pred, return_counts=True)
    cell = summary.fields["cell_type"]
    assert cell.counts == dict(sorted(zip(labels.tolist(), counts.tolist(), strict=True), key=lambda t: (-t[1], t[0])))
    assert sum(cell.hist) == n
    assert cell.accuracy == pytest.approx(float((pred == truth).mean()))
    expected = pd.crosstab(truth, pred)
    for true_label, row in cell.confusion.items():
        for pred_label, count in row.items():
            assert expected.loc[true_label, pred_label] == count
    score = summary.fields["score"]
    values = result.values("score")
    assert score.value_range == pytest.approx((values.min(), values.max()))
    assert sum(score.hist) == n and score.confusion is None

    table = pacsv.read_csv(summary.predictions_csv)
    assert table.column_names == ["row", "cell_type_pred", "cell_type_conf", "cell_type", "score_pred"]
    assert table.num_rows == n
    assert table.column("cell_type_pred").to_pylist() == pred.tolist()
    np.testing.assert_allclose(table.column("score_pred").to_numpy(), values, rtol=1e-6)


def test_colours_for_categories_numbers_and_cluster_ids() -> None:
    colors, legend = colors_for(pd.Series(["b", "a", "b", "c"]))
    assert [name for name, _ in legend] == ["b", "a", "c"]  # most frequent first
    assert colors[0] == colors[2] != colors[1]
    _, legend = colors_for(pd.Series([2, 0, 0, 1]))
    assert [name for name, _ in legend] == ["0", "1", "2"]  # cluster ids in their own order
    colors, legend = colors_for(pd.Series(np.linspace(0, 1, 50)))
    assert colors[0] == "#440154" and colors[-1] == "#fde725" and [n for n, _ in legend] == ["0", "1"]


def test_hover_columns_skip_identifiers() -> None:
    points = pd.DataFrame(
        {
            "row_id": [0, 1, 2],
            "uuid": ["u1", "u2", "u3"],
            "kingdom": ["A", "A", "A"],
            "species": ["s1", "s2", "s3"],
            "score": [0.1, 0.2, 0.3],
            "cluster": [0, 1, 1],
            "x": [0.0, 1.0, 2.0],
            "y": [0.0, 1.0, 2.0],
        }
    )
    assert hover_columns(points, "kingdom") == ["kingdom", "cluster", "species", "score"]


def test_payload_and_density_raster() -> None:
    from PIL import Image

    points = pd.DataFrame({"x": [0.0, 1.0, 2.0], "y": [0.0, 1.0, 2.0], "family": ["F1", "F2", "F1"]})
    density = np.zeros((4, 4), dtype=np.int64)
    density[0, 0] = 10  # lowest y bin: must be the bottom row of the image
    out = payload(points, np.array([0, 2]), density, (0.0, 2.0), (0.0, 2.0), "family", "2 of 3")
    assert out["pos"] == [0, 2] and out["x"] == [0.0, 2.0] and out["color"][0] == out["color"][1]
    assert out["tip"] == ["family: F1", "family: F1"]
    png = Image.open(io.BytesIO(base64.b64decode(density_png(density).split(",", 1)[1])))
    alpha = np.asarray(png)[..., 3]
    assert png.size == (4, 4) and alpha[3, 0] > 200 and alpha[0, 0] == 0


def test_html_pieces_escape_data() -> None:
    html = render.confusion_html({"<b>x</b>": {"<b>x</b>": 3, "y": 1}})
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert (
        render.file_link("/data/a b&c.csv") == '<a href="/files?path=%2Fdata%2Fa+b%26c.csv" download>a b&amp;c.csv</a>'
    )
    bar = render.progress_html("RUNNING", "search", 250, 1000, 125.0, 6.0)
    assert "250 / 1,000 rows (25 %)" in bar and "125 rows/s" in bar and "ETA 6 s" in bar
    assert render.duration(3725) == "1 h 02 min" and render.duration(None) == ""
