"""End to end in headless Chromium: ``raymap serve`` on a private local Ray, a demo map job, an exploration.

Needs Debian's ``chromium`` (``apt-get install -y chromium``); Playwright drives it through
``executable_path``, nothing is downloaded. Screenshots and timings go to ``test-artifacts/``.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
START_TIMEOUT_S = 150
JOB_TIMEOUT_MS = 120_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason="no chromium binary: install it with `apt-get install -y chromium`"
    ),
]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ReplicaMemory(threading.Thread):
    """Samples the RSS of the Serve replica (a descendant process titled ``ServeReplica:raymap-ui``)."""

    def __init__(self, root_pid: int) -> None:
        super().__init__(daemon=True)
        self.root_pid, self.peak, self.stop = root_pid, 0, threading.Event()

    def run(self) -> None:
        import psutil

        while not self.stop.wait(0.5):
            try:
                procs = psutil.Process(self.root_pid).children(recursive=True)
            except psutil.NoSuchProcess:
                return
            for p in procs:
                try:
                    if "ServeReplica:raymap-ui" in " ".join(p.cmdline()):
                        self.peak = max(self.peak, p.memory_info().rss)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with a small cell atlas (Parquet) and an image collection with thumbnails for every row."""
    from raymap import datasets

    root = tmp_path_factory.mktemp("ui-data")
    datasets.cell_atlas(root / "atlas", n_ref=4_000, n_query=1_500, formats=("parquet",), chunk_rows=1_000)
    datasets.image_collection(root / "images", n=2_000, dim=32, chunk_rows=1_000, n_images=2_000, n_image_files=50)
    (root / "outside-link.parquet").symlink_to("/etc/hostname")  # a link leading out of the root
    return root.resolve()


