"""HRNet with an instance-norm stem: the land-cover network of the imperfect-label paper (3.2).

The network keeps a full-resolution branch from the stem to the head and fuses every branch
into every other one repeatedly, so fine spatial detail (the 3 m roads of the paper) is never
reconstructed from a coarse encoding. Parts, as in the paper's Figure 4:

- **stem**: 3x3 stride-2 convolution, **instance norm** (the paper's change: per-image
  statistics make the model less sensitive to the radiometry of each scene), ReLU, then a
  second 3x3 stride-2 conv-BN-ReLU as in HRNet [38] (``stem_convs=1`` keeps only the first,
  the literal reading of "a 2-strided 3x3 convolutional layer"); ``stem_norm="batch"`` gives
  the BN model of the paper's IN/BN comparison (Figure 8);
- **stage 1**: four ResNet bottlenecks of width 64 (output 256 channels);
- **stages 2-4**: 1, 4 and 3 multi-resolution modules; each runs four basic residual blocks
  on every branch and then a **fusion** in which every branch receives the sum of all
  branches brought to its resolution (1x1 conv + bilinear up-sampling from coarser branches,
  chains of stride-2 3x3 convs from finer ones); a **transition** before each stage adds the
  next branch (stride-2 3x3 conv from the coarsest one);
- **head** (HRNetV2): the four branches up-sampled to the finest one and concatenated, a 1x1
  conv-BN-ReLU, a 1x1 classifier, bilinear up-sampling to the input size.

The model returns logits; the softmax over the class scheme is applied by the consumers
(``TilePredictor``, the losses). Branch widths are C, 2C, 4C, 8C. The recipe
(``isamap-train --model hrnet``) builds the paper's **C = 24** (its Table 5 reports 16,812,946
parameters, what ``width=24`` builds here to within 0.01 %); ``width=18`` is HRNetV2-W18, the
smallest published HRNet, for CPU training, and what a model file that records no width
rebuilds (the constructor's default).

``channels={conv name: filters}`` builds a network whose prunable convolutions
(:meth:`HRNet.prunable_layers`) have fewer filters (``training.models.compact``): that is how a
pruned model file (``training.pruning``) rebuilds its compact network through the registry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import ModelError
from training.losses.segmentation import WEIGHTED_CE
from training.models.blocks import (
    BasicBlock,
    ConvBNReLU,
    ResidualBlocks,
    init_weights,
    resize_bilinear,
    resnet_stage,
)
from training.models.compact import PrunableLayer, resize_layers
from training.models.product import ProductChannels
from training.models.registry import ModelEntry, ModelRecipe

DEFAULT_WIDTH = 18  # the constructor's; the recipe passes the paper's PAPER_WIDTH
PAPER_WIDTH = 24  # section 3.2, Table 5
STAGE_MODULES: tuple[int, int, int] = (1, 4, 3)  # multi-resolution modules of stages 2, 3, 4
BLOCKS_PER_BRANCH = 4
StemNorm = Literal["instance", "batch"]


# ------------------------------------------------------------------ training recipe
#: The paper's recipe (section 3.2, seed 003 lines 94 and 134): class-weighted cross-entropy
#: with the impervious class weighted 3 (by name, so any scheme with an ``impervious`` class
#: works), SGD lr 0.01 momentum 0.9, random 513 px crops re-drawn every epoch, batch 32, 120
#: epochs, C = 24. Not in the paper (the project's choices, docs/training.md "Recipes"):
#: weight decay 5e-4 (the paper names none; 5e-4 is what the HRNet segmentation reference
#: trains with at the same SGD 0.01 / momentum 0.9), the poly 0.9 decay (the project's
#: schedule for every model) and patience 120 (the paper trains a fixed 120 epochs; early
#: stopping then never cuts the run, the best validation epoch is kept). ``output_stride`` 32
#: is the coarsest branch (stem /4, three transitions /2): what the small-patch warning
#: measures; the head itself predicts at full resolution.
RECIPE = ModelRecipe(
    loss=WEIGHTED_CE, loss_kwargs={"class_weights": {"impervious": 3.0}},
    patch_size=513, crop_size=513, output_stride=32, optimizer="sgd", lr=0.01, momentum=0.9,
    weight_decay=5e-4, poly_power=0.9, batch_size=32, epochs=120, patience=120,
    model_kwargs={"width": PAPER_WIDTH}, source="seed 003 lines 94, 134")
#: Fine maps from a coarse product: the paper's method (its recipe, noisy-sample filtering at
#: its 20 %) plus the product as input (the ``product`` band, expanded by the network into its
#: classes one-hot and NLCD's developed cells' impervious fractions): the best arm of
#: ``python -m experiments.landcover`` before its keep rule (docs/landcover.md).
COARSE_RECIPE = dataclasses.replace(RECIPE, product_input=True, filter_noisy=0.2,
                                    source="seed 003 lines 94, 134; product input: "
                                           "docs/landcover.md")


# ------------------------------------------------------------------ parts
class Stem(nn.Module):
    """Stride-2 3x3 conv, instance (or batch) norm, ReLU; then HRNet's second stride-2 conv."""

    def __init__(self, in_ch: int, width: int = 64, norm: StemNorm = "instance",
                 convs: int = 2) -> None:
        super().__init__()
        if norm not in ("instance", "batch"):
            raise ModelError(f"stem_norm must be 'instance' or 'batch', got {norm!r}")
        if convs not in (1, 2):
            raise ModelError(f"stem_convs must be 1 or 2, got {convs!r}")
        self.conv1 = nn.Conv2d(in_ch, width, 3, stride=2, padding=1, bias=False)
        self.norm1 = (nn.InstanceNorm2d(width, affine=True) if norm == "instance"
                      else nn.BatchNorm2d(width))
        self.conv2 = ConvBNReLU(width, width, kernel=3, stride=2) if convs == 2 else None
        self.stride = 2 ** convs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x)))
        return self.conv2(x) if self.conv2 is not None else x


