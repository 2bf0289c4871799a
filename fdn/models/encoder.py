"""MobileNet-v2 (width 1.0) truncated after the 320-channel block, returning the four decoder taps.

Taps: l1 24 ch at stride 4, l2 32 ch at stride 8, l3 96 ch at stride 16, l4 320 ch at stride 32. 3x3 convs pad 1
on every side, also at stride 2 (PyTorch), so a 131-pixel side gives 66, 33, 17, 9, 5. The official encoder's
first inverted residual (expansion 1) still has a 32->32 expansion conv; torchvision's has none
(``expand_first_block=False`` builds that layout).
"""

from __future__ import annotations

from flax import linen as nn

from fdn.models import names
from fdn.models.layers import BatchNorm, Conv, ConvBN, DepthwiseConv, activate

# (expansion t, out channels c, repeats n, first stride s) for the official layer2..layer8.
MOBILENET_V2_GROUPS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
# Indices into MOBILENET_V2_GROUPS whose last output is a decoder tap (layer3, layer4, layer6, layer8).
TAP_GROUPS = (1, 2, 4, 6)
TAP_CHANNELS = (24, 32, 96, 320)


class InvertedResidual(nn.Module):
    out_channels: int
    stride: int
    expansion: int
    expand: bool = True

    @nn.compact
    def __call__(self, x, train: bool):
        in_channels = x.shape[-1]
        hidden = in_channels * self.expansion
        y = x
        if self.expand:
            y = ConvBN(hidden, 1, activation="relu6", name=names.EXPAND)(y, train)
        y = DepthwiseConv(3, self.stride, 1, name=names.DW_CONV)(y)
        y = activate(BatchNorm(name=names.DW_BN)(y, train), "relu6")
        y = Conv(self.out_channels, 1, name=names.PROJECT_CONV)(y)
        y = BatchNorm(name=names.PROJECT_BN)(y, train)
        if self.stride == 1 and in_channels == self.out_channels:
            y = x + y
        return y


class MobileNetV2Encoder(nn.Module):
    expand_first_block: bool = True

    @nn.compact
    def __call__(self, x, train: bool = False):
        """``x``: (N, H, W, 3) normalised images. Returns [l1, l2, l3, l4]."""
        x = ConvBN(32, 3, stride=2, padding=1, activation="relu6", name=names.STEM)(x, train)
        taps = []
        for g, (t, c, n, s) in enumerate(MOBILENET_V2_GROUPS):
            for j in range(n):
                expand = t != 1 or self.expand_first_block
                x = InvertedResidual(c, s if j == 0 else 1, t, expand, name=names.encoder_block_name(g, j))(x, train)
            if g in TAP_GROUPS:
                taps.append(x)
        return taps
