"""Models: classifiers (SmallCNN, ResNet18), SimCLR encoder and loss, augmentations."""
from jaxprune.models.augment import random_crop_flip, simclr_augment, to_float
from jaxprune.models.classifier import ResNet18, SmallCNN, classifier_loss
from jaxprune.models.ssl import Encoder, embed, nt_xent, simclr_loss

__all__ = [
    "Encoder", "ResNet18", "SmallCNN", "classifier_loss", "embed", "nt_xent", "random_crop_flip",
    "simclr_augment", "simclr_loss", "to_float",
]
