"""Marigold's parts, PyTorch vs MindSpore on CPU: per-call median time, first call and peak RSS.

Parts: the SD2-size Marigold UNet (8 input channels, 77 text tokens), the SD VAE encode / decode and TAESD
(AutoencoderTiny, default config) encode / decode, at each input size (latents are 1/8 of it). Weights are
random and identical on both sides: diffusers writes them once with save_pretrained (the UNet and VAE of
``write_marigold_folder(size='sd2')``, TAESD of ``write_taesd_folder(size='sd')``), our side loads the same
files into mindone's classes with the Marigold engine's loader. Backends:

- ``torch``: diffusers on PyTorch, ``torch.set_num_threads(2)``.
- ``pynative``: mindone on MindSpore PyNative through ``mindspore_device.configure('cpu')``.
- ``graph``: the same in GRAPH_MODE; the call is one compiled Cell (as the Marigold engine does),
  so the first call includes compilation.

Every (size, part, backend) runs in its own subprocess, one at a time, so peak RSS (ru_maxrss, which
includes loading the weights) belongs to that configuration alone. Prints a markdown table.

    python bench/bench_marigold_parts.py --sizes 320x240 640x480 --parts unet vae_encode vae_decode \
        taesd_encode taesd_decode --backends torch pynative graph --repeats 3
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
ROOT = os.path.dirname(HERE)
DEFAULT_FOLDER = os.path.expanduser("~/.cache/depth_ms/bench/marigold-sd2-random")
DEFAULT_TAESD = os.path.expanduser("~/.cache/depth_ms/bench/taesd-random")
PARTS = ("unet", "vae_encode", "vae_decode", "taesd_encode", "taesd_decode")
BACKENDS = ("torch", "pynative", "graph")
TEXT_TOKENS, TEXT_DIM, LATENT_C = 77, 1024, 4


def ensure_weights(folder: str, taesd: str) -> None:
    """Write the random real-size checkpoints once (Marigold folder about 3.5 GB, TAESD 10 MB)."""
    sys.path.insert(0, os.path.join(ROOT, "test", "models"))
    if not os.path.isfile(os.path.join(folder, "model_index.json")):
        from marigold_checkpoints import write_marigold_folder

        print(f"[parts] writing a random SD2-size Marigold checkpoint to {folder} (once)", file=sys.stderr)
        write_marigold_folder(folder, size="sd2")
    if not os.path.isfile(os.path.join(taesd, "config.json")):
        from marigold_checkpoints import write_taesd_folder

        print(f"[parts] writing a random TAESD to {taesd} (once)", file=sys.stderr)
        write_taesd_folder(taesd, size="sd")


def with_sd2_text_encoder(folder: str) -> str:
    """``folder`` + '-sd2text': the same checkpoint (parts linked) with a real-size SD2 text encoder.

    The default folder's text encoder is one layer with a 3-token vocabulary (49 MB); the one
    Marigold v1-1 ships has 23 layers and 49408 tokens (1.4 GB). diffusers' pipeline keeps it loaded,
    our loader frees it after the empty-prompt embedding, so peak memory compares fairly only with it.
    """
    target = folder.rstrip("/") + "-sd2text"
    if os.path.isfile(os.path.join(target, "text_encoder", "model.safetensors")):
        return target
    sys.path.insert(0, os.path.join(ROOT, "test", "models"))
    from marigold_checkpoints import write_sd2_text_encoder

    os.makedirs(target, exist_ok=True)
    for name in ("model_index.json", "unet", "vae", "scheduler", "tokenizer"):
        if not os.path.lexists(os.path.join(target, name)):
            os.symlink(os.path.join(os.path.abspath(folder), name), os.path.join(target, name))
    print(f"[parts] writing a random SD2-size text encoder to {target} (once)", file=sys.stderr)
    write_sd2_text_encoder(os.path.join(target, "text_encoder"))
    return target


def inputs(part: str, width: int, height: int) -> list:
    """Numpy inputs of one call, the same on both sides."""
    rng = np.random.default_rng(0)
    lat = (1, LATENT_C, height // 8, width // 8)
    if part == "unet":
        return [rng.standard_normal((1, 2 * LATENT_C) + lat[2:]).astype(np.float32), np.array([999], np.int64),
                rng.standard_normal((1, TEXT_TOKENS, TEXT_DIM)).astype(np.float32)]
    if part.endswith("decode"):
        return [rng.standard_normal(lat).astype(np.float32)]
    return [rng.uniform(-1, 1, (1, 3, height, width)).astype(np.float32)]


def _subfolder(part: str, folder: str, taesd: str) -> str:
    return taesd if part.startswith("taesd") else os.path.join(folder, "unet" if part == "unet" else "vae")


def torch_call(part: str, path: str):
    import torch
    import diffusers

    torch.set_num_threads(2)
    cls = {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL", "taesd": "AutoencoderTiny"}[part.split("_")[0]]
    model = getattr(diffusers, cls).from_pretrained(path).eval()
    calls = {
        "unet": lambda x, t, c: model(x, t, c).sample,
        "vae_encode": lambda x: model.encode(x).latent_dist.mode(),
        "vae_decode": lambda z: model.decode(z).sample,
        "taesd_encode": lambda x: model.encode(x).latents,
        "taesd_decode": lambda z: model.decode(z).sample,
    }

    def run(arrays):
        with torch.no_grad():
            return calls[part](*[torch.from_numpy(a) for a in arrays]).numpy()

    return run


def mindspore_call(part: str, path: str, mode: str, context: dict):
    sys.path.insert(0, os.path.join(ROOT, "src"))
    from depth_ms.models import mindspore_device

    mindspore_device.configure("cpu", mode=mode)
    import mindspore as ms

    if context:  # experiments, e.g. {"jit_config": {"jit_level": "O0"}} or {"memory_optimize_level": "O1"}
        ms.set_context(**context)
    from mindspore import nn
    import mindone.diffusers as md

    cls = {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL", "taesd": "AutoencoderTiny"}[part.split("_")[0]]
    from depth_ms.models.marigold.checkpoint import load_diffusers_model

    model = load_diffusers_model(getattr(md, cls), path)  # the engine's loader (one copy of the weights)
    latent_c = LATENT_C

    class Call(nn.Cell):  # one Cell per call, so GRAPH_MODE compiles it whole (as the engine's Cells)
        def __init__(self):
            super().__init__()
            self.model = model

        def construct(self, *xs):
            if part == "unet":
                return self.model(*xs)[0]
            if part == "vae_encode":
                return self.model.encode(xs[0])[0][:, :latent_c]  # posterior mean (mode)
            if part == "taesd_encode":
                return self.model.encode(xs[0])[0]
            return self.model.decode(xs[0])[0]

    cell = Call()
    cell.set_train(False)

    def run(arrays):
        return cell(*[ms.Tensor(a) for a in arrays]).asnumpy()

    return run


def worker(part: str, width: int, height: int, backend: str, repeats: int, folder: str, taesd: str,
           save: str | None, context: dict) -> dict:
    path = _subfolder(part, folder, taesd)
    t = time.perf_counter()
    run = torch_call(part, path) if backend == "torch" else mindspore_call(part, path, backend, context)
    load = time.perf_counter() - t
    arrays = inputs(part, width, height)
    t = time.perf_counter()
    out = run(arrays)
    first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = run(arrays)
        times.append(time.perf_counter() - t)
    if save:
        np.save(save, out)
    return dict(load_s=load, first_s=first, median_s=float(np.median(times)), min_s=float(np.min(times)),
                peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, shape=list(out.shape))


def run_config(args, part: str, size: tuple, backend: str, save: str | None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", part, f"{size[0]}x{size[1]}", backend,
           "--repeats", str(args.repeats), "--folder", args.folder, "--taesd", args.taesd, "--ms-context", args.ms_context]
    if save:
        cmd += ["--save", save]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return dict(error=" | ".join(tail)[:300])
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["320x240", "640x480"], help="input WxH (latents /8)")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after the first")
    parser.add_argument("--folder", default=DEFAULT_FOLDER, help="Marigold folder with unet/ and vae/")
    parser.add_argument("--taesd", default=DEFAULT_TAESD, help="AutoencoderTiny folder")
    parser.add_argument("--ms-context", default="{}", help="JSON of extra mindspore.set_context arguments")
    parser.add_argument("--json", default="", help="also write the rows to this JSON file")
    parser.add_argument("--worker", nargs=3, metavar=("PART", "SIZE", "BACKEND"), help=argparse.SUPPRESS)
    parser.add_argument("--save", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        part, size, backend = args.worker
        width, height = (int(v) for v in size.split("x"))
        print(json.dumps(worker(part, width, height, backend, args.repeats, args.folder, args.taesd, args.save,
                                json.loads(args.ms_context))))
        return

    ensure_weights(args.folder, args.taesd)
    rows = []
    print(f"{machine_line()}:\n")
    print("| part | input | backend | median ms | min ms | first call s | peak RSS GB | vs torch | max abs diff |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for size_text in args.sizes:
            size = tuple(int(v) for v in size_text.split("x"))
            for part in args.parts:
                ref_ms, ref_out = None, None
                for backend in args.backends:
                    save = os.path.join(tmp, f"{part}-{size_text}-{backend}.npy")
                    r = run_config(args, part, size, backend, save)
                    r.update(part=part, size=size_text, backend=backend)
                    rows.append(r)
                    if "error" in r:
                        print(f"| {part} | {size_text} | {backend} | failed: {r['error']} | | | | | |", flush=True)
                        continue
                    out = np.load(save)
                    if backend == "torch":
                        ref_ms, ref_out = r["median_s"], out
                    ratio = f"{r['median_s'] / ref_ms:.2f}x" if ref_ms else ""
                    diff = f"{float(np.abs(out - ref_out).max()):.1e}" if ref_out is not None and \
                        backend != "torch" else ""
                    r["diff"] = diff
                    print(f"| {part} | {size_text} | {backend} | {r['median_s'] * 1e3:.0f} | {r['min_s'] * 1e3:.0f} | "
                          f"{r['first_s']:.1f} | {r['peak_rss_gb']:.2f} | {ratio} | {diff} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
