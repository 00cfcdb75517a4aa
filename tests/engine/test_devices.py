"""--device / --precision resolved once for training, evaluation and inference."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from core.errors import ConfigError
from engine import devices, distributed
from inference.assess import evaluate
from inference.predict import runtime
from tests.support import REPO_ROOT
from training.run import trainer

ROOT = REPO_ROOT


def test_every_command_uses_the_one_resolver():
    assert runtime.resolve_device is devices.resolve_device
    assert trainer.autotune is evaluate.autotune is runtime.autotune


def test_precision_choices_and_refusals():
    cpu = torch.device("cpu")
    assert devices.resolve_precision("fp32", cpu) == torch.float32
    assert devices.resolve_precision("bf16", cpu) == torch.bfloat16
    with pytest.raises(ConfigError, match="fp16 autocast is for CUDA"):
        devices.resolve_precision("fp16", cpu)
    with pytest.raises(ConfigError, match="precision must be"):
        devices.resolve_precision("fp64", cpu)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="measured"):  # 'auto' has no static answer
        devices.resolve_precision("auto", cpu)
    assert devices.autocast_dtype("fp32", cpu) is None
    assert devices.autocast_dtype("bf16", cpu) == torch.bfloat16
    assert [devices.layout_flag(v) for v in (None, True, False, "on", "NHWC", "off")] == [
        "auto", "on", "off", "on", "on", "off"]


def test_the_parsers_module_does_not_import_torch():
    """``--help`` of every command stays torch-free: devices imports torch only inside."""
    code = ("import sys; import engine.devices; "
            "assert 'torch' not in sys.modules, 'engine.devices imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_device_names():
    assert devices.resolve_device("cpu") == torch.device("cpu")
    assert distributed.resolve_device("cpu", distributed.DistInfo()) == torch.device("cpu")
    if torch.cuda.is_available():
        assert devices.resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
    else:
        assert devices.resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="CUDA is not available"):
            devices.resolve_device("cuda:1")
    for name in ("mps", "xla", "meta", "gpu"):  # a new user's walk: mps was a traceback
        with pytest.raises(ConfigError, match="use auto, cpu, cuda or cuda:N"):
            devices.resolve_device(name)


def test_a_gpu_the_machine_lacks_is_one_line():
    """On a one-GPU H200, ``torchrun --nproc_per_node 2`` stopped rank 1 with CUDA's
    "invalid device ordinal" traceback; ``--device cuda:3`` did the same."""
    assert devices.gpu_index_refusal("cuda", 0, 1) is None
    assert devices.gpu_index_refusal("auto", 1, 2, local_rank=1) is None
    assert devices.gpu_index_refusal("auto", 1, 1, local_rank=1) == (
        "torchrun process 1 would train on GPU 1, but this machine has 1 GPU(s): start at "
        "most 1 process(es) a machine (torchrun --nproc_per_node), or give --device cpu")
    assert devices.gpu_index_refusal("cuda:3", 3, 2) == (
        "--device cuda:3 names GPU 3, but this machine has 2 GPU(s) (cuda:0 to cuda:1); give "
        "one of those, or --device cpu")
    if torch.cuda.is_available():  # the rule is the one resolve_device applies
        count = torch.cuda.device_count()
        with pytest.raises(ConfigError, match=f"names GPU {count}, but this machine has"):
            devices.resolve_device(f"cuda:{count}")
        with pytest.raises(ConfigError, match=f"torchrun process {count} would train"):
            devices.resolve_device("auto", local_rank=count)


def test_commands_share_the_device_and_precision_options(capsys):
    from cli.evaluate import evaluate_parser
    from cli.predict import predict_parser
    from cli.train import train_parser

    train_args = train_parser().parse_args([])
    assert train_args.device is None and train_args.precision is None  # config file decides
    required = {"train": [], "evaluate": ["--model", "m", "--data", "d", "--out", "o"],
                "predict": ["--model", "m", "--input", "i", "--out", "o"]}
    parsers = {"train": train_parser, "evaluate": evaluate_parser, "predict": predict_parser}
    for name in ("evaluate", "predict"):  # one meaning of auto, the default everywhere
        args = parsers[name]().parse_args(required[name])
        assert (args.precision, args.channels_last, args.autotune_cache) == ("auto", "auto", None)
    assert train_args.channels_last is None and train_args.autotune_cache is None
    for name, make in parsers.items():
        for choice in devices.PRECISIONS:
            args = make().parse_args([*required[name], "--precision", choice, "--device", "cpu"])
            assert (args.precision, args.device) == (choice, "cpu")
        args = make().parse_args([*required[name], "--channels-last", "off",
                                  "--no-autotune-cache"])
        assert (args.channels_last, args.autotune_cache) == ("off", False)
        with pytest.raises(SystemExit):
            make().parse_args([*required[name], "--precision", "fp64"])
    assert "invalid choice: 'fp64'" in capsys.readouterr().err


def test_int8_is_offered_to_inference_commands_only():
    from cli.evaluate import evaluate_parser
    from cli.predict import predict_parser
    from cli.train import train_parser

    args = predict_parser().parse_args(["--model", "m", "--input", "i", "--out", "o",
                                         "--precision", "int8"])
    assert args.precision == "int8"
    for make, extra in ((train_parser, []), (evaluate_parser, ["--model", "m", "--data", "d",
                                                               "--out", "o"])):
        with pytest.raises(SystemExit):
            make().parse_args([*extra, "--precision", "int8"])
    with pytest.raises(ConfigError, match="CPU inference"):
        devices.check_precision("int8", "cuda")
    devices.check_precision("int8", "cpu")
    with pytest.raises(ValueError, match="quantized model"):
        devices.resolve_precision("int8", torch.device("cpu"))
