"""Split a module into per-function partitions by slicing its printed text.

llvmlite cannot move a function from one module to another, so a module is
printed once and its text is cut into top-level items. A partition is then
assembled from pieces only: the header and types, the one function (renamed
to its body name), declarations of exactly what it references, the
attribute groups and the metadata it reaches. Nothing copies the whole
module per function; building a partition costs in proportion to the
function and the names it uses.

Internal and private symbols that several partitions share are promoted to
hidden globals with names unique to the module set; debug info is dropped
from partitions (it would drag in the whole compile unit).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import InvalidIRError
from ..frontends.ir import has_o0_pipeline_work, has_target_lines

# a global name as LLVM prints it: @name, @"quoted name", @123
_GLOBAL = r'@(?:[-a-zA-Z$._][-a-zA-Z$._0-9]*|"(?:[^"\\]|\\.)*"|\d+)'
_GLOBAL_RE = re.compile(_GLOBAL)
_GLOBAL_SPLIT = re.compile(f"({_GLOBAL})")    # split: text, name, text, name, ..., text
_ALIAS_OF = re.compile(rf"= (?:[a-z_]+ )*alias [^,]+, ptr ({_GLOBAL})$")
_METADATA_REF = re.compile(r"!\d+\b")
_DEBUG_ATTACHMENT = re.compile(r",? !dbg !\d+")
_COMDAT_CLAUSE = re.compile(r"\s*comdat(?:\(\$[^)]*\))?")
_LINKAGES = {"private", "internal", "available_externally", "linkonce", "weak", "common",
             "appending", "extern_weak", "linkonce_odr", "weak_odr", "external"}
_LOCAL_LINKAGES = {"private", "internal"}
_DISCARDABLE = {"linkonce": "weak", "linkonce_odr": "weak_odr"}
BODY_SUFFIX = ".orc_body"


@dataclass(slots=True)
class FunctionItem:
    """A function definition: its name token, header line and full text."""

    name: str            # as printed, with '@'
    header: str          # "define ... {"
    text: str            # the whole definition, header to closing brace
    linkage: str         # "" for external

    @property
    def is_strong(self) -> bool:
        """An external definition: it beats weak and linkonce ones of the same name."""
        return self.linkage in ("", "external")


@dataclass(slots=True)
class GlobalItem:
    """A global variable, alias or ifunc line."""

    name: str
    line: str
    linkage: str


@dataclass
class ModuleText:
    """A printed module cut into its top-level items."""

    header: list[str]
    types: list[str]
    comdats: dict[str, str]
    globals: dict[str, GlobalItem]
    functions: dict[str, FunctionItem]
    declarations: dict[str, str]
    attributes: list[str]
    metadata: dict[str, str]            # "!N" -> line
    named_metadata: list[str]
    module_asm: list[str]
    function_aliases: dict[str, str] = field(default_factory=dict)   # alias -> function
    local_aliases: set[str] = field(default_factory=set)
    renames: dict[str, str] = field(default_factory=dict)   # promoted local names
    name: str = ""                     # the module identifier
    _originals: dict[str, str] = field(default_factory=dict)  # renamed -> printed name
    body_suffix: str = BODY_SUFFIX     # differs per replacement generation
    has_debug: bool = True             # whether anything needs _strip_debug (set by parse)
    #: what parse_ir would look for in each partition, known of the whole
    #: module: whether the header has both target lines; True if nothing in
    #: the module is work for the -O0 pipeline, else None (look at each)
    has_target: bool = False
    inert_at_o0: bool | None = None
    # built on first use, then shared by every partition of the module
    _declarations: dict[str, str] = field(default_factory=dict)   # renamed ref -> line
    _fixed_text: tuple[str, str] | None = None
    _named_closure: set[str] | None = None
    _node_operands: dict[str, list[str]] = field(default_factory=dict)   # node -> operands

    # -- cutting ------------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> ModuleText:
        mod = cls([], [], {}, {}, {}, {}, [], {}, [], [])
        lines = text.split("\n")
        i, n = 0, len(lines)
        while i < n:
            line = lines[i]
            if line.startswith("define "):
                start = i
                try:
                    i = lines.index("}", i)          # a function's closing line
                except ValueError:
                    i = n
                item_text = "\n".join(lines[start:i + 1])
                name = _defined_name(line)
                mod.functions[name] = FunctionItem(name, line, item_text, _linkage_of(line))
            elif line.startswith("declare "):
                mod.declarations[_defined_name(line)] = line
            elif line.startswith("@"):
                name = _GLOBAL_RE.match(line).group(0)  # type: ignore[union-attr]
                rest = line[len(name):].lstrip(" =")
                mod.globals[name] = GlobalItem(name, line, rest.split(" ", 1)[0]
                                               if rest.split(" ", 1)[0] in _LINKAGES else "")
            elif line.startswith("%") and " = type " in line:
                mod.types.append(line)
            elif line.startswith("$") and " = comdat " in line:
                mod.comdats[line.split(" ", 1)[0]] = line
            elif line.startswith("attributes #"):
                mod.attributes.append(line)
            elif line.startswith("!") and line[1:2].isdigit():
                mod.metadata[line.split(" ", 1)[0]] = line
            elif line.startswith("!"):
                if not line.startswith("!llvm.dbg.cu"):
                    mod.named_metadata.append(line)
            elif line.startswith(("target ", "source_filename")):
                mod.header.append(line)
            elif line.startswith("module asm"):
                mod.module_asm.append(line)
            elif line.startswith("; ModuleID = '"):
                mod.name = line[len("; ModuleID = '"):-1]
            i += 1
        mod._separate_function_aliases()
        mod.has_debug = _has_debug(text)
        mod.has_target = has_target_lines("\n".join(mod.header))
        mod.inert_at_o0 = None if has_o0_pipeline_work(text) else True
        return mod

    def _separate_function_aliases(self) -> None:
        """``@a = alias ..., ptr @f`` with ``f`` a function: not a global but a
        second name for ``f``'s stub (an alias cannot point at a declaration,
        which is all ``f`` is outside its own partition)."""
        for name, item in list(self.globals.items()):
            match = _ALIAS_OF.search(item.line)
            if match and match.group(1) in self.functions:
                self.function_aliases[name] = match.group(1)
                if item.linkage in _LOCAL_LINKAGES:
                    self.local_aliases.add(name)
                del self.globals[name]

    def promote_locals(self, suffix: str) -> None:
        """Give internal/private symbols hidden, set-unique names."""
        for name, item in list(self.functions.items()) + list(self.globals.items()):
            if item.linkage in _LOCAL_LINKAGES and not name.startswith("@llvm."):
                self.renames[name] = _suffixed(name, suffix)
        for alias in self.local_aliases:
            self.renames[alias] = _suffixed(alias, suffix)
        self._declarations.clear()
        self._originals = {self.renames.get(n, n): n for n in
                           list(self.functions) + list(self.globals) + list(self.function_aliases)}

    # -- assembling ----------------------------------------------------------
    def rename(self, text: str) -> str:
        if not self.renames:
            return text
        get = self.renames.get
        return _GLOBAL_RE.sub(lambda m: get(m[0], m[0]), text)

    def stub_name(self, name: str) -> str:
        """The symbol name a function's stub is known by (without '@', unquoted)."""
        return _bare(self.renames.get(name, name))

    def _body_name(self, renamed: str, tier: str) -> str:
        """The IR name of a function's body, from its (renamed) IR name
        (``tier`` tells recompilations apart)."""
        return _suffixed(renamed, self.body_suffix + tier)

    def defined_functions(self) -> list[str]:
        return [name for name, item in self.functions.items()
                if item.linkage != "available_externally"]

    def function_partition(self, name: str, tier: str = "") -> tuple[str, str]:
        """IR text of a module that defines only ``name``'s body, and the
        body's symbol (``tier`` tells recompilations apart)."""
        item = self.functions[name]
        text = _strip_debug(item.text) if self.has_debug else item.text
        # one scan of the function's text, however long, finds the names it uses
        parts = _GLOBAL_SPLIT.split(text)
        names = parts[1::2]
        if names[0] != name:
            raise InvalidIRError(f"cannot partition: {name} is not first in {item.header[:80]!r}")
        if self.renames:
            names = list(map(self.renames.get, names, names))
            parts[1::2] = names
        references = set(names[1:])      # names[0] is the function's own, in its header
        body = self._body_name(names[0], tier)
        parts[0], parts[1] = _hidden_prefix(parts[0]), body
        text = "".join(parts)
        if "comdat" in item.header:
            header, newline, rest = text.partition("\n")
            prefix, signature, suffix = _split_header(header, body)
            text = prefix + signature + _COMDAT_CLAUSE.sub("", suffix) + newline + rest
        return self._assemble(text, references), _bare(body)

    def defined_globals(self) -> set[str]:
        """Global variables (and aliases) this module defines, as renamed."""
        return {self.renames.get(name, name) for name, item in self.globals.items()
                if item.linkage not in ("external", "extern_weak", "available_externally")}

    def globals_partition(self, exclude: set[str] = frozenset()) -> str:  # type: ignore[assignment]
        """IR text of a module with the module's global variables (and aliases),
        but for those in ``exclude`` (renamed names: already defined elsewhere)."""
        lines, comdats = [], []
        for item in self.globals.values():
            if self.renames.get(item.name, item.name) in exclude:
                continue
            if item.linkage == "available_externally":
                continue                  # a copy for inlining, defined elsewhere
            line = self.rename(item.line)
            if item.linkage in _LOCAL_LINKAGES and not item.name.startswith("@llvm."):
                line = _replace_linkage(line, item.linkage, "hidden")
            elif item.linkage in _DISCARDABLE:
                # partitions use it by name: it must survive optimisation unused
                line = _replace_linkage(line, item.linkage, _DISCARDABLE[item.linkage])
            lines.append(_strip_debug(line))
            comdats.extend(re.findall(r"comdat\((\$[^)]+)\)", line))
            if re.search(r"comdat(?!\()", line):
                comdats.append("$" + _bare(item.name))
        body = "\n".join(lines)
        references = set(_GLOBAL_RE.findall(body))
        references -= {self.renames.get(name, name) for name in self.globals}
        return self._assemble(body, references, comdats)

    def _assemble(self, body: str, references: set[str], comdats: Sequence[str] = ()) -> str:
        prologue, epilogue = self._fixed()
        out = [prologue]
        if comdats:
            out += [self.comdats[c] for c in dict.fromkeys(comdats) if c in self.comdats]
        known = self._declarations
        for ref in sorted(references):
            declaration = known.get(ref)
            if declaration is None:
                declaration = known[ref] = self._declare(ref)
            if declaration:
                out.append(declaration)
        if self.metadata:
            # numbered metadata is used by the body (and rarely a declaration)
            metadata = self._metadata_closure([line for line in out[1:] if "!" in line] + [body])
        else:
            metadata = self.named_metadata
        out += (body, epilogue, *metadata, "")
        return "\n".join(out)

    def _fixed(self) -> tuple[str, str]:
        """The text every partition starts and ends with (joined once per module)."""
        if self._fixed_text is None:
            self._fixed_text = ("\n".join(self.header + self.types + self.module_asm),
                                "\n".join(self.attributes))
        return self._fixed_text

    def _declare(self, ref: str) -> str:
        """The line declaring ``ref`` (renamed) in a partition ("" for none needed)."""
        original = self._originals.get(ref, ref)
        if original in self.function_aliases:
            target = self.function_aliases[original]
            declaration = _declaration(self.rename(self.functions[target].header))
            return declaration.replace(self.renames.get(target, target) + "(", ref + "(", 1)
        if original in self.functions:
            return _declaration(self.rename(self.functions[original].header))
        if original in self.globals:
            return f"{ref} = external global i8"
        return self.declarations.get(original, "")

    def _metadata_closure(self, texts: list[str]) -> list[str]:
        """Named metadata and every numbered node reached from it or from ``texts``."""
        if self._named_closure is None:
            self._named_closure = self._reach("\n".join(self.named_metadata), set())
        seen = set(self._named_closure)
        for text in texts:
            if "!" in text:
                self._reach(text, seen)
        return self.named_metadata + [self.metadata[r] for r in sorted(seen, key=lambda r: int(r[1:]))]

    def _reach(self, text: str, seen: set[str]) -> set[str]:
        """``seen`` plus every node reached from ``text``."""
        todo = list(set(_METADATA_REF.findall(text)))
        while todo:
            ref = todo.pop()
            if ref in seen or ref not in self.metadata:
                continue
            seen.add(ref)
            todo.extend(self._operands(ref))
        return seen

    def _operands(self, ref: str) -> list[str]:
        """The nodes node ``ref`` refers to (read once per module: partitions
        share their TBAA, loop and type nodes)."""
        operands = self._node_operands.get(ref)
        if operands is None:
            operands = self._node_operands[ref] = _METADATA_REF.findall(self.metadata[ref])
        return operands