class Fusion(nn.Module):
    """Multi-resolution fusion: output branch i = ReLU(sum over j of branch j at i's size/width).

    ``paths[i][j]``: identity (j == i); 1x1 conv + BN then bilinear up-sampling (j > i,
    coarser); ``i - j`` stride-2 3x3 convs (j < i, finer), the intermediate ones keeping
    branch j's width with a ReLU, the last one switching to branch i's width.
    """

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        self.paths = nn.ModuleList(
            nn.ModuleList(self._path(channels, j, i) for j in range(len(channels)))
            for i in range(len(channels)))

    @staticmethod
    def _path(channels: Sequence[int], j: int, i: int) -> nn.Module:
        if j == i:
            return nn.Identity()
        if j > i:
            return nn.Sequential(nn.Conv2d(channels[j], channels[i], 1, bias=False),
                                 nn.BatchNorm2d(channels[i]))
        steps: list[nn.Module] = [ConvBNReLU(channels[j], channels[j], kernel=3, stride=2)
                                  for _ in range(i - j - 1)]
        steps.append(nn.Sequential(
            nn.Conv2d(channels[j], channels[i], 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels[i])))
        return nn.Sequential(*steps)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for i, paths in enumerate(self.paths):
            total = xs[i]
            for j, path in enumerate(cast(nn.ModuleList, paths)):
                if j != i:
                    total = total + resize_bilinear(path(xs[j]), xs[i].shape[-2:])
            out.append(F.relu(total))
        return out


class MultiResolutionModule(nn.Module):
    """Four basic residual blocks on every branch, then one fusion."""

    def __init__(self, channels: Sequence[int], blocks: int = BLOCKS_PER_BRANCH) -> None:
        super().__init__()
        self.branches = nn.ModuleList(ResidualBlocks(*(BasicBlock(c) for _ in range(blocks)))
                                      for c in channels)
        self.fuse = Fusion(channels)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.fuse([branch(x)
                          for branch, x in zip(self.branches, xs, strict=True)])


class Transition(nn.Module):
    """Before a stage: adapt existing branches' widths and add one branch at half resolution."""

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, c in enumerate(out_channels):
            if i < len(in_channels):
                same = in_channels[i] == c
                layers.append(nn.Identity() if same else ConvBNReLU(in_channels[i], c, kernel=3))
            else:
                layers.append(ConvBNReLU(in_channels[-1], c, kernel=3, stride=2))
        self.layers = nn.ModuleList(layers)
        self.inputs = len(in_channels)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [layer(xs[min(i, self.inputs - 1)]) for i, layer in enumerate(self.layers)]


