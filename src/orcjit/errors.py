"""The one exception hierarchy of orcjit.

Every error orcjit raises on purpose derives from :class:`JITError`, so
``except orcjit.JITError`` catches all of them::

    JITError
     ├── InvalidIRError            IR text or bitcode LLVM rejects (LLVM's message)
     ├── InvalidObjectError        a malformed or unsupported relocatable object
     │    └── UnsupportedError     well-formed, but uses a feature we lack (TLS, ...)
     ├── LinkError                 an object is fine but cannot be linked
     │    ├── UnresolvedSymbolsError   names every undefined symbol
     │    ├── DuplicateDefinitionError two strong definitions of one name
     │    └── RelocationOverflowError  a fix-up value does not fit its field
     ├── CompileError              LLVM failed to generate code for valid IR
     ├── ExecutorError             the executor (memory, calls) failed
     ├── SignatureError            a C-like signature string cannot be parsed
     └── ConfigurationError        an option with an impossible value (also a ValueError)

Errors carry their data (missing names, the symbol, the relocation kind) as
attributes, not only in the message.
"""

from __future__ import annotations

from collections.abc import Iterable


class JITError(Exception):
    """Base of every error orcjit raises."""


class InvalidIRError(JITError):
    """LLVM rejected IR text, bitcode or a module; the message is LLVM's."""


class InvalidObjectError(JITError):
    """A relocatable object is malformed: truncated, bad offset or index.

    Raised before anything is written to JIT memory.
    """


class UnsupportedError(InvalidObjectError):
    """The object is well formed but needs a feature orcjit lacks (e.g. TLS)."""


class LinkError(JITError):
    """An object cannot be linked into the JIT."""


class UnresolvedSymbolsError(LinkError):
    """Symbols referenced but defined nowhere; ``names`` lists every one."""

    def __init__(self, names: Iterable[str]):
        self.names = sorted(set(names))
        # LLVM's wording, familiar to lli users
        super().__init__("Symbols not found: [ " + ", ".join(self.names) + " ]")


class DuplicateDefinitionError(LinkError):
    """A strong definition of a name that is already strongly defined."""

    def __init__(self, names: Iterable[str]):
        self.names = sorted(set(names))
        super().__init__("duplicate definition of: " + ", ".join(self.names))


class RelocationOverflowError(LinkError):
    """A relocation's value does not fit its field; never truncated silently."""

    def __init__(self, kind: str, symbol: str, value: int, section: str, offset: int):
        self.kind, self.symbol, self.value = kind, symbol, value
        self.section, self.offset = section, offset
        super().__init__(
            f"relocation {kind} at {section}+{offset:#x} against '{symbol}' "
            f"out of range (value {value:#x}); the target is too far for this "
            "code model (try code_model='large' or a PIC relocation model)"
        )


class CompileError(JITError):
    """LLVM failed to turn a valid module into an object."""


class ExecutorError(JITError):
    """The executor could not reserve, write, protect or call."""


class SignatureError(JITError, ValueError):
    """A C-like signature string such as ``"int(int, int)"`` is malformed."""


class ConfigurationError(JITError, ValueError):
    """An option with a value orcjit cannot work with (code model, level, ...)."""
