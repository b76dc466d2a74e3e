"""Training methods, one module each, registered by name in `METHODS`.

Every module in this package is imported here, so a new method is one new file with a
`@register_method` class (plus a test of its official arithmetic; tests/test_methods_contract.py checks
the contract of its `step` on its own): nothing else to edit.
"""

import importlib
import pkgutil

from lib.core.methods.base import (
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

_SUPPORT = {"base", "common"}
for _m in pkgutil.iter_modules(__path__):
    if _m.name not in _SUPPORT and not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["METHODS", "Method", "MethodContext", "StepOutput", "build_method", "get_method_class",
           "method_arg_names", "register_method", "resolve_method_args"]
