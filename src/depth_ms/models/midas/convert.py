"""Official MiDaS v2.1 small ``.pt`` -> ``.safetensors`` with the same key names, and checkpoint checks.

Usage::

    python -m depth_ms.models.midas.convert midas_v21_small_256.pt midas_v21_small_256.safetensors

The input is a torch state dict as released (or wrapped in ``{'model': ..., 'optimizer': ...}``,
which the MiDaS loader unwraps too). BatchNorm ``num_batches_tracked`` counters are dropped (training
bookkeeping); every other key is kept, as float32. A checkpoint of another MiDaS / DPT / Depth
Anything variant is refused with the variant named (:func:`state_keys.detect_variant`). torch is imported only
inside :func:`convert`; nothing else here needs it.
"""
from __future__ import annotations

import argparse
import os
import sys
import numpy as np

from depth_ms.models.base import EstimatorError

from .state_keys import IGNORED_SUFFIXES, SMALL, check_state_keys

def unwrap_state_dict(obj, source: str) -> dict:
    """The state dict inside a loaded ``.pt`` (plain, or under 'model' / 'state_dict')."""
    if isinstance(obj, dict) and "optimizer" in obj and "model" in obj:
        obj = obj["model"]  # as midas/base_model.py does
    elif isinstance(obj, dict) and len(obj) <= 4:
        for wrapper in ("model", "state_dict"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not obj:
        raise EstimatorError(f"{source} does not hold a state dict (got {type(obj).__name__})")
    return obj


def convert(pt_path: str, out_path: str) -> dict[str, tuple]:
    """Convert an official MiDaS v2.1 small ``.pt`` to ``.safetensors``; returns key -> shape written."""
    import torch
    from safetensors.numpy import save_file

    from depth_ms.models import weights

    weights.require(pt_path, "MiDaS v2.1 small checkpoint (.pt)")
    try:
        obj = torch.load(pt_path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (any unpickling failure is a bad file)
        raise EstimatorError(f"cannot read {pt_path} as a torch checkpoint: {e}") from e
    state = unwrap_state_dict(obj, pt_path)
    tensors = {k: v.detach().cpu().float().numpy() for k, v in state.items()
               if hasattr(v, "detach") and not k.endswith(IGNORED_SUFFIXES)}
    check_state_keys({k: v.shape for k, v in tensors.items()}, expected_shapes(), pt_path)
    out_dir = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(out_dir, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, out_path,
              metadata={"source": os.path.basename(pt_path), "model": SMALL})
    return {k: tuple(v.shape) for k, v in tensors.items()}


def expected_shapes() -> dict[str, tuple]:
    """Official key -> shape of MiDaS v2.1 small (from the MindSpore network, which uses the same names)."""
    if "mindspore" not in sys.modules:  # keep a caller's device and mode
        from depth_ms.models import mindspore_device

        mindspore_device.configure("cpu")
    from .small_net import MidasSmall, state_names

    return {k: tuple(p.shape) for k, p in state_names(MidasSmall()).items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m depth_ms.models.midas.convert", description=__doc__.split("\n")[0])
    parser.add_argument("pt", help="official midas_v21_small_256.pt")
    parser.add_argument("out", help="output .safetensors")
    args = parser.parse_args(argv)
    try:
        written = convert(args.pt, args.out)
    except EstimatorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} tensors to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
