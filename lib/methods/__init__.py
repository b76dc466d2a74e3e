"""Training methods, one module each, registered by name in `METHODS`."""

from . import at, atbsl, ce, taet  # noqa: F401  (registration side effects)
from .base import (
    METHODS,
    Method,
    MethodContext,
    StepOutput,
    build_method,
    get_method_class,
    method_arg_names,
    register_method,
    resolve_method_args,
)

__all__ = ["METHODS", "Method", "MethodContext", "StepOutput", "build_method", "get_method_class",
           "method_arg_names", "register_method", "resolve_method_args"]
