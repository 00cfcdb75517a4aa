"""--device / --precision resolved once for training, evaluation and inference."""

from __future__ import annotations

import pytest
import torch

from gee_export.core.errors import ConfigError
from inference import runtime
from training import devices, evaluate, trainer


def test_every_command_uses_the_one_resolver():
    assert runtime.resolve_precision is devices.resolve_precision
    assert runtime.resolve_device is devices.resolve_device
    assert evaluate.autocast_dtype is devices.autocast_dtype


def test_precision_choices_and_refusals():
    cpu = torch.device("cpu")
    assert devices.resolve_precision("fp32", cpu) == torch.float32
    assert devices.resolve_precision("bf16", cpu) == torch.bfloat16
    assert devices.resolve_precision("auto", cpu, cpu_auto="bf16") == torch.bfloat16
    with pytest.raises(ConfigError, match="fp16 autocast is for CUDA"):
        devices.resolve_precision("fp16", cpu)
    with pytest.raises(ConfigError, match="precision must be"):
        devices.resolve_precision("fp64", cpu)  # type: ignore[arg-type]
    # training/evaluation: fp32 means no autocast; auto on the CPU is bf16 (the recipe's choice)
    assert devices.autocast_dtype("fp32", cpu) is None
    assert devices.autocast_dtype("auto", cpu) == torch.bfloat16


@pytest.mark.parametrize("native_bf16", [True, False])
def test_auto_on_the_cpu_is_bf16_only_where_the_cpu_computes_it_natively(monkeypatch,
                                                                        native_bf16):
    """The documented choice (docs/inference.md, Runtime): bf16 on CPUs with native bf16
    (AVX512-BF16/AMX, as oneDNN reports it), fp32 elsewhere; training asks for bf16 anyway."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native_bf16)
    cpu = torch.device("cpu")
    expected = torch.bfloat16 if native_bf16 else torch.float32
    assert devices.resolve_precision("auto", cpu) == expected
    assert devices.resolve_precision("auto", cpu, cpu_auto="bf16") == torch.bfloat16
    assert devices.autocast_dtype("auto", cpu) == torch.bfloat16


def test_device_names():
    assert devices.resolve_device("cpu") == torch.device("cpu")
    assert trainer.resolve_device("cpu", trainer.DistInfo()) == torch.device("cpu")
    if torch.cuda.is_available():
        assert devices.resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
    else:
        assert devices.resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="CUDA is not available"):
            devices.resolve_device("cuda:1")


def test_commands_share_the_device_and_precision_options(capsys):
    from inference.cli import _predict_parser
    from training.cli import evaluate_parser, train_parser

    train_args = train_parser().parse_args([])
    assert train_args.device is None and train_args.precision is None  # config file decides
    required = {"train": [], "evaluate": ["--model", "m", "--data", "d", "--out", "o"],
                "predict": ["--model", "m", "--input", "i", "--out", "o"]}
    parsers = {"train": train_parser, "evaluate": evaluate_parser, "predict": _predict_parser}
    assert parsers["evaluate"]().parse_args(required["evaluate"]).precision == "fp32"
    assert parsers["predict"]().parse_args(required["predict"]).precision == "auto"
    for name, make in parsers.items():
        for choice in devices.PRECISIONS:
            args = make().parse_args([*required[name], "--precision", choice, "--device", "cpu"])
            assert (args.precision, args.device) == (choice, "cpu")
        with pytest.raises(SystemExit):
            make().parse_args([*required[name], "--precision", "fp64"])
    assert "invalid choice: 'fp64'" in capsys.readouterr().err
