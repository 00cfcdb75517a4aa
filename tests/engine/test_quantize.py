"""int8 quantization: agreement with fp32 on a small trained conv net, refusals, records."""

from __future__ import annotations

import pytest
import torch

from core.errors import ConfigError
from engine import quantize
from tests.support.models import SignBranch, TiedConv

pytest.importorskip("torchao")
needs_int8_cpu = pytest.mark.skipif(not quantize.cpu_has_int8(),
                                    reason="this CPU has no VNNI/AMX int8 instructions")


def _data(seed: int, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels: impervious where a smoothed band 0 is positive."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, 32, 32, generator=g)
    x[:, 0] = torch.nn.functional.avg_pool2d(x[:, :1], 5, 1, 2)[:, 0] * 3
    return x, (x[:, 0] > 0).long()


@pytest.fixture(scope="module")
def trained() -> torch.nn.Module:
    """A 3x3 conv net trained for a few steps to map band 0's sign (a model with margins)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 2, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    x, y = _data(0, 16)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def _patches(with_labels: bool = True) -> quantize.Int8Patches:
    calib = [_data(s)[0] for s in (1, 2)]
    check, labels = _data(3)
    return quantize.Int8Patches(tuple(calib), (check,), (labels,) if with_labels else None,
                                "two synthetic batches", "one labelled batch", label_nodata=255)


@needs_int8_cpu
def test_int8_graph_agrees_with_fp32_and_records_its_figures(trained):
    built = quantize.build_int8(trained, _patches(), isa_class=1)  # the graph, not compiled
    a = built.agreement
    assert a.accepted and a.class_agreement >= quantize.MIN_CLASS_AGREEMENT
    assert a.pixels == 8 * 32 * 32 and a.isa_f1_labels is not None
    fp32_f1, int8_f1 = a.isa_f1_labels
    assert fp32_f1 > 0.9 and abs(int8_f1 - fp32_f1) <= quantize.MAX_F1_CHANGE
    record = built.record()
    assert record["calibration"] == "two synthetic batches"
    assert record["calibration_patches"] == 16 and record["check_patches"] == 8
    assert record["min_class_agreement"] == quantize.MIN_CLASS_AGREEMENT
    assert record["compile_seconds"] == 0.0 and record["quantize_seconds"] > 0
    # the graph holds int8 weights: quantize/dequantize nodes, not the fp32 convolutions
    targets = {str(n.target) for n in built.module.graph.nodes if n.op == "call_function"}
    assert any("quantize_per_tensor" in t for t in targets)


@needs_int8_cpu
def test_compiled_int8_runs_any_batch_and_agrees(trained):
    x, _ = _data(4, 4)
    built = quantize.build_int8(trained, _patches(), isa_class=1, example=x)
    assert built.compile_seconds > 0
    model = quantize.FixedBatch(built.module, 4)
    with torch.no_grad():
        ref = trained(x[:3])
    out = model(x[:3])  # a smaller last batch is padded, not compiled again
    assert out.shape == ref.shape
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= quantize.MIN_CLASS_AGREEMENT
    assert model(torch.cat([x, x[:2]])).shape[0] == 6  # a larger one is split


@needs_int8_cpu
def test_a_later_date_reuses_the_int8_model_of_the_same_weights_and_patches(trained, caplog):
    def patches(seed: int) -> quantize.Int8Patches:  # patches no other test uses
        check, labels = _data(seed + 1)
        return quantize.Int8Patches((_data(seed)[0],), (check,), (labels,), "a", "b")

    first = quantize.build_int8(trained, patches(50), isa_class=1)
    assert not first.reused and first.quantize_seconds > 0
    with caplog.at_level("INFO", logger="engine.quantize"):
        again = quantize.build_int8(trained, patches(50), isa_class=1)
    assert again.reused and again.module is first.module and again.agreement == first.agreement
    assert again.record()["quantize_seconds"] == 0.0 and again.record()["reused"] is True
    assert "used again" in caplog.text
    other = quantize.build_int8(trained, patches(60), isa_class=1)  # other patches: built
    assert not other.reused and other.module is not first.module
    for seed in (70, 80):  # only the latest few are kept
        quantize.build_int8(trained, patches(seed), isa_class=1)
    assert len(quantize._BUILT) == quantize.BUILT_KEPT
    assert not quantize.build_int8(trained, patches(50), isa_class=1).reused


@needs_int8_cpu
def test_int8_that_disagrees_is_refused_with_its_figures():
    model = TiedConv(4).eval()
    with pytest.raises(quantize.Int8RefusedError) as err:
        quantize.build_int8(model, _patches(with_labels=False), isa_class=1)
    message = str(err.value)
    assert "class agreement with fp32" in message and "use --precision bf16 or fp32" in message
    assert err.value.exit_code == 2 and "\n" not in message


def test_agreement_figures():
    ref = torch.zeros(1, 2, 2, 2)
    ref[0, 1, 0] = 1.0  # impervious in the top row
    cand = ref.clone()
    cand[0, 1, 0, 0] = -1.0  # one impervious pixel lost
    labels = torch.tensor([[[1, 1], [0, 255]]])
    a = quantize.agreement([ref], [cand], 1, [labels], label_nodata=255)
    assert a.class_agreement == 0.75 and a.pixels == 4
    assert a.isa_f1_vs_fp32 == pytest.approx(2 / 3)
    assert a.isa_f1_labels == (1.0, pytest.approx(2 / 3))
    assert not a.accepted


def test_int8_refused_on_cuda_and_on_cpus_without_int8_units(monkeypatch):
    with pytest.raises(ConfigError, match="for CPU inference"):
        quantize.check_int8(torch.device("cuda"))
    monkeypatch.setattr(quantize, "cpu_has_int8", lambda: False)
    with pytest.raises(ConfigError, match="VNNI or AMX"):
        quantize.check_int8(torch.device("cpu"))


def test_missing_torchao_is_an_environment_error_with_the_install_command(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torchao.quantization.pt2e", None)
    with pytest.raises(quantize.Int8UnavailableError) as err:
        quantize._torchao()
    assert err.value.exit_code == 1 and "pip install 'isamap[int8]'" in str(err.value)


def test_a_check_without_labels_is_held_to_the_label_bound_against_the_fp32_classes():
    """Six of 500 impervious pixels lost: 99.4 % agreement and F1 0.994 pass the first two
    bounds; the fp32 classes standing for labels, the F1 change (0.006) is refused, exactly
    as a check whose labels are the fp32 map's would be."""
    ref = torch.zeros(1, 2, 10, 100)
    ref[0, 1, :5] = 1.0  # impervious in the top half
    cand = ref.clone()
    cand[0, 1, 0, :6] = -1.0
    a = quantize.agreement([ref], [cand], 1)
    assert a.class_agreement == pytest.approx(0.994) and a.isa_f1_vs_fp32 >= 0.99
    assert a.isa_f1_labels == (1.0, pytest.approx(a.isa_f1_vs_fp32)) and not a.labelled
    assert not a.accepted and "fp32 map's classes (no labels)" in a.describe()
    labelled = quantize.agreement([ref], [cand], 1, [ref.argmax(1)])
    assert (labelled.accepted, labelled.isa_f1_labels) == (False, a.isa_f1_labels)


def test_a_model_export_cannot_trace_is_one_line_and_torch_prints_nothing(capfd):
    """torch.export prints a failure's partial graph to stderr itself, and its loggers warn
    with the graph: the user sees the refusal's one line, nothing else."""
    with pytest.raises(ConfigError, match="SignBranch cannot be exported for int8") as err:
        quantize.quantize(SignBranch().eval(), [torch.randn(2, 3, 16, 16)])
    assert "\n" not in str(err.value)
    assert capfd.readouterr().err == ""


class _CannotExport(torch.nn.Identity):
    int8_cannot_export = "its part branches on its input"


def test_a_model_holding_a_module_that_cannot_be_exported_is_refused_before_any_export():
    """Identity would export; the module's own word refuses it first (the encoders')."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), _CannotExport()).eval()
    text = ("--precision int8 cannot quantize this model: its part branches on its input, so "
            "torch.export cannot trace one graph for every batch and tile size; use "
            "--precision bf16 or fp32")
    with pytest.raises(ConfigError) as err:
        quantize.check_quantizable(model)
    assert str(err.value) == text
    with pytest.raises(ConfigError, match="its part branches on its input"):
        quantize.quantize(model, [torch.randn(2, 3, 8, 8)])
    quantize.check_quantizable(model[0])  # the convolution alone is no refusal