_ESCAPE = re.compile(r"\\([0-9A-Fa-f]{2})")


def _bare(name: str) -> str:
    """The symbol an IR name becomes in the object: '@foo' -> 'foo',
    '@"a b"' -> 'a b', escapes decoded, and a leading \\01 (LLVM's "use this
    name verbatim" mark, which the mangler drops) removed."""
    name = name[1:]
    if name.startswith('"'):
        name = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name[1:-1])
    return name[1:] if name.startswith("\x01") else name


def _suffixed(name: str, suffix: str) -> str:
    if name.startswith('@"'):
        return name[:-1] + suffix + '"'
    if name[1:].isdigit():
        return f'@"{name[1:]}{suffix}"'
    return name + suffix


def _defined_name(line: str) -> str:
    """The @name of a define/declare line (the first global token before '(')."""
    for match in _GLOBAL_RE.finditer(line):
        if line[match.end():match.end() + 1] == "(":
            return match.group(0)
    raise InvalidIRError(f"cannot partition: no function name in {line[:80]!r}")


def _linkage_of(header: str) -> str:
    """The linkage word of a ``define`` line ("" for external)."""
    words = header[len("define"):].split()
    return next((w for w in words[:3] if w in _LINKAGES), "")


def _replace_linkage(line: str, linkage: str, replacement: str) -> str:
    return re.sub(rf"(?<=[ =])\b{linkage}\b", replacement, line, count=1)


