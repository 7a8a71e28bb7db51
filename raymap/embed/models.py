"""Image models: resolve a model name + weights to a local, offline ModelSpec; load it as an Embedder."""

from __future__ import annotations

import copy
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Names that stand for a BioCLIP release on the Hugging Face hub (pybioclip's own identifiers).
BIOCLIP_ALIASES = ("bioclip", "bioclip-2")
HF_HUB_PREFIX, LOCAL_DIR_PREFIX = "hf-hub:", "local-dir:"
# Checkpoint names open_clip looks for in a model folder, best first.
CHECKPOINT_NAMES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
)
CONFIG_NAME = "open_clip_config.json"


class MissingWeightsError(FileNotFoundError):
    """The weights a model needs are neither a local file nor in the model cache (nothing is downloaded)."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model resolved to local files: everything a CPU worker or a model actor needs, picklable and small."""

    name: str  # what the user asked for ("bioclip", "ViT-B-32", "hf-hub:org/repo")
    arch: str  # what open_clip.create_model gets: a built-in name or "local-dir:<folder>"
    checkpoint: str | None  # local weights file for a built-in name; None: in the folder, or random weights
    weights: str  # where the weights come from, machine-independent ("hf-hub:org/repo@rev", a tag, a path)
    dim: int  # embedding width
    preprocess: dict[str, Any]  # open_clip's final PreprocessCfg as a dict (size, mean, std, resize_mode, ...)
    vision: dict[str, Any] = field(default_factory=dict)  # the vision tower config, for memory estimates
    image_size: int | None = None  # forced input size (open_clip's force_image_size), None: the model's own
    quick_gelu: bool = False  # the weights were trained with QuickGELU (OpenAI tags)

    @property
    def input_hw(self) -> tuple[int, int]:
        size = self.preprocess["size"]
        return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))

    @property
    def random_weights(self) -> bool:
        return self.checkpoint is None and not self.arch.startswith(LOCAL_DIR_PREFIX)

    def describe(self) -> dict[str, Any]:
        """What is recorded in the output's metadata: enough to reproduce the embeddings."""
        return {
            "model": self.name,
            "weights": self.weights,
            "dim": self.dim,
            "image_size": list(self.input_hw),
            "preprocess": {k: list(v) if isinstance(v, tuple) else v for k, v in self.preprocess.items()},
            "quick_gelu": self.quick_gelu,
            "normalized": "l2",
        }

    def bytes_per_image(self, dtype_bytes: int = 4) -> int:
        """Peak inference memory per image: input pixels plus one transformer block's activations.

        A ViT block holds the residual, q/k/v and a 4x MLP hidden (~9 x tokens x width values)
        plus heads x tokens^2 attention scores; doubled for allocator slack. Convolutional
        towers (no patch size) are charged 50x the float input, a conservative rule of thumb.
        """
        h, w = self.input_hw
        pixels = 3 * h * w
        patch, width = self.vision.get("patch_size"), self.vision.get("width")
        if isinstance(patch, int) and isinstance(width, int):
            tokens = (h // patch) * (w // patch) + 1
            heads = max(1, width // int(self.vision.get("head_width", 64)))
            activations = 9 * tokens * width + heads * tokens * tokens
            return pixels * (1 + 4) + 2 * activations * dtype_bytes
        return pixels * (1 + 4) + 50 * pixels * dtype_bytes


def resolve_model(
    name: str,
    pretrained: str | None = None,
    *,
    image_size: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    allow_download: bool = False,
) -> ModelSpec:
    """Turn a model name and its weights into local files, without downloading unless allowed.

    ``name`` is an open_clip architecture (``"ViT-B-32"``, with ``pretrained`` a local file, an
    open_clip tag found in the model cache, or None for random weights), ``"hf-hub:org/repo"``
    (found in the Hugging Face cache), ``"local-dir:PATH"`` or a folder holding
    ``open_clip_config.json`` and weights, or ``"bioclip"`` / ``"bioclip-2"``. ``cache_dir`` is the
    model cache to look in (default: the user's Hugging Face / open_clip cache).
    """
    import open_clip
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"image_size: expected an integer >= 1 or None, got {image_size!r}")
    cache = os.fspath(cache_dir) if cache_dir is not None else None
    arch, checkpoint, quick_gelu = name, None, False
    if name in BIOCLIP_ALIASES:
        import bioclip

        arch = bioclip.BIOCLIP_V1_MODEL_STR if name == "bioclip" else bioclip.BIOCLIP_V2_MODEL_STR
    weights = arch
    if arch.startswith(HF_HUB_PREFIX):
        snapshot = _hf_snapshot(arch[len(HF_HUB_PREFIX) :], cache, allow_download, name)
        arch, weights = LOCAL_DIR_PREFIX + snapshot, f"{arch}@{Path(snapshot).name}"  # the folder is the revision
    elif os.path.isdir(arch):
        arch = weights = LOCAL_DIR_PREFIX + os.path.abspath(arch)
    if arch.startswith(LOCAL_DIR_PREFIX):
        model_cfg, extra_preprocess = _local_dir_config(Path(arch[len(LOCAL_DIR_PREFIX) :]), name)
        if pretrained is not None:
            raise ValueError(f"model {name!r} brings its own weights; pretrained={pretrained!r} must be None")
    else:
        model_cfg = open_clip.get_model_config(arch)
        if model_cfg is None:
            raise ValueError(
                f"unknown model {name!r}: not an open_clip architecture, 'hf-hub:ORG/REPO', 'local-dir:PATH', "
                f"a model folder or one of {list(BIOCLIP_ALIASES)}; open_clip architectures include "
                f"{', '.join(open_clip.list_models()[:12])}, ... ({len(open_clip.list_models())} in all)"
            )
        model_cfg = copy.deepcopy(model_cfg)
        checkpoint, extra_preprocess, weights = _builtin_weights(arch, pretrained, cache, allow_download)
        quick_gelu = bool(extra_preprocess.pop("quick_gelu", False))
    preprocess = merge_preprocess_dict(PreprocessCfg(), extra_preprocess)
    vision = dict(model_cfg.get("vision_cfg", {}))
    preprocess["size"] = image_size or vision.get("image_size", preprocess["size"])
    if isinstance(preprocess["size"], list):
        preprocess["size"] = tuple(preprocess["size"])
    dim = int(model_cfg["embed_dim"])
    spec = ModelSpec(name, arch, checkpoint, weights, dim, preprocess, vision, image_size, quick_gelu)
    log.info("model %s -> %s (weights: %s, dim %d)", name, arch, weights, dim)
    return spec


def _hf_snapshot(repo: str, cache: str | None, allow_download: bool, name: str) -> str:
    """The cached snapshot folder of a hub repo holding an open_clip model."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return str(
            snapshot_download(
                repo,
                cache_dir=cache,
                local_files_only=not allow_download,
                allow_patterns=[CONFIG_NAME, *CHECKPOINT_NAMES],
            )
        )
    except LocalEntryNotFoundError as e:
        where = cache or "the Hugging Face cache (HF_HOME / HF_HUB_CACHE)"
        raise MissingWeightsError(
            f"weights of {name!r} (hf-hub:{repo}) are not in {where}; nothing is downloaded at run time: "
            f"fetch them once (`hf download {repo}`), pass a folder as 'local-dir:PATH', or allow_download=True"
        ) from e


def _local_dir_config(folder: Path, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Model + preprocess config of a model folder; refuses a folder without weights (no random fallback)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder of {name!r} not found: {folder}")
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"model folder {folder} has no {CONFIG_NAME}")
    if not any((folder / c).is_file() for c in CHECKPOINT_NAMES):
        raise MissingWeightsError(f"model folder {folder} has no weights; expected one of {list(CHECKPOINT_NAMES)}")
    config = json.loads(config_path.read_text())
    if "model_cfg" not in config:
        raise ValueError(f"{config_path}: no 'model_cfg' key; keys: {sorted(config)}")
    return config["model_cfg"], dict(config.get("preprocess_cfg", {}))


def _builtin_weights(
    arch: str, pretrained: str | None, cache: str | None, allow_download: bool
) -> tuple[str | None, dict[str, Any], str]:
    """A local weights file (None: random weights), the tag's preprocess config, and where the weights come from."""
    import open_clip

    if pretrained is None:
        log.warning("model %s: random weights (pretrained=None); embeddings carry no meaning beyond tests", arch)
        return None, {}, "random (pretrained=None)"
    if os.path.isfile(pretrained):
        return os.path.abspath(pretrained), {}, os.path.abspath(pretrained)
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if pretrained not in tags:
        raise MissingWeightsError(
            f"pretrained weights {pretrained!r} for {arch}: neither a file nor an open_clip tag; tags: {tags}"
        )
    cfg = dict(open_clip.get_pretrained_cfg(arch, pretrained))
    extra = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode", "fill_color", "quick_gelu") if k in cfg}
    source = f"open_clip tag {pretrained!r}"
    if allow_download:
        return str(open_clip.download_pretrained(cfg, cache_dir=cache)), extra, source
    if cfg.get("hf_hub"):
        return _hf_cached_file(cfg["hf_hub"], cache, f"{arch} ({pretrained})"), extra, source
    target = os.path.join(cache or os.path.expanduser("~/.cache/clip"), os.path.basename(cfg["url"]))
    if not os.path.isfile(target):
        raise MissingWeightsError(
            f"weights of {arch} ({pretrained}) are not in the model cache ({target}); download {cfg['url']} "
            "there, pass the file as pretrained, or allow_download=True"
        )
    return target, extra, source


def _hf_cached_file(hub_path: str, cache: str | None, what: str) -> str:
    """open_clip's ``org/repo/[file]`` hub reference -> the cached file (safetensors first), never downloading."""
    from huggingface_hub import try_to_load_from_cache

    repo, filename = os.path.split(hub_path)
    filename = filename or "open_clip_pytorch_model.bin"
    for name in (os.path.splitext(filename)[0] + ".safetensors", filename):
        found = try_to_load_from_cache(repo, name, cache_dir=cache)
        if isinstance(found, str):
            return found
    raise MissingWeightsError(
        f"weights of {what} (hf-hub:{repo}/{filename}) are not in {cache or 'the Hugging Face cache'}; "
        f"nothing is downloaded at run time: fetch them once (`hf download {repo}`) or allow_download=True"
    )


class Embedder(Protocol):
    """What the inference actors call: uint8 pixels (n, H, W, 3) -> L2-normalised float32 (n, dim)."""

    spec: ModelSpec

    def embed(self, pixels: np.ndarray) -> np.ndarray: ...


class OpenClipEmbedder:
    """An open_clip image tower (BioCLIP included) on one device; fp16 on a GPU, fp32 on a CPU.

    ``seed`` fixes random weights, so ``pretrained=None`` models are the same in every actor.
    Normalisation (ToTensor + mean/std) runs here on the device, so the CPU workers ship uint8.
    """

    def __init__(self, spec: ModelSpec, device: str = "cpu", seed: int = 0) -> None:
        import open_clip
        import torch

        self.spec = spec
        self.device = torch.device(device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        torch.manual_seed(seed)
        model = open_clip.create_model(
            spec.arch,
            pretrained=spec.checkpoint,
            precision="fp16" if self.dtype == torch.float16 else "fp32",
            device=self.device,
            force_image_size=spec.image_size,
            force_quick_gelu=spec.quick_gelu,
            force_preprocess_cfg=spec.preprocess,
            pretrained_text=False,  # the text tower is unused: never fetch its base weights
            require_pretrained=not spec.random_weights,
        )
        visual_size = model.visual.image_size
        visual_hw = tuple(visual_size) if isinstance(visual_size, list | tuple) else (visual_size, visual_size)
        if tuple(int(v) for v in visual_hw) != spec.input_hw:
            raise RuntimeError(f"{spec.name}: model input is {visual_hw}, preprocessing makes {spec.input_hw}")
        self.model = model.eval()
        shape = (1, 3, 1, 1)
        self.mean = torch.tensor(spec.preprocess["mean"], device=self.device).view(shape)
        self.std = torch.tensor(spec.preprocess["std"], device=self.device).view(shape)

    def to_input(self, pixels: np.ndarray) -> torch.Tensor:
        """uint8 (n, H, W, 3) -> normalised (n, 3, H, W) in the model's dtype: open_clip's ToTensor + Normalize."""
        import torch

        x = (
            torch.from_numpy(np.require(pixels, requirements=["C", "W"])).to(self.device).permute(0, 3, 1, 2).float()
            / 255.0
        )
        return ((x - self.mean) / self.std).to(self.dtype)

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        if pixels.ndim != 4 or pixels.shape[1:] != (*self.spec.input_hw, 3):
            raise ValueError(
                f"pixels: expected (n, {self.spec.input_hw[0]}, {self.spec.input_hw[1]}, 3), got {pixels.shape}"
            )
        with torch.inference_mode():
            features = self.model.encode_image(self.to_input(pixels)).float()
            features = torch.nn.functional.normalize(features, dim=-1)
        return features.cpu().numpy()
