"""The pyfunc loader module every logged model names (`loader_module` in its MLmodel file).

Models already in registries load through this path, so it stays here whatever else moves; the
flavor itself lives in `diabetes_mlops.serving.served_model`.
"""

from diabetes_mlops.serving.served_model import _load_pyfunc

__all__ = ["_load_pyfunc"]
