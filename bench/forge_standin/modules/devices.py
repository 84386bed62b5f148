"""Forge's `modules.devices.torch_gc` (modules/devices.py, line 38): Forge's memory manager empties
its cache. host/hooks.py calls it when a run ends."""


def torch_gc():
    from backend import memory_management
    memory_management.soft_empty_cache()
