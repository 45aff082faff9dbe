"""Utilities for lazy compilation: indirect stubs and compile callbacks."""

from .callbacks import CompileCallbackManager
from .stubs import IndirectStubsManager

__all__ = ["CompileCallbackManager", "IndirectStubsManager"]
