"""The public namespace re-exports exactly what is meant to be public."""

import orcjit


def test_all_matches_the_public_names():
    public = {name for name in dir(orcjit) if not name.startswith("_")}
    submodules = {"errors", "jits", "layers", "symbols", "signatures", "link", "executor",
                  "runtime", "frontends", "arch", "lazy", "cli", "mcjit", "stack"}
    assert set(orcjit.__all__) - {"__version__"} == public - submodules


def test_every_error_derives_from_jit_error():
    for name in orcjit.__all__:
        obj = getattr(orcjit, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, orcjit.JITError), name
