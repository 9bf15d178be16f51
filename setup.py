"""Build the Cython extensions of flowstate.native.

Everything else about the package lives in pyproject.toml; this file only
lists the compiled modules, because setuptools cannot declare Cython
extensions in pyproject.toml alone.
"""
import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "flowstate.native.storage",
        ["native/storage.pyx"],
        language="c++",
        include_dirs=["native", numpy.get_include()],
        extra_compile_args=["-O2", "-std=c++17", "-Wno-unused-function"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
    Extension(
        "flowstate.native.logwriter",
        ["native/logwriter.pyx"],
        language="c++",
        include_dirs=["native"],
        extra_compile_args=["-O2", "-std=c++17", "-Wno-unused-function"],
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": True,
        },
    ),
)
