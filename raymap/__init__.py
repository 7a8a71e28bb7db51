"""raymap: billion-scale embedding mapping and exploration on Ray."""

__version__ = "0.1.0"

from raymap.mapper import map
from raymap.result import MappingResult

__all__ = ["MappingResult", "__version__", "map"]
