"""2D decoders; importing this package registers ``fcn``, ``unet``, ``unetplusplus``, ``pspnet``, ``deeplabv3plus``, ``dpt``."""
from . import deeplabv3plus, dpt, fcn, pspnet, unet, unetplusplus  # noqa: F401  (registration)
from .pyramid_pooling import adaptive_avg_pool2d_exportable, pooling_matrix

__all__ = ["adaptive_avg_pool2d_exportable", "pooling_matrix"]
