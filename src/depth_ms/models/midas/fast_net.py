"""A small MiDaS-kind network that the package trains itself: plain residual encoder, MiDaS decoder.

MiDaS v2.1 small's EfficientNet encoder is built from depthwise convolutions, whose backward pass MindSpore
runs about 80x slower than the forward on CPU (1.47 s against 18 ms for one 96-channel layer at 48x64,
batch 8), which makes it untrainable on a CPU. This network keeps MiDaS' structure and conventions and
swaps the encoder for dense 3x3 convolutions:

- encoder: stem (3x3 stride 2, BatchNorm, ReLU), then four stages, each a 3x3 stride-2 convolution with
  BatchNorm and ReLU and ``blocks`` pre-activation residual units ``x + bn(conv(relu(bn(conv(relu(x))))))``;
  outputs at strides 4, 8, 16, 32 with ``widths`` channels;
- decoder: MiDaS small's (:class:`~depth_ms.models.midas.small_net.Decoder`): 3x3 projections and four
  RefineNet fusion blocks; the output head (3x3 conv, ReLU, 1x1 conv, ReLU: non-negative relative inverse
  depth) runs at half resolution and is then upsampled x2 bilinearly. MiDaS runs a 3x3 convolution at full
  resolution there, which MindSpore trains at about 8 GFLOP/s on CPU (16 channels at 128x96, batch 8:
  170 ms per step for that one layer).

For inference every BatchNorm is folded into its convolution, and the residual units become MiDaS'
ResidualConvUnit, which runs on the native kernels like the decoder's. The architecture travels with the
weights as safetensors metadata (:func:`arch_metadata`), so a trained file loads without other files.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np

from mindspore import nn

from depth_ms.core.config import from_dict
from depth_ms.models.base import EstimatorError

from .small_net import STRIDE, BatchNorm2d, Conv2d, Decoder, ResidualConvUnit, Upsample2x, fold, torch_conv
from .state_keys import state_problems

ARCH_METADATA_KEY = "depth_ms.fast_depth_arch"  # safetensors metadata: JSON of FastDepthArch
# safetensors metadata: the resolution (target side of MiDaS' resize) the network was trained to run at; a
# CNN trained at one image scale loses accuracy at another, so the estimator uses it unless told otherwise
RESOLUTION_METADATA_KEY = "depth_ms.resolution"


@dataclass(frozen=True)
class FastDepthArch:
    """Channel counts and depth of :class:`FastDepthNet` (defaults: the shipped model's)."""

    stem: int = 24  # channels at stride 2
    widths: tuple[int, ...] = (32, 64, 96, 160)  # encoder outputs at strides 4, 8, 16, 32
    blocks: tuple[int, ...] = (1, 1, 2, 1)  # residual units per stage
    features: int = 16  # decoder width (MiDaS small: 64)
    head: int = 8  # channels of the head's 3x3 convolution (MiDaS small: 32)

    def validate(self) -> None:
        channels = (self.stem, *self.widths, self.features, self.head)
        if len(self.widths) != 4 or len(self.blocks) != 4:
            raise ValueError(f"widths and blocks need 4 stages, got {self.widths}, {self.blocks}")
        if any(c < 8 or c % 8 for c in channels) or self.features % 16 or any(b < 0 for b in self.blocks):
            raise ValueError(f"channels must be multiples of 8 (features of 16), blocks >= 0: {self}")


def _conv(in_channels: int, out_channels: int, stride: int, rng: np.random.Generator) -> Conv2d:
    """Bias-free 3x3 convolution (BatchNorm follows), padding 1."""
    return Conv2d(in_channels, out_channels, 3, stride, (1, 1, 1, 1), bias=False, rng=rng)


class ResidualUnitBN(ResidualConvUnit):
    """``x + bn2(conv2(relu(bn1(conv1(relu(x))))))``: MiDaS' unit with BatchNorm, folded for inference."""

    def __init__(self, channels: int, rng: np.random.Generator) -> None:
        super().__init__(channels, rng)
        self.conv1 = _conv(channels, channels, 1, rng)
        self.conv2 = _conv(channels, channels, 1, rng)
        self.bn1 = BatchNorm2d(channels)
        self.bn2 = BatchNorm2d(channels)

    def fold_batchnorm(self) -> None:
        fold(self.conv1, self.bn1)
        fold(self.conv2, self.bn2)

    def construct(self, x):
        if self.native:
            return self.conv2.run_native(self.conv1.run_native(x), x)  # (N, C, H, W)
        out = self.bn1(self.conv1(self.relu(x)))  # (N, C, H, W)
        return self.bn2(self.conv2(self.relu(out))) + x


class DownBlock(nn.Cell):
    """3x3 stride-2 convolution, BatchNorm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, rng: np.random.Generator) -> None:
        super().__init__()
        self.conv = _conv(in_channels, out_channels, 2, rng)
        self.bn = BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def construct(self, x):
        return self.relu(self.bn(self.conv(x)))  # (N, C_out, H / 2, W / 2)


class HalfResolutionDecoder(Decoder):
    """MiDaS small's decoder with the output head at half resolution, upsampled at the very end."""

    def __init__(self, rng: np.random.Generator, encoder_channels: tuple, features: int, head: int) -> None:
        super().__init__(rng, encoder_channels, features, head)
        self.output_conv = nn.SequentialCell([
            torch_conv(features, head, 3, rng=rng),
            nn.ReLU(),
            torch_conv(head, 1, 1, rng=rng),
            nn.ReLU(),  # non-negative, like MiDaS
            Upsample2x(align_corners=False),
        ])

    def use_native(self, enabled: bool = True, channels_last_inputs: bool = False) -> None:
        super().use_native(enabled, channels_last_inputs)
        self.output_conv[0].set_native("PostRelu" if enabled else "")  # with the ReLU after it
        self.output_conv[2].set_native("")

    def construct(self, layer_1, layer_2, layer_3, layer_4):
        path_4 = self.refinenet4(self.layer4_rn(layer_4))  # (N, 8 F, H / 16, W / 16)
        path_3 = self.refinenet3(path_4, self.layer3_rn(layer_3))  # (N, 4 F, H / 8, W / 8)
        path_2 = self.refinenet2(path_3, self.layer2_rn(layer_2))  # (N, 2 F, H / 4, W / 4)
        path_1 = self.refinenet1(path_2, self.layer1_rn(layer_1))  # (N, F, H / 2, W / 2)
        head = self.output_conv
        if head[0].native_variant == "PostRelu":
            out = head[0].run_native(path_1)  # (N, head, H / 2, W / 2)
        else:
            out = head[1](head[0](path_1))
        return head[4](head[3](head[2](out)))  # (N, 1, H, W)


class Encoder(nn.Cell):
    """Stem and four stages; returns the stage outputs (strides 4, 8, 16, 32)."""

    def __init__(self, arch: FastDepthArch, rng: np.random.Generator) -> None:
        super().__init__()
        self.stem = DownBlock(3, arch.stem, rng)
        stages, channels = [], arch.stem
        for width, blocks in zip(arch.widths, arch.blocks):
            stages.append(nn.SequentialCell([DownBlock(channels, width, rng)]
                                            + [ResidualUnitBN(width, rng) for _ in range(blocks)]))
            channels = width
        self.stages = nn.CellList(stages)

    def units(self) -> list:
        return [cell for stage in self.stages for cell in stage.cells() if isinstance(cell, ResidualUnitBN)]

    def downs(self) -> list:
        return [self.stem] + [stage[0] for stage in self.stages]

    def construct(self, x):
        out = self.stem(x)  # (N, stem, H / 2, W / 2)
        s4 = self.stages[0](out)  # (N, widths[0], H / 4, W / 4)
        s8 = self.stages[1](s4)  # (N, widths[1], H / 8, W / 8)
        s16 = self.stages[2](s8)  # (N, widths[2], H / 16, W / 16)
        s32 = self.stages[3](s16)  # (N, widths[3], H / 32, W / 32)
        return s4, s8, s16, s32


class FastDepthNet(nn.Cell):
    """Normalised (N, 3, H, W) float32 -> non-negative relative inverse depth (N, H, W); H, W multiples of 32."""

    def __init__(self, arch: FastDepthArch = FastDepthArch(), seed: int = 0) -> None:
        super().__init__()
        arch.validate()
        rng = np.random.default_rng(seed)
        self.arch = arch
        self.encoder = Encoder(arch, rng)
        self.decoder = HalfResolutionDecoder(rng, arch.widths, arch.features, arch.head)

    def prepare_inference(self, native: bool = True) -> None:
        """Fold every BatchNorm and, with ``native``, put the 3x3 stride-1 convolutions on native kernels.

        Call again after changing parameters (folded weights are copies), before compiling.
        """
        self.set_train(False)
        for down in self.encoder.downs():
            fold(down.conv, down.bn)
        for unit in self.encoder.units():
            unit.fold_batchnorm()
            unit.use_native(native)
        self.decoder.use_native(native)

    def construct(self, x):
        height, width = x.shape[2], x.shape[3]
        if height < STRIDE or width < STRIDE or height % STRIDE != 0 or width % STRIDE != 0:
            raise ValueError(f"the fast depth net needs input sides that are multiples of {STRIDE} (>= {STRIDE}), "
                             f"got {height}x{width} (HxW)")
        return self.decoder(*self.encoder(x)).squeeze(1)  # (N, H, W)


def arch_metadata(arch: FastDepthArch) -> dict[str, str]:
    """safetensors metadata that records ``arch``."""
    return {ARCH_METADATA_KEY: json.dumps(dataclasses.asdict(arch), sort_keys=True)}


def resolution_metadata(resolution: int) -> dict[str, str]:
    """safetensors metadata that records the input resolution the network was trained for."""
    return {RESOLUTION_METADATA_KEY: str(int(resolution))}


def resolution_from_metadata(metadata: dict | None) -> int:
    """The recorded resolution, or 0 when none is recorded."""
    try:
        return int((metadata or {}).get(RESOLUTION_METADATA_KEY, 0))
    except ValueError:
        return 0


def arch_from_metadata(metadata: dict | None, source: str) -> FastDepthArch | None:
    """The architecture a weights file records, or None when it records none (an official MiDaS file)."""
    text = (metadata or {}).get(ARCH_METADATA_KEY)
    if not text:
        return None
    try:
        arch = from_dict(FastDepthArch, json.loads(text), "arch")  # strict; validates
    except ValueError as e:  # ConfigError, JSONDecodeError and FastDepthArch.validate are ValueErrors
        raise EstimatorError(f"{source}: bad fast depth architecture in its metadata ({e}): {text}") from e
    return arch


def load_state(net: FastDepthNet, tensors: dict[str, np.ndarray], source: str, native: bool = True) -> FastDepthNet:
    """Copy ``tensors`` into ``net`` and prepare it for inference; EstimatorError on any key or shape mismatch."""
    import mindspore as ms


    params = dict(net.parameters_and_names())
    problems = state_problems({k: tuple(v.shape) for k, v in tensors.items()},
                              {k: tuple(p.shape) for k, p in params.items()})
    if problems:
        raise EstimatorError(f"fast depth weights {source} do not match their recorded architecture: "
                             + "; ".join(problems))
    for name, param in params.items():
        param.set_data(ms.Tensor(np.ascontiguousarray(tensors[name], np.float32)))
    net.prepare_inference(native)
    return net


def load_relative_net(path: str, native: bool = True) -> tuple[nn.Cell, int]:
    """(network, recorded resolution or 0) of a MiDaS-family ``.safetensors`` file, ready for inference.

    A file whose metadata records a FastDepthArch (the package's own trained models) builds that network;
    any other file is taken as the official MiDaS v2.1 small state dict.
    """
    from depth_ms.models import weights

    weights.require(path, "MiDaS v2.1 small weights")
    from safetensors import safe_open

    from .small_net import MidasSmall
    from .small_net import load_state as load_midas_state

    try:
        with safe_open(path, "numpy") as handle:
            metadata = handle.metadata()
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as e:  # noqa: BLE001 (any parse failure is a bad file)
        raise EstimatorError(f"cannot read MiDaS small weights {path}: {e}") from e
    arch = arch_from_metadata(metadata, path)
    if arch is None:
        return load_midas_state(MidasSmall(), tensors, path, native), resolution_from_metadata(metadata)
    return load_state(FastDepthNet(arch), tensors, path, native), resolution_from_metadata(metadata)


__all__ = ["FastDepthArch", "FastDepthNet", "arch_metadata", "arch_from_metadata", "load_relative_net", "load_state",
           "resolution_metadata", "resolution_from_metadata", "ARCH_METADATA_KEY", "RESOLUTION_METADATA_KEY"]
