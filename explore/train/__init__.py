"""Training: datasets held as uint8 tensors, model input, the short proxy loop and top-1 evaluation.

The proxy ranks architectures cheaply (AdamW, warm-up + cosine, label smoothing, crop + flip); it
does not reproduce any paper's full schedule.
"""

from explore.train.datasets import (
    DATASETS,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ROOT,
    HELD_OUT_FOLDERS,
    check_dataset,
    load_dataset,
)
from explore.train.normalize import Normalizer, to_model_input
from explore.train.proxy import (
    AUTOTUNE_MIN_STEPS,
    PRECISIONS,
    Optimisation,
    ProxyRecipe,
    ProxyResult,
    autocast,
    autotune,
    check_losses,
    choose_precision,
    evaluate,
    optimisation,
    seed_everything,
    train_proxy,
    train_step,
)
from explore.train.splits import DatasetBundle, ImageData, dataset_info
from explore.train.scenes import (
    IGNORE_INDEX,
    SEGMENTATION_DATASETS,
    SegmentationData,
    SegmentationSplit,
    check_segmentation_dataset,
    load_segmentation,
    segmentation_info,
)
from explore.train.segment import SegmentationResult, evaluate_segmentation, miou, train_segmentation

__all__ = [
    "DATASETS", "FASHION_MNIST_CLASSES", "FASHION_MNIST_ROOT", "HELD_OUT_FOLDERS", "check_dataset", "load_dataset",
    "Normalizer", "to_model_input",
    "AUTOTUNE_MIN_STEPS", "PRECISIONS", "Optimisation", "ProxyRecipe", "ProxyResult", "autocast", "autotune",
    "choose_precision", "evaluate", "optimisation", "seed_everything", "train_proxy", "train_step", "check_losses",
    "DatasetBundle", "ImageData", "dataset_info",
    "IGNORE_INDEX", "SEGMENTATION_DATASETS", "SegmentationData", "SegmentationSplit", "check_segmentation_dataset",
    "load_segmentation", "segmentation_info", "SegmentationResult", "evaluate_segmentation", "miou",
    "train_segmentation",
]