@pytest.fixture(scope="module")
def server(data_root: Path) -> Iterator[dict[str, Any]]:
    """``raymap serve --address local`` in its own process group; stopped with SIGINT, killed if it lingers."""
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / "ui-server.log"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "raymap.cli", "serve", "--data-root", str(data_root), "--port", str(port)]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [*cmd, "--address", "local", "--num-cpus", "2"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            pytest.fail(f"raymap serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"raymap serve not up after {START_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")
        time.sleep(1)
    memory = ReplicaMemory(proc.pid)
    memory.start()
    metrics: dict[str, Any] = {"startup_s": round(START_TIMEOUT_S - (deadline - time.monotonic()), 1)}
    yield {"base": base, "url": f"{base}/ui/", "root": data_root, "metrics": metrics}
    memory.stop.set()
    metrics["serve_replica_peak_rss_mib"] = round(memory.peak / 2**20, 1)
    (ARTIFACTS / "ui-metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"\nUI metrics: {metrics}")
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def page(server: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        pg = browser.new_page(viewport={"width": 1500, "height": 1100})
        pg.set_default_timeout(30_000)
        t0 = time.perf_counter()
        pg.goto(server["url"])
        pg.locator("#map-submit").wait_for()
        server["metrics"]["page_load_s"] = round(time.perf_counter() - t0, 2)
        yield pg
        browser.close()


def pick(page: Any, elem_id: str, *values: str) -> None:
    """Choose ``values`` in a Gradio dropdown (its option list opens under the input)."""
    for value in values:
        option = page.locator(f"#{elem_id} li[aria-label='{value}']")
        if not option.is_visible():
            page.locator(f"#{elem_id} input").click()
        option.click()
    page.keyboard.press("Escape")


def type_into(page: Any, elem_id: str, value: str) -> None:
    """Fill a textbox / number / free-text dropdown and commit it."""
    box = page.locator(f"#{elem_id} input, #{elem_id} textarea").first
    box.fill(value)
    box.press("Enter")
    box.blur()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_map_job_end_to_end(page: Any, server: dict[str, Any]) -> None:
    root = server["root"]
    pick(page, "map-query", str(root / "atlas" / "query.parquet"))
    pick(page, "map-reference", str(root / "atlas" / "reference.parquet"))
    page.get_by_text("4,000 rows × 50-D").wait_for()
    assert "cell_type" in page.locator("#map-labels").inner_text()  # preselected: in both, not an id
    t0 = time.perf_counter()
    page.locator("#map-submit").click()
    page.get_by_text("Submitted job").wait_for()
    job_id = re.search(r"Submitted job (\S+):", page.locator("#map-message").inner_text()).group(1)
    # While the job runs, a second user loads the page and sees the job listed: the UI stays responsive.
    other = page.context.browser.new_page(viewport={"width": 1400, "height": 900})
    t1 = time.perf_counter()
    other.goto(server["url"])
    other.get_by_role("tab", name="Jobs").click()
    other.locator("#jobs-table [data-testid='cell-0-0']").get_by_text(job_id).wait_for()
    server["metrics"]["second_page_jobs_listed_during_job_s"] = round(time.perf_counter() - t1, 2)
    other.close()
    page.locator("#map-progress").get_by_text("SUCCEEDED").wait_for(timeout=JOB_TIMEOUT_MS)
    server["metrics"]["demo_job_s"] = round(time.perf_counter() - t0, 1)
    summary = page.locator("#map-summary")
    summary.get_by_text("1,500 query rows").wait_for(timeout=60_000)
    assert "match the query's own labels" in summary.inner_text()
    assert "1,500 / 1,500 rows" in page.locator("#map-progress").inner_text()
    confusion = page.locator("#map-confusion table")
    assert confusion.locator("tbody tr").count() >= 10  # one row per true cell type
    page.locator(".vega-embed").first.wait_for()  # label counts and confidence plots drawn
    link = page.locator("#map-downloads a").first
    href = link.get_attribute("href")
    with urllib.request.urlopen(server["base"] + href) as r:
        header = r.readline().decode()
    assert header.startswith('"row","cell_type_pred","cell_type_conf"')
    shot(page, "ui-1-map-results")


def test_jobs_tab_lists_and_opens_results(page: Any) -> None:
    page.get_by_role("tab", name="Jobs").click()
    cell = page.locator("#jobs-table [data-testid='cell-0-1']")
    cell.get_by_text("SUCCEEDED").wait_for()
    assert "k=30 gauss Flat" in page.locator("#jobs-table").inner_text()
    page.locator("#jobs-table [data-testid='cell-0-0']").click()
    shot(page, "ui-2-jobs")
    page.locator("#jobs-open").click()
    page.locator("#map-summary").get_by_text("query rows").wait_for()
    assert page.get_by_role("tab", name="Map").get_attribute("aria-selected") == "true"


def test_explore_with_filter_and_projection(page: Any, server: dict[str, Any]) -> None:
    root = server["root"]
    page.get_by_role("tab", name="Explore").click()
    pick(page, "ex-dataset", str(root / "images" / "embeddings"))
    pick(page, "ex-filter-column", "source_dataset")
    pick(page, "ex-filter-values", "inat21", "eol")
    page.locator("#ex-filter-add").click()
    page.locator("#ex-filters").get_by_text("inat21, eol").wait_for()
    type_into(page, "ex-k", "6")
    t0 = time.perf_counter()
    page.locator("#ex-run").click()
    page.locator("#ex-message").get_by_text("Explored").wait_for(timeout=JOB_TIMEOUT_MS)
    server["metrics"]["explore_s"] = round(time.perf_counter() - t0, 1)
    summary = page.locator("#ex-summary").inner_text()
    read, total = map(int, re.search(r"filter read (\d+) of (\d+) files", summary).groups())
    assert read < total  # partitions of the third source were pruned, not read
    assert "project: pca" in summary
    assert page.locator("#ex-scatter .rm-legend span.sw").count() == 6  # one colour per cluster
    top_values = page.locator("#ex-composition [data-testid='cell-0-2']")
    top_values.get_by_text("%").wait_for()  # cluster composition: top values with their shares
    canvas = page.locator("#ex-scatter canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    tip = page.locator("#ex-scatter .rm-tip")
    spot = None
    for fy in (i / 24 for i in range(2, 23)):
        for fx in (i / 32 for i in range(2, 31)):
            page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
            if tip.is_visible():
                spot = (box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
                break
        if spot:
            break
    assert spot is not None, "no point found under the mouse"
    assert "cluster: " in tip.inner_text() and "species: " in tip.inner_text()  # hover shows metadata
    page.mouse.click(*spot)
    page.locator("#ex-neighbours img").first.wait_for(timeout=JOB_TIMEOUT_MS)
    assert page.locator("#ex-neighbours img").count() >= 8
    assert "species" in page.locator("#ex-details").inner_text()
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()  # the page may have moved when the neighbours arrived
    page.mouse.move(box["x"] + 3, box["y"] + 3)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 3, box["y"] + box["height"] - 3, steps=6)
    page.mouse.up()
    page.locator("#ex-message").get_by_text("points selected: zoom to them").wait_for()
    type_into(page, "ex-export-name", "picked.parquet")
    page.locator("#ex-export").click()
    page.locator("#ex-export-links").get_by_text("Exported").wait_for()
    assert (root / "picked.parquet").stat().st_size > 0
    shot(page, "ui-3-explore")


def test_page_refuses_bad_paths_and_parameters(page: Any, server: dict[str, Any]) -> None:
    page.get_by_role("tab", name="Map").click()
    message = page.locator("#map-message")
    cases = [
        ("map-query", "../../../etc/passwd", "'..' is not allowed"),
        ("map-query", "/etc/passwd", "outside the data roots"),
        ("map-query", "outside-link.parquet", "outside the data roots"),
    ]
    for elem_id, value, expected in cases:
        type_into(page, elem_id, value)
        page.locator("#map-submit").click()
        message.get_by_text(expected).wait_for()
        assert "Refused" in message.inner_text()
    pick(page, "map-query", str(server["root"] / "atlas" / "query.parquet"))
    type_into(page, "map-k", "0")
    page.locator("#map-submit").click()
    message.get_by_text("k: expected a whole number in [1, 1000], got 0").wait_for()
    type_into(page, "map-k", "30")
    type_into(page, "map-out", "../escape.zarr")
    page.locator("#map-submit").click()
    message.get_by_text("'..' is not allowed").wait_for()
    shot(page, "ui-4-refused")
    page.get_by_role("tab", name="Explore").click()
    type_into(page, "ex-sample", "5")
    page.locator("#ex-run").click()
    page.locator("#ex-message").get_by_text("sample size: expected a whole number in [100, 2000000]").wait_for()


def _status(url: str | urllib.request.Request) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url) as r:
            return r.status, r.read(200).decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def test_server_refuses_bad_paths_and_parameters(server: dict[str, Any]) -> None:
    from gradio_client import Client as GradioClient

    base, root = server["base"], server["root"]
    for path, code in [
        ("../../etc/passwd", 403),
        ("/etc/passwd", 403),
        ("outside-link.parquet", 403),
        (str(root / "atlas"), 400),  # folders are not downloads
        ("missing.csv", 404),
    ]:
        status, body = _status(f"{base}/files?" + urllib.parse.urlencode({"path": path}))
        assert status == code, (path, status, body)
    assert _status(f"{base}/files?path=atlas/query.parquet")[0] == 200
    assert _status(f"{base}/ui/gradio_api/file=/etc/passwd")[0] == 403  # Gradio's own file route too
    body = (
        b'--b\r\nContent-Disposition: form-data; name="files"; filename="x.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\nhello\r\n--b--\r\n"
    )
    upload = urllib.request.Request(
        f"{base}/ui/gradio_api/upload", data=body, headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert _status(upload)[0] == 413  # nothing is written outside the roots through Gradio's upload route
    api = GradioClient(server["url"], verbose=False)
    query, ref = str(root / "atlas" / "query.parquet"), str(root / "atlas" / "reference.parquet")
    good = (query, ref, "x.zarr", ["cell_type"], 30, "gauss", "auto")
    refused = [
        ((query, "../../etc/passwd", *good[2:]), "'..' is not allowed"),
        (("/etc/passwd", *good[1:]), "outside the data roots"),
        ((*good[:2], "/tmp/evil.zarr", *good[3:]), "outside the data roots"),
        ((*good[:4], -5, *good[5:]), "k: expected a whole number"),
        ((*good[:5], "evil", good[6]), "not in the list of choices"),  # Gradio's own check of fixed choices
        ((*good[:6], "IVF;rm -rf"), "faiss factory string"),
        ((*good[:3], ["no_such"], *good[4:]), "not in the reference"),
    ]
    for args, expected in refused:
        assert expected in refusal(api, args, "/submit_map"), args
    dataset = str(root / "images" / "embeddings")
    for args, expected in [
        ((dataset, "/etc/hostname", 1_000, 4, "auto", "pca"), "outside the data roots"),
        (("../images/embeddings", None, 1_000, 4, "auto", "pca"), "'..' is not allowed"),
        ((dataset, None, 5, 4, "auto", "pca"), "sample size: expected a whole number"),
        ((dataset, None, 1_000, 1, "auto", "pca"), "at least 2 clusters"),
        ((dataset, None, 1_000, 4, "auto", "evil"), "not in the list of choices"),
    ]:
        assert expected in refusal(api, args, "/explore"), args


def refusal(api: Any, args: tuple[Any, ...], api_name: str) -> str:
    """The page's error message for a direct API call, or Gradio's own refusal; fails if the call was accepted."""
    from gradio_client.exceptions import AppError

    try:
        message = html.unescape(str(api.predict(*args, api_name=api_name)[0]))
    except AppError as e:
        return str(e)
    assert "rm-error" in message, f"{api_name} accepted {args}: {message}"
    return message
