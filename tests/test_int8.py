"""int8 post-training quantisation of a trained student: the accuracy cost on held-out data is
bounded (the bench and docs report the figure on the simulated test split)."""
from __future__ import annotations

import pytest

from evdistill_ros.eval.deploy import calibration_inputs
from evdistill_ros.eval.evaluate import evaluate
from evdistill_ros.models.files import load_network
from evdistill_ros.models.export import onnx_bytes, quantize_int8, read_onnx_metadata
from test_distill_train import tiny_config, write_bag


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from evdistill_ros.distill.trainer import run_training

    d = tmp_path_factory.mktemp("int8")
    bags = [str(d / f"b{i}.bag") for i in range(2)]
    for i, b in enumerate(bags):
        write_bag(b, seed=i)
    cfg = tiny_config(d, steps=80)
    ckpt = run_training(cfg, bags[:1], "student", method="supervised", progress=False, log=lambda s: None)
    return ckpt, bags, d


def test_int8_costs_little_accuracy(trained):
    ckpt, bags, d = trained
    model, card = load_network(ckpt)
    inputs = calibration_inputs(bags[:1], card, n=24)
    assert len(inputs) == 24 and inputs[0].shape[:2] == (1, 3)
    report = quantize_int8(onnx_bytes(model, card.to_dict()), inputs, d / "s_int8.onnx")
    assert report.argmax_agreement > 0.9, report.summary()
    assert read_onnx_metadata(d / "s_int8.onnx")["onnx"]["int8"] is True
    fp32 = evaluate(bags[1], event_ckpt=ckpt, progress=False, log=lambda s: None)["events"]["miou"]
    int8 = evaluate(bags[1], event_ckpt=d / "s_int8.onnx", progress=False, log=lambda s: None)["events"]["miou"]
    assert fp32 > 0.4  # it learned something (three textures)
    assert fp32 - int8 < 0.05, (fp32, int8)  # less than 5 mIoU points lost
