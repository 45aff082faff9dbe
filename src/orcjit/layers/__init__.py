"""The layers: each takes a set of modules (or objects) and hands it down."""

from .base import ForwardingLayer, Handle, Layer
from .compile import IRCompileLayer, SimpleCompiler, create_target_machine
from .compile_on_demand import INDIRECTIONS, CompileOnDemandLayer
from .lazy_emit import LazyEmitLayer
from .object_linking import ObjectLinkingLayer
from .transform import IRTransformLayer, optimization_pipeline

__all__ = ["Layer", "ForwardingLayer", "Handle", "IRCompileLayer", "SimpleCompiler",
           "create_target_machine", "ObjectLinkingLayer", "IRTransformLayer",
           "optimization_pipeline", "LazyEmitLayer", "CompileOnDemandLayer", "INDIRECTIONS"]
