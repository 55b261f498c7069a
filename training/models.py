"""The policy network: a shared image backbone, an action-history embedding, an MLP head.

``Policy.forward(images, action_history)`` has the names and types of the model I/O
contract (zima.onboard.policy), so export traces it as it is and the ONNX file takes
uint8 pixels: the normalisation lives inside the model. (B = batch, N = images of one
observation, F = backbone features, A = action history, E = embedding width.)

    images          uint8   [B, N, H, W, 3]
      -> float, ImageNet-normalised, [B*N, 3, H, W] -> backbone -> [B*N, F] -> [B, N*F]
    action_history  int64   [B, A] -> Embedding -> [B, A*E]
    concat [B, N*F + A*E] -> Linear, ReLU, Dropout -> Linear -> logits
      [B, chunk_len, n_actions] (the prototype's recipe: cross-entropy over the chunk)

With an arm head (``contract.arm_dims`` = D, L = its bins), ``forward(images,
action_history, arm_state)`` also takes the commanded tool pose and opening and returns
``(logits, arm_logits)``::

    arm_state       float32 [B, 6] -> scaled to ~unit ranges -> Linear, ReLU -> [B, S]
    concat [B, N*F + A*E + S] -> the driving head as above (logits)
                             -> Linear, ReLU, Dropout -> Linear -> arm_logits [B, chunk_len, D, L]

``ResNet18`` is the project's own module with torchvision's parameter names (conv1, bn1,
layer1..layer4; no fc), so torchvision's ImageNet weights load into it where a network
can fetch them (:func:`load_torchvision_weights`). ``SmallBackbone`` serves tests and the
bundled demo policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import torch
from torch import Tensor, nn

from zima.contract import ARM_STATE_DIMS, Contract

IMAGENET_MEAN: Final = (0.485, 0.456, 0.406)
IMAGENET_STD: Final = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """Images [B, 3, H, W] float -> features [B, out_features]."""

    out_features: int


# --- ResNet-18 (torchvision's layout and names) --------------------------------------------


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a residual; ``downsample`` when the shape changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_ch))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        result: Tensor = self.relu(out + identity)
        return result


class ResNet18(Backbone):
    """ResNet-18 without its classifier: [B, 3, H, W] -> [B, 512]."""

    out_features = 512

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def load_torchvision_weights(backbone: ResNet18, state_dict: Mapping[str, Any]) -> None:
    """Load a torchvision ``resnet18`` state dict (its ``fc`` is dropped); strict otherwise."""
    backbone.load_state_dict({k: v for k, v in state_dict.items() if not k.startswith("fc.")})


# --- the small backbone ----------------------------------------------------------------------


class SmallBackbone(Backbone):
    """Four stride-2 conv-BN-ReLU stages and a global average: [B, 3, H, W] -> [B, 64]."""

    out_features = 64

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for in_ch, out_ch in ((3, 16), (16, 32), (32, 64), (64, 64)):
            layers += [nn.Conv2d(in_ch, out_ch, 3, 2, 1, bias=False), nn.BatchNorm2d(out_ch),
                       nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


class SpatialSoftmax(nn.Module):
    """Feature maps [B, C, h, w] -> expected image coordinates of each channel's softmax
    [B, 2C] (x then y per channel, in [-1, 1]): *where* each feature fires, which a
    global average throws away (Levine et al., "End-to-End Training of Deep Visuomotor
    Policies", 2016). The temperature is learnt."""

    def __init__(self) -> None:
        super().__init__()
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        attention = torch.softmax(x.flatten(2) / self.log_temperature.exp(), dim=-1)  # [B, C, h*w]
        ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype)
        grid_y = ys.view(h, 1).expand(h, w).reshape(h * w)  # [h*w]
        grid_x = xs.view(1, w).expand(h, w).reshape(h * w)
        expected = torch.stack([attention @ grid_x, attention @ grid_y], dim=-1)  # [B, C, 2]
        return expected.reshape(b, 2 * c)


class SpatialBackbone(Backbone):
    """The small backbone's first three stages, a fourth at stride 1 (a 12 x 16 map for
    96 x 128 images), then both the global average (*what* is in view) and a spatial
    softmax (*where*): [B, 3, H, W] -> [B, 192]. Steering toward a small, distant cube
    needs its position, which :class:`SmallBackbone`'s average keeps only weakly."""

    out_features = 3 * 64

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for in_ch, out_ch, stride in ((3, 16, 2), (16, 32, 2), (32, 64, 2), (64, 64, 1)):
            layers += [nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False),
                       nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.keypoints = SpatialSoftmax()

    def forward(self, x: Tensor) -> Tensor:
        maps = self.features(x)  # [B, 64, h, w]
        return torch.cat([torch.flatten(self.pool(maps), 1), self.keypoints(maps)], dim=1)


BACKBONES: Final[dict[str, Callable[[], Backbone]]] = {
    "resnet18": ResNet18,
    "small": SmallBackbone,
    "spatial": SpatialBackbone,
}


