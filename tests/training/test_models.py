"""The policy network: the model I/O contract's shapes, torchvision's ResNet-18 names,
gradients, parameter groups and deterministic evaluation."""

import pytest
import torch

from zima.contract import Contract
from zima.training.models import (
    Policy,
    PolicyConfig,
    ResNet18,
    SmallBackbone,
    SpatialBackbone,
    SpatialSoftmax,
    load_torchvision_weights,
)

TINY = Contract(image_height=32, image_width=40, image_history=2, action_history=4, chunk_len=4)

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_resnet18_keys() -> list[str]:
    """torchvision.models.resnet18().state_dict() keys without fc, written out from its
    architecture (torchvision cannot be imported beside this torch)."""
    keys = ["conv1.weight", *(f"bn1.{n}" for n in _BN)]
    for layer in range(1, 5):
        for block in range(2):
            p = f"layer{layer}.{block}"
            keys += [f"{p}.conv1.weight", *(f"{p}.bn1.{n}" for n in _BN),
                     f"{p}.conv2.weight", *(f"{p}.bn2.{n}" for n in _BN)]
            if layer > 1 and block == 0:
                keys += [f"{p}.downsample.0.weight", *(f"{p}.downsample.1.{n}" for n in _BN)]
    return keys


def batch(c: Contract, b: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (b, *c.image_shape), generator=g, dtype=torch.uint8)
    history = torch.randint(0, c.n_actions, (b, c.action_history), generator=g)
    return images, history


def test_resnet18_has_torchvisions_parameter_names_and_shapes() -> None:
    net = ResNet18()
    assert list(net.state_dict()) == torchvision_resnet18_keys()
    params = sum(p.numel() for p in net.parameters())
    assert params == 11_689_512 - (512 * 1000 + 1000)  # torchvision's count less its fc
    assert net.state_dict()["layer3.0.downsample.0.weight"].shape == (256, 128, 1, 1)


def test_torchvision_weights_load_with_their_fc_dropped() -> None:
    source = ResNet18().state_dict()
    weights = {**source, "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    target = ResNet18()
    load_torchvision_weights(target, weights)
    assert torch.equal(target.state_dict()["layer4.1.conv2.weight"],
                       source["layer4.1.conv2.weight"])


@pytest.mark.parametrize("backbone", ["small", "resnet18"])
def test_logits_have_the_model_io_shape(backbone: str) -> None:
    model = Policy(TINY, PolicyConfig(backbone=backbone, hidden_dim=64)).eval()
    images, history = batch(TINY)
    with torch.no_grad():
        logits = model(images, history)
    assert logits.dtype == torch.float32
    assert tuple(logits.shape) == (3, TINY.chunk_len, TINY.n_actions)
    assert torch.isfinite(logits).all()


def test_a_contract_without_action_history_works() -> None:
    c = Contract(image_height=16, image_width=16, action_history=0, image_history=1)
    model = Policy(c, PolicyConfig(backbone="small", hidden_dim=32)).eval()
    images, history = batch(c, b=2)
    assert tuple(model(images, history).shape) == (2, c.chunk_len, c.n_actions)


def test_gradients_reach_the_backbone_and_the_embedding() -> None:
    model = Policy(TINY, PolicyConfig(backbone="small", hidden_dim=64))
    images, history = batch(TINY, b=4)
    target = torch.randint(0, TINY.n_actions, (4, TINY.chunk_len))
    loss = torch.nn.functional.cross_entropy(model(images, history).flatten(0, 1),
                                             target.flatten())
    torch.autograd.backward(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert model.backbone.features[0].weight.grad.abs().sum() > 0  # type: ignore[union-attr,index]
    assert model.action_embed.weight.grad is not None
    assert model.action_embed.weight.grad.abs().sum() > 0


def test_parameter_groups_split_backbone_from_head() -> None:
    model = Policy(TINY, PolicyConfig(backbone="small", hidden_dim=64))
    backbone, head = model.param_groups(backbone_lr=1e-5, head_lr=3e-4)
    assert (backbone["lr"], head["lr"]) == (1e-5, 3e-4)
    ids = [id(p) for g in (backbone, head) for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # each once
    assert {id(p) for p in backbone["params"]} == {id(p) for p in model.backbone.parameters()}
    torch.optim.AdamW([backbone, head])  # accepted as optimizer groups


def test_eval_mode_is_deterministic_and_train_mode_is_not() -> None:
    torch.manual_seed(0)
    model = Policy(TINY, PolicyConfig(backbone="small", hidden_dim=64, dropout=0.5))
    images, history = batch(TINY)
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(images, history), model(images, history))  # dropout
    model.eval()
    with torch.no_grad():
        first = model(images, history)
        assert torch.equal(first, model(images, history))
        # one sample's logits do not depend on the rest of the batch (BatchNorm frozen)
        assert torch.allclose(model(images[:1], history[:1]), first[:1], atol=1e-5)


def test_the_uint8_input_is_normalised_inside_the_model() -> None:
    model = Policy(TINY, PolicyConfig(backbone="small", hidden_dim=32)).eval()
    assert "mean" not in model.state_dict()  # constants, not learnt state
    images, history = batch(TINY)
    with torch.no_grad():
        assert not torch.equal(model(images, history), model(255 - images, history))


def test_small_backbone_feature_width() -> None:
    x = torch.zeros(2, 3, 24, 32)
    assert tuple(SmallBackbone()(x).shape) == (2, SmallBackbone.out_features)


def test_unknown_backbone_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown backbone"):
        PolicyConfig(backbone="vit")


def test_spatial_softmax_finds_where_a_feature_fires() -> None:
    maps = torch.zeros(1, 2, 12, 16)
    maps[0, 0, 0, 15] = 50.0  # channel 0 fires at the top right corner
    maps[0, 1, 11, 0] = 50.0  # channel 1 at the bottom left
    x0, y0, x1, y1 = SpatialSoftmax()(maps)[0].tolist()
    assert (x0, y0) == pytest.approx((1.0, -1.0), abs=1e-3)
    assert (x1, y1) == pytest.approx((-1.0, 1.0), abs=1e-3)


def test_spatial_backbone_feature_width_and_position_sensitivity() -> None:
    torch.manual_seed(0)
    backbone = SpatialBackbone().eval()
    x = torch.zeros(2, 3, 96, 128)
    x[0, :, 40:56, 8:24] = 3.0  # the same bright square, left ...
    x[1, :, 40:56, 104:120] = 3.0  # ... and right
    with torch.no_grad():
        feats = backbone(x)
    assert tuple(feats.shape) == (2, SpatialBackbone.out_features)
    keypoint_x = feats[:, 64::2]  # the x coordinates of the 64 channels' keypoints
    # Untrained, the softmax is soft, but every keypoint moves right with the square.
    assert ((keypoint_x[1] - keypoint_x[0]) > 0).float().mean() > 0.9
