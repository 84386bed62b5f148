"""Mirrors modules/paths.py and paths_internal.py (v1.10.1): the folders. Tests point data_path
at a temporary folder with `set_root`."""
import os

data_path = script_path = os.getcwd()
models_path = os.path.join(data_path, "models")


def set_root(root):
    global data_path, script_path, models_path
    data_path = script_path = str(root)
    models_path = os.path.join(data_path, "models")
