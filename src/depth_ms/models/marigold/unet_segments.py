"""The Marigold UNet pass as one compiled graph per block, for graph mode on CPU.

MindSpore 2.7's CPU graphs keep intermediate tensors alive longer than PyNative does: views
(transposes, slices) and the ops next to them are never freed early, so one graph of the whole
SD2 UNet held 1.2 GB more than the same pass in PyNative at 640x480 (and 2.1 GB before the
device layer lost most of its transposes). Between graphs everything is freed, so
:class:`SegmentedUNet` compiles the stem, each down block, the mid block, each up block and the
output head as separate Cells and runs the short glue between them (mindone's
``UNet2DConditionModel.construct`` for Marigold's configuration: no class, addition or image-hint
embeddings, no adapters or ControlNet residuals) in Python. The blocks' kernels are the same, so the
result equals the whole-graph pass to float rounding.
"""
from __future__ import annotations


def supports(unet) -> bool:
    """True for the plain text-conditioned configuration this glue reproduces (Marigold's SD2 UNet)."""
    cfg = unet.config
    return (unet.class_embedding is None and cfg.get("addition_embed_type") is None and not cfg.get("center_input_sample")
            and getattr(unet, "encoder_hid_proj", None) is None and getattr(unet, "position_net", None) is None
            and unet.mid_block is not None)


class SegmentedUNet:
    """``unet(concat(image_latent, latent), t, text)[0]`` as 2 + len(down) + 1 + len(up) graph calls."""

    def __init__(self, unet) -> None:
        from mindspore import nn, ops

        if not supports(unet):
            raise ValueError("this UNet configuration is not the plain text-conditioned one")

        class Stem(nn.Cell):
            def __init__(self):
                super().__init__()
                self.unet = unet

            def construct(self, image_latent, latent, timestep):
                sample = ops.concat((image_latent, latent), 1)  # (B, 2C, h, w)
                emb = self.unet.time_embedding(self.unet.get_time_embed(sample=sample, timestep=timestep), None)
                if self.unet.time_embed_act is not None:
                    emb = self.unet.time_embed_act(emb)
                return self.unet.conv_in(sample), emb  # (B, C0, h, w), (B, E)

        class Down(nn.Cell):
            def __init__(self, block):
                super().__init__()
                self.block = block

            def construct(self, sample, emb, text):
                if self.block.has_cross_attention:
                    return self.block(hidden_states=sample, temb=emb, encoder_hidden_states=text)
                return self.block(hidden_states=sample, temb=emb)  # (sample, residual samples)

        class Mid(nn.Cell):
            def __init__(self):
                super().__init__()
                self.block = unet.mid_block

            def construct(self, sample, emb, text):
                if self.block.has_cross_attention:
                    return self.block(sample, emb, encoder_hidden_states=text)
                return self.block(sample, emb)

        class Up(nn.Cell):
            def __init__(self, block):
                super().__init__()
                self.block = block

            def construct(self, sample, emb, text, upsample_size, *residuals):
                if self.block.has_cross_attention:
                    return self.block(hidden_states=sample, temb=emb, res_hidden_states_tuple=residuals,
                                      encoder_hidden_states=text, upsample_size=upsample_size)
                return self.block(hidden_states=sample, temb=emb, res_hidden_states_tuple=residuals,
                                  upsample_size=upsample_size)

        class Head(nn.Cell):
            def __init__(self):
                super().__init__()
                self.unet = unet

            def construct(self, sample):
                if self.unet.conv_norm_out is not None:
                    sample = self.unet.conv_act(self.unet.conv_norm_out(sample))
                return self.unet.conv_out(sample)  # (B, C, h, w)

        self.stem, self.mid, self.head = Stem(), Mid(), Head()
        self.downs = [Down(block) for block in unet.down_blocks]
        self.ups = [Up(block) for block in unet.up_blocks]
        self.up_factor = 2 ** unet.num_upsamplers
        self.up_layers = list(unet.layers_per_resnet_in_up_blocks)
        for cell in (self.stem, self.mid, self.head, *self.downs, *self.ups):
            cell.set_train(False)

    def __call__(self, image_latent, latent, timestep, text):
        """Same inputs as the engine's whole-graph Denoise cell; returns the UNet output (B, C, h, w)."""
        sample, emb = self.stem(image_latent, latent, timestep)
        forward_size = any(dim % self.up_factor for dim in sample.shape[-2:])
        residuals = (sample,)
        for down in self.downs:
            sample, res = down(sample, emb, text)
            residuals += tuple(res)
        sample = self.mid(sample, emb, text)
        for i, up in enumerate(self.ups):
            count = self.up_layers[i]
            res, residuals = residuals[-count:], residuals[:-count]
            size = tuple(residuals[-1].shape[2:]) if forward_size and i < len(self.ups) - 1 else None
            sample = up(sample, emb, text, size, *res)  # (a tuple argument would be compiled in as constants)
        return self.head(sample)
