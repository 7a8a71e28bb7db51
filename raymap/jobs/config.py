"""Job configs: read YAML/JSON, check keys against what the job accepts, run a job's main with clear failures."""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
EXIT_BAD_INPUT = 2


def load_config(path: str) -> dict[str, Any]:
    """A job config file (``.yaml``/``.yml`` or ``.json``) -> dict."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"job config not found: {path}")
    text = p.read_text()
    data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a job config must be a mapping of keys to values, got {type(data).__name__}")
    return data


def keywords_of(func: Callable[..., Any], drop: Iterable[str] = ()) -> tuple[str, ...]:
    """The keyword parameters of ``func``: a job accepts exactly what the library call it wraps accepts."""
    skip = set(drop)
    return tuple(name for name in inspect.signature(func).parameters if name not in skip)


def check_keys(config: dict[str, Any], allowed: Iterable[str], required: Iterable[str], job: str) -> dict[str, Any]:
    """Refuse unknown and missing keys, naming them and the allowed ones; drop keys set to None."""
    allowed = tuple(allowed)
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {job} job config key(s) {unknown}; allowed keys: {sorted(allowed)}")
    missing = [key for key in required if config.get(key) is None]
    if missing:
        raise ValueError(f"{job} job config is missing required key(s) {missing}")
    try:
        json.dumps(config)
    except TypeError as e:
        raise ValueError(f"{job} job config must hold plain values (str, number, list, dict): {e}") from None
    return {key: value for key, value in config.items() if value is not None}


def config_from_args(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    to_config: Callable[[argparse.Namespace], dict[str, Any]],
) -> dict[str, Any]:
    """``--config FILE`` or flags, not both; ``to_config`` turns parsed flags into config keys."""
    args = parser.parse_args(argv)
    given = sorted(k for k, v in vars(args).items() if k != "config" and v != parser.get_default(k))
    if args.config is None:
        return to_config(args)
    if given:
        raise ValueError(f"pass either --config or flags, not both (got --config and {given})")
    return load_config(args.config)


def run_job(main: Callable[[], None], name: str) -> int:
    """Run a job body; bad input exits non-zero with one clear line that ``ray job logs`` shows."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    try:
        main()
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, RuntimeError) as e:
        print(f"raymap {name} job failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    return 0
