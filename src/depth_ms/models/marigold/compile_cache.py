"""MindSpore's graph compile cache, kept to graphs it can serve: one architecture and one input shape.

MindSpore numbers cached graphs by compile order under the entry script's hash and does not key them by
input shape, and it reads the cache settings from process-wide environment variables. So the folder is
keyed by the network configs, the engine options and the model input shape, chosen when the first frame
fixes that shape; a later frame of another shape in the same process turns the cache off for the rest of
the process (and says so) instead of writing graphs a later run would misread.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict
from typing import Optional

LOG = logging.getLogger(__name__)


class CompileCache:
    """Called by the engine with the model input shape before it runs a frame."""

    _active: Optional[str] = None  # the folder this process caches into (MindSpore's settings are process-wide)

    def __init__(self, base: str, checkpoint_path: str, tiny_path: str, engine_opts) -> None:
        digest = hashlib.sha256(json.dumps(asdict(engine_opts), sort_keys=True, default=str).encode())
        configs = [os.path.join(checkpoint_path, part, "config.json") for part in ("unet", "vae")]
        for path in configs + ([os.path.join(tiny_path, "config.json")] if tiny_path else []):
            with open(path, "rb") as f:
                digest.update(f.read())
        self.prefix = os.path.join(os.path.expanduser(base), digest.hexdigest()[:16])

    def folder(self, shape: tuple) -> str:
        """The cache folder of one model input shape (N, C, H, W)."""
        return f"{self.prefix}_{'x'.join(str(int(n)) for n in shape)}"

    def __call__(self, shape: tuple) -> None:
        folder = self.folder(shape)
        if CompileCache._active is None:
            os.environ["MS_COMPILER_CACHE_ENABLE"] = "1"
            os.environ["MS_COMPILER_CACHE_PATH"] = folder
            CompileCache._active = folder
        elif folder != CompileCache._active and os.environ.get("MS_COMPILER_CACHE_ENABLE") == "1":
            os.environ["MS_COMPILER_CACHE_ENABLE"] = "0"
            LOG.warning("compile_cache serves one model input shape per process: %s is compiled without it",
                        "x".join(str(int(n)) for n in shape))
