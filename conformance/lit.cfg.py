# -*- Python -*-
"""lit configuration for LLVM 14's lli tests (llvm/test/ExecutionEngine).

Stands in for LLVM's own llvm/test/lit.cfg.py, which needs a configured LLVM
build tree. It is loaded by the lit.site.cfg.py that conformance/run.py
generates next to the fetched tests (from lit.site.cfg.py.in). Everything an
ExecutionEngine RUN line needs is defined the way LLVM 14's lit.cfg.py defines
it, from Debian's installed LLVM 14 instead of a build tree:

  * substitutions: `%lli` and `lli` (both resolve lit's `lli` parameter, as in
    upstream `llvm-lit -D lli=...`), FileCheck, not, count, llc, opt,
    llvm-ar, llvm-lipo, llvm-dwarfdump, llvm-objdump, ..., `%exeext`;
    `%s %t %p %S` are lit's own;
  * features: native, system-linux, x86_64-linux, target-x86_64,
    <target>-registered-target, cxx-shared-library, thread_support, ...;
    config.root attributes read by the suite's lit.local.cfg files
    (targets, native_target, host_arch, target_triple, enable_ffi).

Only tests whose RUN lines run lli are collected (RuntimeDyld and JITLink hold
one such test). MCJIT/remote (needs lli-child-target) is excluded unless
`-D include_remote=1`.

Parameters (-D NAME=VALUE):
  lli             command substituted for `lli` and `%lli` (default: Debian's)
  exec_root       where %t files go (default: <tests>/../Output-lit)
  include_remote  also collect MCJIT/remote
"""

import os
import platform
import re
import subprocess
import sys

import lit.formats
import lit.llvm
import lit.util
from lit.llvm.subst import FindTool, ToolSubst

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lli_test_format import LliTests  # noqa: E402

# ---------------------------------------------------------------------------
# Facts about the installed LLVM (what LLVM's lit.site.cfg.py would hold).
# config.llvm_tools_dir comes from the generated lit.site.cfg.py.

tools_dir = config.llvm_tools_dir


def tool_output(*argv):
    return subprocess.run(argv, check=True, capture_output=True,
                          text=True).stdout


def llvm_config_query(*flags):
    return tool_output(os.path.join(tools_dir, 'llvm-config'), *flags).split()


def needed_libs(binary):
    """DT_NEEDED entries of an ELF file, via llvm-readobj."""
    out = tool_output(os.path.join(tools_dir, 'llvm-readobj'),
                      '--needed-libs', binary)
    inside = False
    libs = []
    for line in out.splitlines():
        if 'NeededLibraries [' in line:
            inside = True
        elif ']' in line:
            inside = False
        elif inside and line.strip():
            libs.append(line.strip())
    return libs


_llc_version = tool_output(os.path.join(tools_dir, 'llc'), '--version')
_default_triple = re.search(r'Default target:\s*(\S+)', _llc_version).group(1)

config.host_triple = llvm_config_query('--host-target')[0]   # LLVM_HOST_TRIPLE
config.llvm_host_triple = config.host_triple
config.target_triple = _default_triple                     # LLVM_TARGET_TRIPLE
config.host_arch = platform.machine()                      # CMAKE_HOST_SYSTEM_PROCESSOR
config.targets_to_build = ' '.join(llvm_config_query('--targets-built'))
config.targets = frozenset(config.targets_to_build.split())
config.native_target = {                                   # LLVM_NATIVE_ARCH
    'x86_64': 'X86', 'i386': 'X86', 'i686': 'X86', 'aarch64': 'AArch64',
    'arm': 'ARM', 'mips': 'Mips', 'mipsel': 'Mips', 'powerpc64le': 'PowerPC',
    'ppc64le': 'PowerPC', 's390x': 'SystemZ', 'riscv64': 'RISCV',
}.get(config.host_arch, config.host_arch)
config.llvm_exe_ext = ''
config.llvm_use_sanitizer = ''

_shared = llvm_config_query('--shared-mode')[0] == 'shared'
_version = llvm_config_query('--version')[0]
_libllvm = os.path.join(llvm_config_query('--libdir')[0],
                        'libLLVM-%s.so' % _version.split('.')[0])
