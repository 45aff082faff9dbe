"""Utilities for lazy compilation: indirect stubs and compile callbacks."""

from .callbacks import CompileCallbackManager
from .stubs import DirectStubsManager, IndirectStubsManager

__all__ = ["CompileCallbackManager", "DirectStubsManager", "IndirectStubsManager"]
