"""The QEMU backend: process, QMP session, halt mapping and screen, each in its own module."""

from .runtime import QemuRuntime

__all__ = ["QemuRuntime"]
