"""Stands for the built-in Lora extension's networks.py (extensions-builtin/Lora, v1.10.1), which
the WebUI imports as the top-level module `networks`: the list of loaded networks, the weight
backups it keeps on each layer before merging a network in place, and its restore function.
`merge_for_test` does what network_apply_weights does to a layer for one network (back up the
weight on the CPU, add the delta in place, record the names)."""
import torch

from modules import devices

loaded_networks = []
refreshes = []


def store_weights_backup(weight):
    return None if weight is None else weight.to(devices.cpu, copy=True)


def restore_weights_backup(obj, field, weight):
    if weight is None:
        setattr(obj, field, None)
        return
    getattr(obj, field).copy_(weight)


def network_restore_weights_from_backup(self):
    weights_backup = getattr(self, "network_weights_backup", None)
    bias_backup = getattr(self, "network_bias_backup", None)
    if weights_backup is None and bias_backup is None:
        return
    if weights_backup is not None:
        restore_weights_backup(self, "weight", weights_backup)
    restore_weights_backup(self, "bias", bias_backup)


def list_available_networks():
    refreshes.append(True)


class NetworkForTest:
    def __init__(self, name):
        self.name, self.te_multiplier, self.unet_multiplier, self.dyn_dim = name, 1.0, 1.0, None


def merge_for_test(layer, net, delta):
    with torch.no_grad():
        if getattr(layer, "network_weights_backup", None) is None:
            layer.network_weights_backup = store_weights_backup(layer.weight)
            layer.network_bias_backup = store_weights_backup(layer.bias)
        layer.weight += delta.to(layer.weight.dtype)
    layer.network_current_names = ((net.name, net.te_multiplier, net.unet_multiplier, net.dyn_dim),)
    if net not in loaded_networks:
        loaded_networks.append(net)
