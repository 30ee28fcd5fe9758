"""Every public function and class of diffgen has a docstring that describes each of its parameters."""

import importlib
import inspect
import pkgutil
import re

import pytest

import diffgen


def public_modules():
    names = ["diffgen"]
    for info in pkgutil.walk_packages(diffgen.__path__, prefix="diffgen."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        names.append(info.name)
    return sorted(names)


def public_objects():
    seen = set()
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name, None)
            if obj is None:
                yield f"{module_name}.{name} (listed in __all__ but missing)", None
                continue
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if not getattr(obj, "__module__", "").startswith("diffgen"):
                continue
            qualname = f"{obj.__module__}.{obj.__qualname__}"
            if qualname in seen:
                continue
            seen.add(qualname)
            yield qualname, obj


def parameters(obj):
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    return [p for p in sig.parameters if p not in ("self", "cls")]


def problems(obj):
    if obj is None:
        return ["missing"]
    doc = inspect.getdoc(obj)
    if not doc:
        return ["no docstring"]
    found = []
    first = doc.splitlines()[0].strip()
    if not first:
        found.append("the first line is empty")
    # Every parameter is described: in an Args section or inline (``name`` in the text).
    if not inspect.isclass(obj):
        undocumented = [p for p in parameters(obj) if not re.search(rf"\b{re.escape(p)}\b", doc)]
        if undocumented:
            found.append(f"parameters {undocumented} are not described")
    return found


OBJECTS = dict(public_objects())


def test_the_public_api_is_not_empty():
    assert len(OBJECTS) > 50


@pytest.mark.parametrize("qualname", sorted(OBJECTS))
def test_public_object_is_documented(qualname):
    assert not problems(OBJECTS[qualname]), f"{qualname}: {problems(OBJECTS[qualname])}"
