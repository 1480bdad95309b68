"""Frames/s and peak RSS of the fast relative-depth estimators, MindSpore (graph, PyNative) beside PyTorch.

Every configuration (model x framework x mode) runs in its own subprocess, so peak RSS is per
configuration. Weights are random but real-size (configs of the official checkpoints), written once
with transformers' save_pretrained to --workdir and read by both sides, so both run the same network.
Timed: one full frame (preprocess, network, upsample to the input size) per call, after --warmup
calls per size (the first includes graph compilation; a node streams, so steady state is what counts). The table gives frames/s from the median and from the
best timed call (the best is the less noisy figure on a shared machine).

    .venv/bin/python bench/bench_fast_depth.py --models midas_shipped midas dpt_hybrid depth_anything_v2_small \
        dpt_large --sizes 320x240 256x256 848x480 --repeats 5 --modes graph pynative torch

``midas_shipped`` is the package's own sim-trained fast depth network as ``model:=midas`` runs it when no
official file is installed (MindSpore only: it has no PyTorch implementation); the MiDaS small rows beside it
are the like-for-like reference at the same input sizes.

MiDaS small: ours is the full estimator on random weights (``build_midas_small``); the PyTorch reference is
the official code (``MidasNet_small`` on gen-efficientnet's ``tf_efficientnet_lite3``, exportable) from the
git directories given by --midas-repo (``fetch`` isl-org/MiDaS and rwightman/gen-efficientnet-pytorch), with
the same preprocessing and upsampling.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
from tables import machine_line

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
MODELS = ("midas_shipped", "midas", "dpt_hybrid", "depth_anything_v2_small", "dpt_large")
RESOLUTION = {"midas": 256, "dpt_hybrid": 384, "dpt_large": 384, "depth_anything_v2_small": 518}
NO_FOLDER = ("midas", "midas_shipped")  # weights made by the worker itself, or shipped with the package


def real_config(model: str):
    """Configs of Intel/dpt-hybrid-midas, Intel/dpt-large, depth-anything/Depth-Anything-V2-Small-hf."""
    from transformers import DepthAnythingConfig, DPTConfig

    if model == "dpt_hybrid":  # ViT-B/16 on a BiT-R50 (3 stages), MiDaS v3 neck
        return DPTConfig(is_hybrid=True, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                         intermediate_size=3072, image_size=384, patch_size=16, backbone_out_indices=[2, 5, 8, 11],
                         neck_hidden_sizes=[256, 512, 768, 768], fusion_hidden_size=256, readout_type="project",
                         backbone_featmap_shape=[1, 1024, 24, 24])
    if model == "dpt_large":  # ViT-L/16 384
        return DPTConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                         image_size=384, patch_size=16, backbone_out_indices=[5, 11, 17, 23],
                         neck_hidden_sizes=[256, 512, 1024, 1024], fusion_hidden_size=256, readout_type="project")
    return DepthAnythingConfig()  # defaults = V2 small: DINOv2-S/14 (384, 12 layers, 6 heads), neck 48..384, 64


def processor_kwargs(model: str) -> dict:
    small = model.startswith("depth")
    return dict(size={"height": RESOLUTION[model], "width": RESOLUTION[model]}, keep_aspect_ratio=True,
                ensure_multiple_of=14 if small else 32, resample=3,
                image_mean=[0.485, 0.456, 0.406] if small else [0.5] * 3,
                image_std=[0.229, 0.224, 0.225] if small else [0.5] * 3)


def write_folder(model: str, workdir: str) -> str:
    """Real-size random-weight checkpoint + processor (subprocess: torch stays out of the timed ones)."""
    folder = os.path.join(workdir, model)
    if os.path.isfile(os.path.join(folder, "model.safetensors")):
        return folder
    import torch
    import transformers

    torch.manual_seed(0)
    cls = transformers.DepthAnythingForDepthEstimation if model.startswith("depth") else \
        transformers.DPTForDepthEstimation
    cls(real_config(model)).eval().save_pretrained(folder, safe_serialization=True)
    transformers.DPTImageProcessor(**processor_kwargs(model)).save_pretrained(folder)
    return folder


def frame(width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------ workers


def mindspore_runner(model: str, folder: str, mode: str):
    sys.path.insert(0, SRC)
    from depth_ms.core.types import Frame
    from depth_ms.models import registry

    if model == "midas":  # random weights saved as the converter writes them, then loaded through the registry
        from depth_ms.models import mindspore_device

        mindspore_device.configure("cpu")
        from safetensors.numpy import save_file

        from depth_ms.models.midas.small_net import build_midas_small, state_names

        folder = os.path.join(os.getcwd(), "midas_v21_small_256_random.safetensors")
        save_file({name: p.asnumpy() for name, p in state_names(build_midas_small()).items()}, folder)
    if model == "midas_shipped":
        from depth_ms.models import weights

        model, folder = "midas", weights.shipped("midas")
    est = registry.create(model, {"weights": folder}, device="cpu", mode=mode)
    if mode == "graph" and not getattr(est, "graph", False):
        raise RuntimeError("runs PyNative only (mindone's Dinov2 does not compile)")
    return lambda rgb: est.predict(Frame(rgb=rgb, stamp=0.0)).depth


def torch_runner(model: str, folder: str, midas_repo: str):
    import torch

    torch.set_num_threads(2)
    if model == "midas_shipped":
        raise RuntimeError("no PyTorch implementation (the package's own network): see the midas rows")

    if model == "midas":  # the official code (fetched mirrors, exported to a temporary folder), random weights
        import tempfile

        sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))
        from make_midas_small_fixture import export, official_model

        midas_git, geffnet_git = midas_repo.split(",")
        ref_dir = tempfile.mkdtemp(prefix="midas_ref_")
        export(midas_git, "midas", ref_dir)
        export(geffnet_git, "geffnet", ref_dir)
        nets = {}  # exportable=True freezes the "same" padding at a model's first input size: one per size

        def net(x):
            if x.shape not in nets:
                nets[x.shape] = official_model(ref_dir).eval()
            return nets[x.shape](x)

        sys.path.insert(0, SRC)
        from depth_ms.models.midas import preprocess as pp

        prep = pp.Preprocessing(height=256, width=256, rule="upper_bound", resample="cv2_cubic")

        def run(rgb):
            x = torch.from_numpy(pp.preprocess(rgb, prep))
            with torch.no_grad():
                pred = net(x)  # (1, h, w)
                return torch.nn.functional.interpolate(pred[:, None], size=rgb.shape[:2], mode="bicubic",
                                                       align_corners=False)[0, 0].numpy()
        return run

    import transformers
    from transformers.modeling_outputs import DepthEstimatorOutput

    cls = transformers.DepthAnythingForDepthEstimation if model.startswith("depth") else \
        transformers.DPTForDepthEstimation
    net = cls.from_pretrained(folder).eval()
    processor = transformers.DPTImageProcessor.from_pretrained(folder)

    def dpt_any_size(pixel_values):
        """transformers' DPT with the token grid given to the neck (its forward assumes square grids)."""
        h, w = pixel_values.shape[2:]
        hybrid = bool(net.config.is_hybrid)
        if hybrid:
            net.dpt.embeddings.image_size = (h, w)
        out = net.dpt(pixel_values, output_hidden_states=True, return_dict=True)
        idx = net.config.backbone_out_indices
        feats = (list(out.intermediate_activations) + [out.hidden_states[i + 1] for i in idx[2:]]) if hybrid \
            else [out.hidden_states[i + 1] for i in idx]
        p = net.config.patch_size
        return net.head(net.neck(feats, h // p, w // p))

    def run(rgb):
        inputs = processor(images=rgb, return_tensors="pt")
        with torch.no_grad():
            if model.startswith("depth"):
                outputs = net(**inputs)
            else:
                outputs = DepthEstimatorOutput(predicted_depth=dpt_any_size(inputs["pixel_values"]))
        return processor.post_process_depth_estimation(outputs, target_sizes=[rgb.shape[:2]])[0][
            "predicted_depth"].numpy()
    return run


def worker(args) -> None:
    """One configuration: build, then per size ``warmup`` calls (the first timed as 'first call') and
    ``repeats`` timed calls; JSON on stdout."""
    result = {"model": args.model, "mode": args.mode, "sizes": {}}
    try:
        start = time.perf_counter()
        if args.mode == "torch":
            run = torch_runner(args.model, args.folder, args.midas_repo)
        else:
            run = mindspore_runner(args.model, args.folder, args.mode)
        result["load_s"] = time.perf_counter() - start
        for size in args.sizes:
            width, height = (int(v) for v in size.split("x"))
            rgb = frame(width, height)
            start = time.perf_counter()
            depth = run(rgb)
            warm = time.perf_counter() - start
            assert depth.shape == (height, width) and np.isfinite(depth).all()
            for _ in range(args.warmup - 1):
                run(rgb)
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                run(rgb)
                times.append(time.perf_counter() - start)
            result["sizes"][size] = {"first_s": warm, "median_s": float(np.median(times)),
                                     "min_s": float(np.min(times)), "fps": 1.0 / float(np.median(times)),
                                     "best_fps": 1.0 / float(np.min(times))}
    except Exception as e:  # noqa: BLE001 (reported in the table)
        result["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("RESULT " + json.dumps(result), flush=True)


# ------------------------------------------------------------------------------------------- driver


def run_config(model, mode, folder, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--model", model, "--mode", mode,
           "--folder", folder or "", "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--midas-repo", args.midas_repo,
           "--sizes", *args.sizes]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=args.workdir)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"model": model, "mode": mode, "sizes": {}, "error": f"worker exit {proc.returncode}: {tail[:160]}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--sizes", nargs="+", default=["256x256", "848x480"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per size before timing (>= 1)")
    parser.add_argument("--modes", nargs="+", default=["graph", "pynative", "torch"],
                        choices=["graph", "pynative", "torch"])
    parser.add_argument("--workdir", default="/tmp/depth_ms_bench_fast_depth")
    parser.add_argument("--midas-repo", default="/work/.mirror/isl-org+MiDaS/repo,"
                        "/work/.mirror/rwightman+gen-efficientnet-pytorch/repo",
                        help="git dirs of isl-org/MiDaS and rwightman/gen-efficientnet-pytorch (fetch), comma-separated")
    parser.add_argument("--json", default="", help="also append every result as a JSON line here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--folder", default="", help=argparse.SUPPRESS)
    parser.add_argument("--write-folder", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.write_folder:
        print(write_folder(args.write_folder, args.workdir))
        return
    os.makedirs(args.workdir, exist_ok=True)
    rows = []
    print(machine_line())
    print(f"| model | framework / mode | {' | '.join(f'{s} fps median / best (first call s)' for s in args.sizes)} | "
          f"peak RSS MB | note |")
    print("|---|---|" + "---|" * len(args.sizes) + "---|---|", flush=True)
    for model in args.models:
        folder = ""
        if model not in NO_FOLDER:
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--write-folder", model, "--workdir",
                                  args.workdir], capture_output=True, text=True, env=env, check=True)
            folder = out.stdout.strip().splitlines()[-1]
        for mode in args.modes:
            r = run_config(model, mode, folder, args)
            rows.append(r)
            if args.json:
                with open(args.json, "a", encoding="utf-8") as f:
                    f.write(json.dumps(r) + "\n")
            cells = []
            for s in args.sizes:
                m = r["sizes"].get(s)
                cells.append(f"{m['fps']:.2f} / {m['best_fps']:.2f} ({m['first_s']:.1f})" if m else "-")
            label = "PyTorch" if mode == "torch" else f"MindSpore {mode}"
            print(f"| {model} | {label} | {' | '.join(cells)} | {r['peak_rss_mb']:.0f} | {r.get('error', '')} |"
                  if "peak_rss_mb" in r else f"| {model} | {label} | {' | '.join(cells)} | - | {r['error']} |",
                  flush=True)


if __name__ == "__main__":
    main()