class Stage(nn.Module):
    """A transition followed by ``modules`` multi-resolution modules."""

    def __init__(self, in_channels: Sequence[int], channels: Sequence[int], modules: int,
                 blocks: int = BLOCKS_PER_BRANCH) -> None:
        super().__init__()
        self.transition = Transition(in_channels, channels)
        self.modules_ = nn.ModuleList(MultiResolutionModule(channels, blocks)
                                      for _ in range(modules))

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = self.transition(xs)
        for module in self.modules_:
            xs = module(xs)
        return xs


class Head(nn.Module):
    """HRNetV2 head: branches up-sampled and concatenated, 1x1 conv-BN-ReLU, 1x1 classifier."""

    def __init__(self, channels: Sequence[int], num_classes: int) -> None:
        super().__init__()
        total = int(sum(channels))
        self.mix = ConvBNReLU(total, total, kernel=1)
        self.classifier = nn.Conv2d(total, num_classes, 1)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        merged = torch.cat([xs[0], *(resize_bilinear(x, xs[0].shape[-2:]) for x in xs[1:])], dim=1)
        return self.classifier(self.mix(merged))


# ------------------------------------------------------------------ the network
class HRNet(nn.Module):
    """HRNetV2 segmentation network with an instance-norm stem (see the module docstring).

    Args:
        in_channels / num_classes: input bands and output classes.
        width: C, the finest branch's width (branches C, 2C, 4C, 8C).
        widths: explicit branch widths (overrides ``width``).
        stem_norm: ``"instance"`` (the paper) or ``"batch"`` after the first convolution.
        stem_convs: 2 (HRNet's stem, output at 1/4) or 1 (output at 1/2).
        stem_width / stage1_width: stem channels and bottleneck width of stage 1 (64, 64).
        modules: multi-resolution modules of stages 2-4 (1, 4, 3).
        blocks: residual blocks per branch and module (4).
        channels: ``{conv name: filters}`` for pruned convolutions (see ``prunable_layers``).
        bands: the manifest's band names (needed with ``product_scheme``).
        product_scheme: the land-cover source of the input's ``product`` band (``nlcd``):
            the network expands the band into the product's classes one-hot and its
            impervious fraction before the stem (:class:`training.models.product.
            ProductChannels`); None when the input holds no product band.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = DEFAULT_WIDTH,
                 widths: Sequence[int] | None = None, stem_norm: StemNorm = "instance",
                 stem_convs: int = 2, stem_width: int = 64, stage1_width: int = 64,
                 modules: Sequence[int] = STAGE_MODULES, blocks: int = BLOCKS_PER_BRANCH,
                 channels: Mapping[str, int] | None = None,
                 bands: Sequence[str] | None = None,
                 product_scheme: str | None = None) -> None:
        super().__init__()
        branch = [int(w) for w in (widths or [width * 2 ** i for i in range(4)])]
        if len(branch) != 4 or min(branch) < 1 or width < 1:
            raise ModelError(f"HRNet needs four positive branch widths, got {branch}")
        if len(modules) != 3 or min(modules) < 1 or blocks < 1:
            raise ModelError(f"modules must be three counts >= 1 and blocks >= 1, got "
                             f"{list(modules)}, {blocks}")
        if bands is not None and len(bands) != in_channels:
            raise ModelError(f"in_channels={in_channels} but {len(bands)} band names were given")
        self.product = (ProductChannels(bands, product_scheme) if product_scheme is not None
                        else None)
        stem_in = self.product.out_channels if self.product is not None else in_channels
        self.stem = Stem(stem_in, stem_width, stem_norm, stem_convs)
        self.layer1 = resnet_stage(stem_width, stage1_width, 4, 1)
        stage1_out = stage1_width * 4
        self.stage2 = Stage([stage1_out], branch[:2], modules[0], blocks)
        self.stage3 = Stage(branch[:2], branch[:3], modules[1], blocks)
        self.stage4 = Stage(branch[:3], branch, modules[2], blocks)
        self.head = Head(branch, num_classes)
        self.branch_widths = tuple(branch)
        init_weights(self)
        if channels:
            resize_layers(self, self.prunable_layers(), channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        if self.product is not None:
            x = self.product(x)
        xs = [self.layer1(self.stem(x))]
        xs = self.stage4(self.stage3(self.stage2(xs)))
        return resize_bilinear(self.head(xs), size)

    def prunable_layers(self) -> tuple[PrunableLayer, ...]:
        """Every convolution but "the latest layers before the multi-resolution fusion".

        The paper (section 3.4) prunes "all the convolutional layers of the model, except for
        the latest layers before the multi-resolution fusion block". Prunable, then:

        - convolutions whose output feeds only the next convolution: the stem convolutions,
          the inner convolutions of every bottleneck and basic block, the intermediate
          stride-2 convolutions of the fusion paths, the head's 1x1 mixing convolution;
        - the residual-output convolution (``conv3`` of a bottleneck, ``conv2`` of a basic
          block) of every stage-1 bottleneck and of every block followed by another block of
          its branch: its output is added into the stream, which keeps its width, so the
          compact block adds it into the kept channels only (``residual_block``);
        - the transitions' convolutions, which start a stage's branches: the compact layer
          writes into the kept channels of the branch's stream, the others 0 (``stream``);
        - the first bottleneck's projection shortcut, which writes stage 1's stream, the
          same way (``stream``).

        Whole: the layers before the fusion, i.e. the residual output of the last block of
        each branch in every multi-resolution module and the last convolution of each fusion
        path; and the classifier (one filter per class).
        """
        layers: list[PrunableLayer] = []
        first = ("layer1.0.conv1.0", "layer1.0.shortcut.0")
        if self.stem.conv2 is not None:
            layers.append(PrunableLayer("stem.conv1", "stem.norm1", ("stem.conv2.0",)))
            layers.append(PrunableLayer("stem.conv2.0", "stem.conv2.1", first))
        else:
            layers.append(PrunableLayer("stem.conv1", "stem.norm1", first))
        if isinstance(self.layer1[0].shortcut, nn.Sequential):
            layers.append(PrunableLayer("layer1.0.shortcut.0", "layer1.0.shortcut.1", (),
                                        stream="layer1.0.shortcut"))
        for b in range(len(self.layer1)):
            p = f"layer1.{b}"
            layers.append(PrunableLayer(f"{p}.conv1.0", f"{p}.conv1.1", (f"{p}.conv2.0",)))
            layers.append(PrunableLayer(f"{p}.conv2.0", f"{p}.conv2.1", (f"{p}.conv3",)))
            layers.append(PrunableLayer(f"{p}.conv3", f"{p}.bn3", (), residual_block=p))
        for s in ("stage2", "stage3", "stage4"):
            stage: Stage = getattr(self, s)
            for i, layer in enumerate(stage.transition.layers):
                if isinstance(layer, ConvBNReLU):
                    p = f"{s}.transition.layers.{i}"
                    layers.append(PrunableLayer(f"{p}.0", f"{p}.1", (), stream=p))
            for m, module in enumerate(cast(list[MultiResolutionModule], stage.modules_)):
                for br, seq in enumerate(cast(list[nn.Sequential], module.branches)):
                    for k in range(len(seq)):
                        p = f"{s}.modules_.{m}.branches.{br}.{k}"
                        layers.append(PrunableLayer(f"{p}.conv1.0", f"{p}.conv1.1",
                                                    (f"{p}.conv2",)))
                        if k < len(seq) - 1:  # the last one feeds the fusion
                            layers.append(PrunableLayer(f"{p}.conv2", f"{p}.bn2", (),
                                                        residual_block=p))
                for i in range(len(module.fuse.paths)):
                    for j in range(i):  # finer branch j reaches branch i in i - j steps
                        p = f"{s}.modules_.{m}.fuse.paths.{i}.{j}"
                        for t in range(i - j - 1):
                            layers.append(PrunableLayer(f"{p}.{t}.0", f"{p}.{t}.1",
                                                        (f"{p}.{t + 1}.0",)))
        layers.append(PrunableLayer("head.mix.0", "head.mix.1", ("head.classifier",)))
        return tuple(layers)


#: This module's models, merged by :mod:`training.models`.
MODELS: dict[str, ModelEntry] = {
    "hrnet": ModelEntry(lambda c, k, **kw: HRNet(c, k, **kw), RECIPE, reads_product=True),
    "hrnet-coarse": ModelEntry(lambda c, k, **kw: HRNet(c, k, **kw), COARSE_RECIPE,
                               reads_product=True),
}
