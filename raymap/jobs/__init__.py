"""Job entry points (``python -m raymap.jobs.<kind> --config job.yaml``): map, build_index, explore."""
