"""A running VM: ``AsyncVm`` (every runtime call, raced against halts and VM loss, on the runtime
loop) and its blocking face ``Vm``, with the features built on the core race (console, agent,
save/restore, debugging, time travel, screen text, watchdogs, halt diagnosis) and ``launch``.

Knows backends only through their protocol (petri_nb.backends.base) and the registry."""

from .facade import AsyncVm, Vm, launch, launch_async, live_vms, replay, replay_async

__all__ = ["AsyncVm", "Vm", "launch", "launch_async", "live_vms", "replay", "replay_async"]
