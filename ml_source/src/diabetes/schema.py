"""Where models logged by earlier versions of this project find the request check.

Their `diabetes_mlops.served_model` (shipped in the model's code/ folder) imports
`diabetes.schema.validate_request`; in a process that has already imported an installed `diabetes`,
that import reaches this module. The check itself lives in diabetes.request_check.
"""

from diabetes.request_check import validate_request

__all__ = ["validate_request"]
