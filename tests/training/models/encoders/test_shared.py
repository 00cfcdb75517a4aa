"""Members of a joined model given the same window share one encoding, and no bit changes."""

from __future__ import annotations

import math

import pytest
import torch

from training.models.encoders import fused
from training.models.encoders.fused import EncoderUNet
from training.models.encoders.registry import ENCODERS
from training.models.members import MemberMean
from training.models.sharing import SHARED_ENV, scope, shared_forward

BANDS = ["B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"]


def _members(encoder: str, count: int, same_encoder: bool) -> list[EncoderUNet]:
    """``count`` fused networks, each U-Net its own; their encoders one set of weights or not.

    Galileo's tokens are 8 px (a quarter of the default 4 px tokens of its 64 px window):
    sharing is decided per call, whatever the token size."""
    nets = []
    for seed in range(count):
        torch.manual_seed(seed)
        nets.append(EncoderUNet(10, 2, bands=BANDS, encoder=encoder,
                                encoder_sha256=ENCODERS[encoder].sha256,
                                input_mean=[0.1] * 10, input_std=[0.05] * 10,
                                widths=(8, 16), patch_size=8).eval())
    if same_encoder:  # as the published file gives every member of a run
        for net in nets[1:]:
            net.encoder.load_state_dict(nets[0].encoder.state_dict())
    return nets


def _counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the encoder's calls (samples per call)."""
    calls: list[int] = []
    encode = EncoderUNet._encode

    def counting(self: EncoderUNet, raw: torch.Tensor) -> torch.Tensor:
        calls.append(len(raw))
        return encode(self, raw)
    monkeypatch.setattr(fused.EncoderUNet, "_encode", counting)
    return calls


@pytest.mark.parametrize(("encoder", "views", "same", "shared_calls"), [
    ("presto", True, True, 4),    # the recipe's nine members: one encoding per mirror image
    ("presto", False, True, 1),   # every member given the window as it is
    ("presto", True, False, 9),   # encoders of other weights never share
    ("galileo-nano", True, True, 4),
])
def test_members_share_an_encoding_only_of_the_same_input_and_weights(
        monkeypatch, encoder, views, same, shared_calls):
    model = MemberMean(_members(encoder, 9, same), views=views).eval()
    # one window: what is shared is counted per call whatever the batch (Galileo encodes a
    # 64 px window per image, a batch of two was twice the work)
    x = torch.randn(1, 10, 16, 16)
    calls = _counted(monkeypatch)
    with torch.no_grad():
        monkeypatch.setenv(SHARED_ENV, "off")
        plain = model(x)
        assert len(calls) == 9
        monkeypatch.delenv(SHARED_ENV)
        calls.clear()
        shared = model(x)
        assert len(calls) == shared_calls
        assert torch.equal(shared, plain)  # the exact oracle: no bit of the map moves
        calls.clear()
        assert torch.equal(model(x), plain) and len(calls) == shared_calls  # nothing kept
        calls.clear()
        other = model(x + 0.5)  # another window is encoded again
        assert len(calls) == shared_calls and not torch.equal(other, plain)
    assert scope() is None  # the scope ends with the forward


def test_one_network_called_twice_on_one_tensor_encodes_twice(monkeypatch):
    """Outside a joined forward nothing is shared: autotune's second precision on the same
    crop, or a training step after a prediction of one batch, encodes again."""
    net = _members("presto", 1, True)[0]
    x = torch.randn(1, 10, 16, 16)
    calls = _counted(monkeypatch)
    with torch.no_grad():
        plain = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x)
    assert len(calls) == 2 and not torch.equal(low.float(), plain)


def test_a_scope_gives_only_what_the_same_tensor_unchanged_gave():
    nets = _members("presto", 2, True)
    x = torch.randn(1, 10, 16, 16)
    with torch.no_grad(), shared_forward() as shared:
        assert shared is not None
        first = nets[0].features(x)
        assert nets[1].features(x) is first and shared.hits == 1
        assert nets[1].features(x.clone()) is not first  # an equal tensor is another input
        assert shared.hits == 1
        y = x.clone()
        kept = nets[0].features(y)
        y.add_(1.0)  # changed in place since
        assert nets[1].features(y) is not kept and shared.hits == 1


def test_the_member_order_of_the_mean_is_kept_whatever_order_they_run_in():
    """Run view by view, the members' log-probabilities are still averaged in member order."""
    nets = _members("presto", 5, True)
    model = MemberMean(nets, temperatures=[1.0, 1.5, 0.8, 1.2, 2.0], views=True).eval()
    x = torch.randn(1, 10, 16, 16)
    views = [(), (3,), (2,), (2, 3), ()]
    with torch.no_grad():
        logs = []
        for i, (net, dims) in enumerate(zip(nets, views, strict=True)):
            out = net(x.flip(dims)).flip(dims) if dims else net(x)
            logs.append(torch.log_softmax(out / model.temperatures[i], dim=1))
        expected = torch.logsumexp(torch.stack(logs), dim=0) - math.log(5)
        assert torch.equal(model(x), expected)


def test_members_share_under_inference_mode_as_every_prediction_path_runs_them(monkeypatch):
    """Inference tensors keep no count of in-place changes: the scope still shares."""
    model = MemberMean(_members("presto", 4, True), views=True).eval()
    x = torch.randn(1, 10, 16, 16)
    with torch.no_grad():
        plain = model(x)
    calls = _counted(monkeypatch)
    with torch.inference_mode():
        shared = model(x.clone())
    assert len(calls) == 4 and torch.equal(shared, plain)
    calls.clear()
    model = MemberMean(_members("presto", 4, True), views=False).eval()
    with torch.inference_mode():
        model(x.clone())
    assert len(calls) == 1
