"""Make test/fixtures/midas_small: official MidasNet_small (PyTorch) outputs for seeded weights.

Runs the OFFICIAL code, exported from bare git mirrors of isl-org/MiDaS and
rwightman/gen-efficientnet-pytorch into a temporary folder (nothing is copied into the repo):

    python tools/make_midas_small_fixture.py --midas-git /work/.mirror/isl-org+MiDaS/repo \\
        --geffnet-git /work/.mirror/rwightman+gen-efficientnet-pytorch/repo --seed 0

- no download: ``torch.hub.load`` is replaced by a function returning geffnet's
  ``tf_efficientnet_lite3(pretrained=False, exportable=True)``, built directly;
- MiDaS's ``midas/blocks.py`` imports the ViT / BEiT / Swin / LeViT backbone modules (which need
  timm) at module level; the small model uses none of them, so those six modules are replaced by
  empty stand-ins in ``sys.modules`` before the import;
- weights: ``seeded_state_dict`` from test/models/test_midas_small.py (the rule the test rebuilds);
- one fresh model per input (the exportable "same" padding is frozen at the first input size).

Writes keys.json (official keys and shapes, state-dict order), meta.json, input_<h>x<w>.npy
(normalised (1, 3, h, w) float32) and output_<h>x<w>.npy ((1, h, w) float32). Needs torch.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import types

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = ((64, 96), (96, 64))
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# backbone modules midas/blocks.py imports by name -> names it imports from them
UNUSED_BACKBONES = {
    "beit": ["_make_pretrained_beitl16_512", "_make_pretrained_beitl16_384", "_make_pretrained_beitb16_384",
             "forward_beit"],
    "swin_common": ["forward_swin"],
    "swin2": ["_make_pretrained_swin2l24_384", "_make_pretrained_swin2b24_384", "_make_pretrained_swin2t16_256"],
    "swin": ["_make_pretrained_swinl12_384"],
    "levit": ["_make_pretrained_levit_384", "forward_levit"],
    "vit": ["_make_pretrained_vitb_rn50_384", "_make_pretrained_vitl16_384", "_make_pretrained_vitb16_384",
            "forward_vit"],
}


def export(git_dir: str, folder: str, dest: str) -> str:
    """``git archive HEAD folder`` of a bare mirror into ``dest``; returns the commit."""
    commit = subprocess.check_output(["git", "--git-dir", git_dir, "rev-parse", "HEAD"], text=True).strip()
    data = subprocess.check_output(["git", "--git-dir", git_dir, "archive", "HEAD", folder])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest)
    return commit


def official_model(ref_dir: str):
    """Official MidasNet_small as model_loader.py builds midas_v21_small_256, random init, eval mode."""
    import torch

    sys.path.insert(0, ref_dir)
    for name, attrs in UNUSED_BACKBONES.items():
        stand_in = types.ModuleType(f"midas.backbones.{name}")
        for attr in attrs:
            setattr(stand_in, attr, None)
        sys.modules[f"midas.backbones.{name}"] = stand_in
    import geffnet
    from midas.midas_net_custom import MidasNet_small

    def hub_load(repo, model, pretrained=False, exportable=False):
        assert (repo, model) == ("rwightman/gen-efficientnet-pytorch", "tf_efficientnet_lite3"), (repo, model)
        return geffnet.tf_efficientnet_lite3(pretrained=False, exportable=exportable)

    torch.hub.load = hub_load
    return MidasNet_small(None, features=64, backbone="efficientnet_lite3", exportable=True, non_negative=True,
                          blocks={"expand": True}).eval()


def normalised_input(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth textured RGB image in [0, 1], ImageNet-normalised, (1, 3, h, w) float32."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([0.5 + 0.4 * np.sin(xx / (5.0 + c) + c) * np.cos(yy / (7.0 - c)) for c in range(3)], -1)
    rgb = np.clip(rgb + rng.normal(0, 0.05, rgb.shape), 0, 1).astype(np.float32)
    return np.ascontiguousarray(((rgb - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None], np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--midas-git", default="/work/.mirror/isl-org+MiDaS/repo")
    parser.add_argument("--geffnet-git", default="/work/.mirror/rwightman+gen-efficientnet-pytorch/repo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(ROOT, "test", "fixtures", "midas_small"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(2)
    sys.path.insert(0, os.path.join(ROOT, "test", "models"))
    from test_midas_small import seeded_state_dict

    ref_dir = tempfile.mkdtemp(prefix="midas_ref_")
    commits = {"isl-org/MiDaS": export(args.midas_git, "midas", ref_dir),
               "rwightman/gen-efficientnet-pytorch": export(args.geffnet_git, "geffnet", ref_dir)}
    model = official_model(ref_dir)
    keys = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    state = seeded_state_dict({k: s for k, s in keys}, args.seed)

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "keys.json"), "w") as f:
        json.dump({"model": "midas_v21_small_256", "keys": keys}, f, indent=0)
    stats = {}
    for i, (height, width) in enumerate(SIZES):
        model = official_model(ref_dir)  # fresh: exportable padding is frozen at the first input size
        model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        x = normalised_input(height, width, args.seed + 1 + i)
        with torch.no_grad():
            y = model(torch.from_numpy(x)).numpy().astype(np.float32)  # (1, h, w)
        np.save(os.path.join(args.out, f"input_{height}x{width}.npy"), x)
        np.save(os.path.join(args.out, f"output_{height}x{width}.npy"), y)
        stats[f"{height}x{width}"] = {"min": float(y.min()), "max": float(y.max()),
                                      "zero_fraction": float((y == 0).mean())}
    meta = {"seed": args.seed, "commits": commits, "torch": torch.__version__, "sizes": [list(s) for s in SIZES],
            "output_stats": stats}
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
