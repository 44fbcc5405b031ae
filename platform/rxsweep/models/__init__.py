"""rxsweep.models: backbones (registry), gradient reversal, λ schedules, DANN heads.

Backbones are implemented here (no torchvision/timm dependency) with torchvision's parameter
names (timm's for ViT), so their state_dicts load through :func:`load_pretrained`.
"""

# Importing the family modules registers their backbones.
from . import cnn_small, densenet, efficientnet, resnet, vit  # noqa: F401
from .dann import ADVERSARIES, DANN, DISCRIMINATOR_PREFIXES, DOMAIN_LABELS
from .grl import GradientReversal, grad_reverse
from .heads import DomainHead, domain_loss
from .registry import create_backbone, list_backbones, register_backbone
from .schedules import get_schedule, list_schedules
from .weights import adapt_input_conv, load_pretrained

__all__ = [
    "create_backbone",
    "list_backbones",
    "register_backbone",
    "adapt_input_conv",
    "load_pretrained",
    "grad_reverse",
    "GradientReversal",
    "get_schedule",
    "list_schedules",
    "DomainHead",
    "DANN",
    "domain_loss",
    "DOMAIN_LABELS",
    "ADVERSARIES",
    "DISCRIMINATOR_PREFIXES",
]
