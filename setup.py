"""Builds larval's optional compiled ESP helper (`larval.esp._gcm_batch`) with cffi.

Everything else is in pyproject.toml. The helper needs gcc and OpenSSL's headers (Debian
`gcc libc6-dev libssl-dev`); where it cannot be built, larval installs without it and
runs its Python ESP path, and `larval status` says why.
"""

from __future__ import annotations

import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """A build_ext whose failure leaves the package without the helper, not uninstalled."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # any failure: install without the helper
            _skipped(e)

    def build_extension(self, ext: object) -> None:
        try:
            super().build_extension(ext)  # type: ignore[arg-type]
        except Exception as e:
            _skipped(e)


def _skipped(e: BaseException) -> None:
    print(
        f"larval: compiled ESP helper not built ({type(e).__name__}: {e}); "
        "the Python ESP path will be used",
        file=sys.stderr,
    )


setup(
    cffi_modules=["src/larval/esp/_helper_build.py:ffibuilder"],
    cmdclass={"build_ext": OptionalBuildExt},
)
