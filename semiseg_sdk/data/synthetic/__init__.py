"""Built-in synthetic datasets, generated on the fly (nothing downloaded): ``synthetic-driving``, ``synthetic-aerial``.

Importing this package registers both with ``semiseg_sdk.data.registry``. Item ``i`` depends only on
(seed, split, i); ``domain`` changes appearance (weather, season, sensor) and keeps the label map.
"""
from .aerial import SyntheticAerial, generate_aerial
from .aerial_domains import AERIAL_DOMAINS
from .aerial_looks import AERIAL_INFO
from .driving import SyntheticDriving, generate_driving
from .driving_domains import DRIVING_DOMAINS
from .driving_looks import DRIVING_INFO

__all__ = ["SyntheticDriving", "SyntheticAerial", "generate_driving", "generate_aerial", "DRIVING_DOMAINS",
           "AERIAL_DOMAINS", "DRIVING_INFO", "AERIAL_INFO"]
