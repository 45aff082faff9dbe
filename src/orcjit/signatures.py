"""C-like signature strings -> ctypes function prototypes.

``"double(double, int)"``, ``"void(char*, ...)"``-free, ``"int64_t(void*)"``:
enough C to call JIT'd functions without spelling out ctypes. A ctypes
prototype (``CFUNCTYPE(...)``) is accepted as is.
"""

from __future__ import annotations

import ctypes
import functools
import re

from .errors import SignatureError

_SCALARS: dict[str, type | None] = {
    "void": None,
    "bool": ctypes.c_bool, "_Bool": ctypes.c_bool,
    "char": ctypes.c_char, "signed char": ctypes.c_byte, "unsigned char": ctypes.c_ubyte,
    "short": ctypes.c_short, "unsigned short": ctypes.c_ushort,
    "int": ctypes.c_int, "signed": ctypes.c_int, "unsigned": ctypes.c_uint,
    "unsigned int": ctypes.c_uint,
    "long": ctypes.c_long, "unsigned long": ctypes.c_ulong,
    "long long": ctypes.c_longlong, "unsigned long long": ctypes.c_ulonglong,
    "float": ctypes.c_float, "double": ctypes.c_double,
    "size_t": ctypes.c_size_t, "ssize_t": ctypes.c_ssize_t,
    "intptr_t": ctypes.c_ssize_t, "uintptr_t": ctypes.c_size_t,
    "int8_t": ctypes.c_int8, "int16_t": ctypes.c_int16, "int32_t": ctypes.c_int32,
    "int64_t": ctypes.c_int64, "uint8_t": ctypes.c_uint8, "uint16_t": ctypes.c_uint16,
    "uint32_t": ctypes.c_uint32, "uint64_t": ctypes.c_uint64,
    "i1": ctypes.c_bool, "i8": ctypes.c_int8, "i16": ctypes.c_int16, "i32": ctypes.c_int32,
    "i64": ctypes.c_int64, "ptr": ctypes.c_void_p,
}

#: the base class of every ctypes function prototype
CFuncPtr: type = ctypes.CFUNCTYPE(None).__mro__[1]

_SIGNATURE = re.compile(r"^\s*(?P<ret>[^()]+?)\s*\((?P<args>[^()]*)\)\s*$")


def parse_type(text: str) -> type | None:
    """One C type: a scalar from the table, or any pointer (``char*`` is a C string)."""
    t = " ".join(text.replace("const", " ").split())
    stars = t.count("*")
    base = t.replace("*", "").strip()
    if stars:
        if stars == 1 and base == "char":
            return ctypes.c_char_p
        if base not in _SCALARS and not base.startswith("struct "):
            raise SignatureError(f"unknown type {text.strip()!r}")
        return ctypes.c_void_p
    if base not in _SCALARS:
        raise SignatureError(f"unknown type {text.strip()!r}")
    return _SCALARS[base]


@functools.lru_cache(maxsize=256)
def _parse(signature: str) -> type:
    match = _SIGNATURE.match(signature)
    if not match:
        raise SignatureError(f"cannot parse signature {signature!r}; expected e.g. 'int(int, double)'")
    restype = parse_type(match["ret"])
    args = match["args"].strip()
    argtypes = []
    if args and args != "void":
        for part in args.split(","):
            argtype = parse_type(part)
            if argtype is None:
                raise SignatureError(f"'void' is not an argument type in {signature!r}")
            argtypes.append(argtype)
    return ctypes.CFUNCTYPE(restype, *argtypes)


def to_prototype(signature: str | type) -> type:
    """A ctypes function prototype from a C-like string or a prototype."""
    if isinstance(signature, str):
        return _parse(signature)
    if isinstance(signature, type) and issubclass(signature, CFuncPtr):
        return signature
    raise SignatureError(f"a signature is a string like 'int(int)' or a ctypes CFUNCTYPE, "
                         f"not {signature!r}")
