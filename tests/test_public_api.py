"""The public names are exactly what the modules export, and each is documented."""

from __future__ import annotations

import importlib
import inspect

import pytest

PUBLIC_MODULES = [
    "luno_wf",
    "luno_wf.adapter",
    "luno_wf.errors",
    "luno_wf.memory",
    "luno_wf.metrics",
    "luno_wf.testing",
    "luno_wf.visualise",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_complete(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported == sorted(exported, key=str.lower), f"{name}.__all__ is not sorted"
    assert len(set(exported)) == len(exported)
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr} is listed but missing"
    public = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_")
        and not inspect.ismodule(v)
        and getattr(v, "__module__", None) == name
        and (inspect.isclass(v) or inspect.isfunction(v))
    }
    assert public <= set(exported), (
        f"{name} defines public names not exported: {public - set(exported)}"
    )


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_public_object_has_a_docstring(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__
    for attr in module.__all__:
        value = getattr(module, attr)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{name}.{attr} has no docstring"
        if inspect.isclass(value):
            for member, fn in vars(value).items():
                if member.startswith("_") or not (
                    inspect.isfunction(fn) or isinstance(fn, property)
                ):
                    continue
                assert inspect.getdoc(fn), f"{name}.{attr}.{member} has no docstring"
