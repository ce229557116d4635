"""Code that runs inside the user's kernel, shipped there as source: standard library only.

Each module here is read as text and installed in the kernel as a private module (kernel.py); it must not
import taskweaver_lab or anything outside the standard library (tests/test_layout.py keeps that rule).
"""
