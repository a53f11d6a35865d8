"""nas.ofa.warm_start: every weight but the classifier is copied, the stem maps grey <-> RGB, and networks of
another architecture are refused."""

from __future__ import annotations

import pytest
import torch

from mednns_fast.nas.ofa import ElasticResNet, max_config
from mednns_fast.nas.ofa.warm_start import map_input_channels, warm_start

SMALL = {"stem_channels": 8, "stage_channels": (8, 8, 16, 16)}


def test_copies_all_but_the_classifier_and_maps_rgb_to_grey():
    torch.manual_seed(0)
    pretrained = ElasticResNet(3, 1, **SMALL)
    for p in pretrained.parameters():  # distinguishable from any fresh init
        p.data.uniform_(-1, 1)
    torch.manual_seed(1)
    net = ElasticResNet(1, 5, **SMALL)
    head = net.classifier.weight.clone()
    warm_start(net, pretrained)
    src = pretrained.state_dict()
    for name, value in net.state_dict().items():
        if name.startswith("classifier."):
            continue
        if name == "stem_conv.weight":
            assert torch.allclose(value, src[name].sum(1, keepdim=True))
        else:
            assert torch.equal(value, src[name]), name
    assert torch.equal(net.classifier.weight, head)
    # a grey image seen by the grey stem = the same image as three equal channels seen by the RGB stem
    x = torch.rand(2, 1, 28, 28)
    net.eval()
    pretrained.eval()
    assert torch.allclose(net.features(x, max_config()), pretrained.features(x.expand(-1, 3, -1, -1), max_config()),
                          atol=1e-5)


def test_grey_to_rgb_and_refusals():
    w = torch.randn(4, 1, 3, 3)
    assert torch.allclose(map_input_channels(w, 3).sum(1, keepdim=True), w)
    with pytest.raises(ValueError, match="only 1 <-> 3"):
        map_input_channels(torch.randn(4, 2, 3, 3), 3)
    with pytest.raises(ValueError, match="stage_channels"):
        warm_start(ElasticResNet(1, 2, **SMALL), ElasticResNet(1, 2, stem_channels=8, stage_channels=(8, 8, 16, 32)))
    with pytest.raises(TypeError, match="ElasticResNet"):
        warm_start(ElasticResNet(1, 2, **SMALL), torch.nn.Linear(2, 2))
