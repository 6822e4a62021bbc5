"""BN recalibration (reset, cumulative averaging over the training images) and inherited top-1."""

from __future__ import annotations

import torch
from torch import nn

from explore.space import load_space
from explore.supernet import Supernet, extract
from explore.supernet.inherit import inherited_top1, recalibrate_bn
from explore.train import ImageData, evaluate, load_dataset


def test_recalibration_gives_the_exact_mean_over_the_images_and_eval_mode():
    images = torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8)
    data = ImageData(images, torch.zeros(10, dtype=torch.int64))
    model = nn.Sequential(nn.BatchNorm2d(1))
    model[0].running_mean.fill_(7.0)
    recalibrate_bn(model, data, img_size=4, mean=[0.0], std=[1.0], images=8, batch_size=3)  # 3 + 3 + 2 images
    x = images[:8].float() / 255.0
    batch_means = [x[i:i + 3].mean() for i in (0, 3, 6)]
    assert torch.allclose(model[0].running_mean, torch.stack(batch_means).mean().reshape(1), atol=1e-6)
    assert model[0].momentum == 0.1 and not model.training and int(model[0].num_batches_tracked) == 3


def test_inherited_top1_is_extract_recalibrate_evaluate():
    data = load_dataset("synthetic", max_train=48, max_val=24, seed=0, img_size=32)
    supernet = Supernet(load_space("msla"), in_chans=data.in_chans, num_classes=data.num_classes)
    config = supernet.smallest(supernet.groups[0])
    top1 = inherited_top1(supernet, config, data.train, data.val, mean=data.mean, std=data.std, images=32)
    model = recalibrate_bn(extract(supernet, config), data.train, img_size=config.img_size, mean=data.mean,
                           std=data.std, images=32)
    assert 0.0 <= top1 <= 100.0
    assert top1 == evaluate(model, data.val, img_size=config.img_size, mean=data.mean, std=data.std)
