"""models/safetensors_view.py: a .safetensors file read as views of its map gives what safetensors
itself reads, for every dtype a checkpoint holds, and nothing loaded aliases the file."""
import json
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from sd_trainplan.models.safetensors_view import SafetensorsView, on_device


def tensors():
    g = torch.Generator().manual_seed(0)
    return {"w32": torch.randn(3, 5, generator=g), "w16": torch.randn(7, generator=g).half(),
            "wbf": torch.randn(2, 3, 4, generator=g).bfloat16(), "w64": torch.randn(2, generator=g).double(),
            "ids": torch.arange(6, dtype=torch.int64).view(2, 3), "mask": torch.tensor([True, False, True]),
            "step": torch.tensor(7, dtype=torch.int32), "empty": torch.zeros(0, 4), "u8": torch.arange(5, dtype=torch.uint8)}


def test_every_tensor_reads_as_safetensors_reads_it(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file(tensors(), str(path), metadata={"format": "pt"})
    want, view = load_file(str(path)), SafetensorsView(path)
    assert sorted(view.keys()) == sorted(want)
    for name, t in want.items():
        got = on_device(view.view(name), "cpu")
        assert got.dtype == t.dtype and got.shape == t.shape and torch.equal(got, t), name


def test_what_is_loaded_does_not_alias_the_file(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file(tensors(), str(path))
    before = path.read_bytes()
    w = on_device(SafetensorsView(path).view("w32"), "cpu")
    w.add_(1)  # training changes a parameter in place
    assert path.read_bytes() == before
    assert torch.equal(on_device(SafetensorsView(path).view("w32"), "cpu"), load_file(str(path))["w32"])


def test_an_fp8_checkpoint_reads(tmp_path):
    path = tmp_path / "fp8.safetensors"
    w = torch.randn(4, 4).to(torch.float8_e4m3fn)
    save_file({"w": w}, str(path))
    assert torch.equal(on_device(SafetensorsView(path).view("w"), "cpu").float(), w.float())


def test_a_file_whose_tensors_are_not_aligned_still_reads(tmp_path):
    # a header whose length leaves the data at an odd offset (writers before safetensors aligned them)
    data = torch.arange(4, dtype=torch.float32)
    header = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode() + b" "
    assert (8 + len(header)) % 4
    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + data.numpy().tobytes())
    assert torch.equal(on_device(SafetensorsView(path).view("x"), "cpu"), data)


def test_an_unknown_dtype_names_the_file_and_tensor(tmp_path):
    header = json.dumps({"x": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}}).encode()
    path = tmp_path / "f4.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0")
    with pytest.raises(ValueError, match="f4.safetensors: tensor x has dtype F4"):
        SafetensorsView(path).view("x")
