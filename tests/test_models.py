"""Backbones: output shapes and parameter counts."""

import numpy as np
import pytest

from ns3l_tf import models


def test_wrn28_2_parameter_count():
    model = models.wrn28_2(num_classes=10)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    # Oliver et al.'s WRN-28-2 has about 1.47 M parameters for K=10; 3,616 of them are BN
    # moving statistics.
    assert model.count_params() == 1_471_226
    assert trainable == 1_467_610
    assert model.output_shape == (None, 10)


def test_wrn28_2_structure():
    model = models.wrn28_2(num_classes=100)
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    three_by_three = [c for c in convs if c.kernel_size == (3, 3)]
    shortcuts = [c for c in convs if c.kernel_size == (1, 1)]
    assert len(three_by_three) == 1 + 3 * 4 * 2  # stem + 3 groups × 4 units × 2 convs
    assert [c.filters for c in shortcuts] == [32, 64, 128]
    assert all(not c.use_bias for c in convs)
    assert model.output_shape == (None, 100)


def test_small_cnn_parameter_count_and_output():
    model = models.small_cnn()
    # convs 9·(1·32 + 32·32 + 32·64 + 64·64) = 64,800; BN 4·(32+32+64+64) = 768; dense 650.
    assert model.count_params() == 64_800 + 768 + 650
    logits = model(np.zeros((3, 28, 28, 1), "float32"))
    assert logits.shape == (3, 10)


def test_wrn_stl10_has_mixmatchs_four_groups():
    model = models.wrn_stl10(num_classes=10)
    shortcuts = [
        layer.filters
        for layer in model.layers
        if layer.__class__.__name__ == "Conv2D" and layer.kernel_size == (1, 1)
    ]
    assert shortcuts == [32, 64, 128, 256]  # --scales=4: filters 32 << scale
    last_unit = [layer for layer in model.layers if layer.__class__.__name__ == "Add"][-1]
    assert last_unit.output.shape == (None, 12, 12, 256)  # 96 → 48 → 24 → 12
    assert model.count_params() == 5_937_146


def test_build_backbone_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown model 'resnet'; allowed: small_cnn, wrn28_2"):
        models.build_backbone("resnet", 10, (28, 28, 1))