# LLVM_ENABLE_FFI: the interpreter's external calls go through libffi.
config.enable_ffi = _shared and os.path.exists(_libllvm) and any(
    lib.startswith('libffi') for lib in needed_libs(_libllvm))
# LLVM_ENABLE_THREADS: on in Debian's build (lli-14 takes -compile-threads=2);
# glibc >= 2.34 has no separate libpthread to detect it by.
config.enable_threads = True

# ---------------------------------------------------------------------------
# Suite set-up, as in llvm/test/lit.cfg.py.

config.name = 'LLVM'
lit.llvm.initialize(lit_config, config)   # native, system-linux, shell, ...
from lit.llvm import llvm_config           # noqa: E402  (set by initialize)

config.test_format = LliTests(not llvm_config.use_lit_shell)
config.suffixes = ['.ll', '.c', '.test', '.txt', '.s', '.mir', '.yaml']
config.excludes = ['Inputs', 'CMakeLists.txt', 'README.txt', 'LICENSE.txt']
if not lit.util.pythonize_bool(lit_config.params.get('include_remote', '0')):
    config.excludes.append('remote')   # MCJIT/remote: needs lli-child-target

config.test_exec_root = lit_config.params.get(
    'exec_root', os.path.join(os.path.dirname(config.test_source_root),
                              'Output-lit'))

llvm_config.with_environment('PATH', tools_dir, append_path=True)
llvm_config.with_system_environment(['HOME', 'TMP', 'TEMP'])
# Let a Python `lli` replacement find its packages and debug switches.
llvm_config.with_system_environment(
    ['PYTHONPATH'] + [v for v in os.environ if v.startswith('ORCJIT_')])

llvm_config.use_default_substitutions()   # FileCheck, not, count, %python
config.substitutions.append(('%exeext', config.llvm_exe_ext))
config.substitutions.append(('%shlibext', '.so'))

# FindTool('lli') returns lit_config.params['lli'] when given: that is how
# `-D lli=COMMAND` swaps the JIT under test for both spellings.
tools = [
    ToolSubst('%lli', FindTool('lli'), post='.'),
    'lli', 'lli-child-target', 'llc', 'opt', 'llvm-ar', 'llvm-as', 'llvm-dis',
    'llvm-dwarfdump', 'llvm-link', 'llvm-lipo', 'llvm-mc', 'llvm-nm',
    'llvm-objdump', 'llvm-readobj', 'llvm-readelf', 'llvm-jitlink',
    'llvm-rtdyld',
]
llvm_config.add_tool_substitutions(tools, tools_dir)

# ---------------------------------------------------------------------------
# Features, as llvm/test/lit.cfg.py computes them.

for target in config.targets:
    config.available_features.add(target.lower() + '-registered-target')

if any(config.llvm_host_triple.startswith(arch)
       for arch in ('x86_64', 'mips64', 'ppc64', 'aarch64')):
    config.available_features.add('llvm-64-bits')
config.available_features.add('host-byteorder-' + sys.byteorder
                              + '-endian')
config.available_features.add('can-execute')
config.available_features.add('object-emission')
config.available_features.add('default_triple')
config.available_features.add('debug_frame')
if _shared:
    config.available_features.add('llvm-dylib')
if config.enable_threads:
    config.available_features.add('thread_support')
if llvm_config_query('--assertion-mode')[0] == 'ON':
    config.available_features.add('asserts')

# Upstream: llvm-readobj itself links a shared C++ library.
if any(re.search(r'(libc\+\+|libstdc\+\+|msvcp).*\.(so|dylib|dll)', lib.lower())
       for lib in needed_libs(os.path.join(tools_dir, 'llvm-readobj'))):
    config.available_features.add('cxx-shared-library')

# fma3: upstream sets it only on Darwin (sysctl hw.optional.fma), so that
# fma3-jit.ll is UNSUPPORTED on every Linux host. We set it from the CPU flags
# on Linux too, so that the test runs where the CPU can run it.
try:
    with open('/proc/cpuinfo') as f:
        if re.search(r'^flags\s*:.*\bfma\b', f.read(), re.M):
            config.available_features.add('fma3')
except OSError:
    pass
