"""Command line entry point: ``python -m eglr.run [overrides]`` (Hydra).

Examples::

    python -m eglr.run experiment=demo
    python -m eglr.run model=qwen2.5-3b-instruct benchmark=math500 grid=paper
    python -m eglr.run -m experiment=paper hydra/launcher=slurm
"""
from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from eglr.runner import run

log = logging.getLogger("eglr")


@hydra.main(config_path="../configs", config_name="run", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    try:
        return run(cfg)
    except ValueError as error:
        log.error("%s", error)
        raise


if __name__ == "__main__":
    main()
