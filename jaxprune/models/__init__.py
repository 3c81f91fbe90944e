"""Models: classifiers (SmallCNN, ResNet18) and the classifier a job trains (config, build,
accuracy), the SimCLR encoder and loss, augmentations, image conventions."""

from jaxprune.models.augment import random_crop_flip, simclr_augment
from jaxprune.models.classifier import (
  Classifier,
  ClassifierConfig,
  ResNet18,
  SmallCNN,
  accuracy,
  build,
  classifier_loss,
)
from jaxprune.models.images import check_images, to_unit_float
from jaxprune.models.ssl import SimCLREncoder, nt_xent, simclr_features, simclr_loss

__all__ = [
  "Classifier",
  "ClassifierConfig",
  "ResNet18",
  "SimCLREncoder",
  "SmallCNN",
  "accuracy",
  "build",
  "check_images",
  "classifier_loss",
  "nt_xent",
  "random_crop_flip",
  "simclr_augment",
  "simclr_features",
  "simclr_loss",
  "to_unit_float",
]
