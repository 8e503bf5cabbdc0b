"""One loader for every shipped network: jsnq.networks.load_network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jsnq.errors import WeightsUnavailableError
from jsnq.networks import INFERENCE_THREADS, SHIPPED, inference_threads, load_network, shipped_weights
from jsnq.hand.network import LocatorConfig
from jsnq.networks import shipped_network
from jsnq.register.network import RegNetConfig, predict_similarities
from jsnq.segment.network import NetworkConfig, predict_masks, shipped_model

CONFIGS = {"segment": NetworkConfig, "register": RegNetConfig, "locate": LocatorConfig}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_network_loads_one_way_with_its_config(name):
    """The shipped files (written before this loader) load by name or by file, safely, in
    eval mode, each carrying its config as ``model.config``."""
    model, ckpt = load_network(name)
    assert isinstance(model.config, CONFIGS[name]) and not model.training
    assert model.config == CONFIGS[name].from_dict(ckpt["config"]["network"])
    again, _ = load_network(shipped_weights(name), kind=name)
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_another_kind_or_an_unknown_name_is_refused(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="registration checkpoint, not a segmentation one"):
        load_network(shipped_weights("register"), kind="segment")
    with pytest.raises(ValueError, match="no shipped network"):
        shipped_weights("nonsense")
    with pytest.raises(WeightsUnavailableError, match="not found"):
        load_network(tmp_path / "none.pt")


def test_a_checkpoint_loads_as_the_network_its_config_names(tmp_path):
    """A checkpoint whose config names its architecture loads as that network without being told its kind."""
    from jsnq.segment.network import build_model

    cfg = NetworkConfig(features=(4, 8), input_size=32)
    torch.save({"format": 1, "config": {"network": cfg.to_dict()}, "state_dict": build_model(cfg).state_dict()},
               tmp_path / "tiny.pt")
    model, _ = load_network(tmp_path / "tiny.pt")
    assert model.config == cfg and not model.training


def test_the_shipped_networks_infer_on_few_threads_and_restore_the_callers_setting():
    """Both networks that measure() runs see torch's threads lowered to INFERENCE_THREADS during
    their forward pass (docs/benchmarks.md, issue 23's speed), and the caller's setting is back
    afterwards; a lower setting is never raised."""
    before = torch.get_num_threads()
    seen: list[int] = []
    hooks = [m.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
             for m in (shipped_model(), shipped_network("register"))]
    try:
        torch.set_num_threads(INFERENCE_THREADS + 2)
        image = np.random.default_rng(0).random((64, 64))
        labels = np.ones((64, 64), np.uint8)
        labels[32:] = 2
        predict_masks(image)
        predict_similarities(shipped_network("register"), image, image, labels)
        assert seen and set(seen) == {INFERENCE_THREADS}
        assert torch.get_num_threads() == INFERENCE_THREADS + 2
        torch.set_num_threads(1)
        with inference_threads(2):
            assert torch.get_num_threads() == 1
    finally:
        for h in hooks:
            h.remove()
        torch.set_num_threads(before)
