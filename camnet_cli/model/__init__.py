"""The networks and their configs. Pure tensors: nothing here reads files or talks to users."""

from camnet_cli.model.config import (
    MODEL_SIZES,
    EnhanceNetConfig,
    OneStageNetConfig,
    RestoreNetConfig,
    config_from_dict,
    config_to_dict,
    enhance_config,
    onestage_config,
    restore_config,
)
from camnet_cli.model.networks import CameraNet, EnhanceNet, OneStageNet, RestoreNet, UNet, build

__all__ = [
    "MODEL_SIZES",
    "CameraNet",
    "EnhanceNet",
    "EnhanceNetConfig",
    "OneStageNet",
    "OneStageNetConfig",
    "RestoreNet",
    "RestoreNetConfig",
    "UNet",
    "build",
    "config_from_dict",
    "config_to_dict",
    "enhance_config",
    "onestage_config",
    "restore_config",
]