# --- the policy ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Architecture of the policy network."""

    # Image backbone, a key of BACKBONES ("resnet18" for real runs, "small" for tests/demo).
    backbone: str = "resnet18"
    # Width of one past action's embedding.
    action_embed_dim: int = 16
    # Hidden width of the MLP head.
    hidden_dim: int = 512
    # Dropout in the head (off in eval mode, so the export is deterministic).
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; known: {sorted(BACKBONES)}")
        if self.action_embed_dim <= 0 or self.hidden_dim <= 0:
            raise ValueError(f"policy widths must be positive: {self}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


ARM_STATE_SCALE: Final = (0.1, 0.1, 0.1, 1.0, 1.0, 0.01)
"""arm_state is divided by this (m, m, m, rad, rad, m) before the network sees it."""
ARM_EMBED_DIM: Final = 64


class Policy(nn.Module):
    """(images uint8 [B, N, H, W, 3], action_history int64 [B, A]) -> logits
    float32 [B, chunk_len, n_actions], for ``contract``; with an arm head, (images,
    action_history, arm_state float32 [B, 6]) -> (logits, arm_logits float32
    [B, chunk_len, arm_dims, n_arm_levels])."""

    mean: Tensor  # [1, 3, 1, 1] ImageNet channel means (a buffer)
    std: Tensor  # [1, 3, 1, 1] ImageNet channel deviations
    arm_scale: Tensor  # [1, 6] ARM_STATE_SCALE (a buffer)

    def __init__(self, contract: Contract, config: PolicyConfig = PolicyConfig()) -> None:
        super().__init__()
        self.contract = contract
        self.config = config
        self.backbone = BACKBONES[config.backbone]()
        self.action_embed = nn.Embedding(contract.n_actions, config.action_embed_dim)
        features = (contract.n_images * self.backbone.out_features
                    + contract.action_history * config.action_embed_dim
                    + (ARM_EMBED_DIM if contract.arm_dims else 0))
        self.head = self._mlp(features, contract.chunk_len * contract.n_actions)
        self.arm_embed: nn.Sequential | None = None
        self.arm_head: nn.Sequential | None = None
        if contract.arm_dims:
            self.arm_embed = nn.Sequential(nn.Linear(ARM_STATE_DIMS, ARM_EMBED_DIM),
                                           nn.ReLU(inplace=True))
            self.arm_head = self._mlp(features, contract.chunk_len * contract.arm_dims
                                      * contract.n_arm_levels)
        self.register_buffer("arm_scale", torch.tensor(ARM_STATE_SCALE).view(1, -1),
                             persistent=False)
        # Not persistent: constants of the architecture, not learnt state.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)

    def _mlp(self, features: int, outputs: int) -> nn.Sequential:
        cfg = self.config
        return nn.Sequential(nn.Linear(features, cfg.hidden_dim), nn.ReLU(inplace=True),
                             nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden_dim, outputs))

    def forward(self, images: Tensor, action_history: Tensor,
                arm_state: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        c = self.contract
        b = images.shape[0]
        x = images.reshape(b * c.n_images, c.image_height, c.image_width, 3)  # [B*N, H, W, 3]
        x = x.permute(0, 3, 1, 2).float().div(255.0)  # [B*N, 3, H, W] in [0, 1]
        x = (x - self.mean) / self.std
        feats = self.backbone(x).reshape(b, -1)  # [B, N*F]
        hist = self.action_embed(action_history).reshape(  # [B, A*E]
            b, c.action_history * self.config.action_embed_dim)
        if self.arm_embed is None or self.arm_head is None:
            out: Tensor = self.head(torch.cat([feats, hist], dim=1))  # [B, chunk*n_actions]
            return out.reshape(b, c.chunk_len, c.n_actions)
        if arm_state is None:
            raise ValueError("a policy with an arm head takes arm_state [B, 6]")
        arm = self.arm_embed(arm_state.float() / self.arm_scale)  # [B, ARM_EMBED_DIM]
        joint = torch.cat([feats, hist, arm], dim=1)  # [B, N*F + A*E + ARM_EMBED_DIM]
        logits = self.head(joint).reshape(b, c.chunk_len, c.n_actions)
        arm_logits = self.arm_head(joint).reshape(b, c.chunk_len, c.arm_dims, c.n_arm_levels)
        return logits, arm_logits

    def param_groups(self, backbone_lr: float = 1e-5,
                     head_lr: float = 3e-4) -> list[dict[str, Any]]:
        """Optimizer groups: the backbone at ``backbone_lr``, everything else at
        ``head_lr`` (the prototype's recipe: a slow backbone, a fast head)."""
        backbone = list(self.backbone.parameters())
        ids = {id(p) for p in backbone}
        head = [p for p in self.parameters() if id(p) not in ids]
        return [{"params": backbone, "lr": backbone_lr, "name": "backbone"},
                {"params": head, "lr": head_lr, "name": "head"}]
