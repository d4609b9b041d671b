"""The networks: the backbone registry (`backbones`, `create_backbone` over it as timm's `create_model`), where
pretrained weights come from (`weights`), the classifier built for a strategy (`model`), and the EfficientNet-Lite
adapter (`efficientnet_lite`).
"""

from transferlab._lazy import lazy_exports

_EXPORTS = {
    "BackboneSpec": "backbones",
    "REGISTRY": "backbones",
    "register": "backbones",
    "get_spec": "backbones",
    "resolve_backbone": "backbones",
    "create_backbone": "model",
    "build_model": "model",
    "check_weights": "model",
    "TransferModel": "model",
    "WeightsInfo": "weights",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
