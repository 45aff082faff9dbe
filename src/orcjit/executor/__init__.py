"""Executors: where JIT'd code is placed and run."""

from .base import ActionCall, Executor, FinalizeRequest, Protection, SegmentWrite
from .in_process import InProcessExecutor

__all__ = ["Executor", "InProcessExecutor", "ActionCall", "FinalizeRequest", "Protection",
           "SegmentWrite"]
