"""A first look at orcjit: JIT-compile LLVM IR, call it, call back into Python, remove it."""

import orcjit

SOURCE = r"""
declare i32 @printf(ptr, ...)
declare i64 @py_square(i64)

@fmt = private constant [24 x i8] c"fib(%d) = %ld (from C)\0A\00"

define i64 @fib(i32 %n) {
entry:
  %small = icmp slt i32 %n, 2
  br i1 %small, label %done, label %recurse
recurse:
  %n1 = sub i32 %n, 1
  %n2 = sub i32 %n, 2
  %a = call i64 @fib(i32 %n1)
  %b = call i64 @fib(i32 %n2)
  %s = add i64 %a, %b
  ret i64 %s
done:
  %r = sext i32 %n to i64
  ret i64 %r
}

define i64 @report(i32 %n) {
  %v = call i64 @fib(i32 %n)
  %p = call i32 (ptr, ...) @printf(ptr @fmt, i32 %n, i64 %v)
  %sq = call i64 @py_square(i64 %v)
  ret i64 %sq
}
"""


def main() -> None:
    with orcjit.JIT(opt_level=2) as jit:
        # JIT'd code may call Python: give the callable a C signature.
        jit.define("py_square", lambda x: x * x, "int64_t(int64_t)")
        handle = jit.add_ir(SOURCE)

        fib = jit.lookup("fib", "int64_t(int)")
        print("fib(30) =", fib(30))
        print("report(20) squared in Python =", jit.lookup("report", "int64_t(int)")(20))

        stats = jit.stats()
        print(f"compiled {stats['functions_compiled']} functions: "
              f"optimise {stats['optimize_seconds'] * 1e3:.2f} ms, "
              f"codegen {stats['codegen_seconds'] * 1e3:.2f} ms, "
              f"link {stats['link_seconds'] * 1e3:.2f} ms")

        jit.remove(handle)
        print("after removal, address of fib =", jit.address("fib"))


if __name__ == "__main__":
    main()