_PARENTHESIS_OR_QUOTE = re.compile(r'[()"]')


def _argument_list_end(header: str, name_end: int) -> int:
    """Index just past the ')' closing the argument list that starts at ``name_end``."""
    depth, i = 0, name_end
    while (match := _PARENTHESIS_OR_QUOTE.search(header, i)) is not None:
        c, i = match.group(), match.end()
        if c == '"':
            i = header.index('"', i) + 1
        elif c == "(":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return i
    raise InvalidIRError(f"cannot partition: unbalanced argument list in {header[:80]!r}")


def _split_header(header: str, name: str | None = None) -> tuple[str, str, str]:
    """(prefix up to the name, name + arguments, suffix) of a define/declare line
    (of function ``name``, if known)."""
    if name is None:
        name = _defined_name(header)
    start = header.index(name + "(")
    end = _argument_list_end(header, start + len(name))
    return header[:start], header[start:end], header[end:]


_DECLARATION_SUFFIX = re.compile(r"(?:unnamed_addr|local_unnamed_addr|#\d+|align \d+|addrspace\(\d+\))")


def _declaration(header: str) -> str:
    """A ``declare`` line from a ``define`` header (linkage, comdat, personality, ... dropped)."""
    prefix, signature, suffix = _split_header(header.rstrip(" {"))
    words = [w for w in prefix.split()[1:] if w not in _LINKAGES]
    kept = " ".join(_DECLARATION_SUFFIX.findall(suffix))
    return " ".join(["declare", *words, signature, kept]).rstrip()


# hidden implies dso_local, and must follow it: preemption and visibility go too
_NOT_HIDDEN_DEFINITION = _LINKAGES | {"hidden", "protected", "default", "dso_local",
                                      "dso_preemptable"}


@functools.lru_cache(maxsize=256)
def _hidden_prefix(prefix: str) -> str:
    """A define line's words before the function's name (``prefix``), made
    those of an external hidden definition (functions share a few)."""
    words = [w for w in prefix.split()[1:] if w not in _NOT_HIDDEN_DEFINITION]
    return " ".join(["define", "hidden", *words, ""])


def _has_debug(text: str) -> bool:
    return "!dbg" in text or "#dbg_" in text or "llvm.dbg." in text


def _strip_debug(text: str) -> str:
    if not _has_debug(text):
        return text
    kept = [line for line in text.split("\n")
            if not line.lstrip().startswith("#dbg_") and "@llvm.dbg." not in line]
    return _DEBUG_ATTACHMENT.sub("", "\n".join(kept))
