"""Package namespaces that import their modules on first use, so importing a package stays cheap
and `python -m package.module` runs that module once (an eager import would load it twice)."""

import importlib
import sys


def exports(package: str, names: dict, modules: tuple = ()):
  """A module `__getattr__` for `package`: names[name] is the submodule defining `name`; each of
  `modules` is a submodule reachable as an attribute. The first lookup caches the value."""
  def __getattr__(name: str):  # pylint: disable=invalid-name
    if name in modules:
      value = importlib.import_module(f"{package}.{name}")
    elif name in names:
      value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
    else:
      raise AttributeError(f"module {package!r} has no attribute {name!r}")
    setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
    return value
  return __getattr__
