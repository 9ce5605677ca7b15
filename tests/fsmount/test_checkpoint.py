"""Checkpoint save/load on local files: bit-exact round trip, atomic replace, corruption, safety."""

from __future__ import annotations

import os
from collections import OrderedDict

import pytest

torch = pytest.importorskip("torch")

from fs3.checkpoint import load_state_dict, save_state_dict  # noqa: E402
from fs3.errors import ChecksumMismatchError, PackedFormatError  # noqa: E402


def _model_and_optimizer_state() -> dict:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(8, 64)).sum().backward()
    opt.step()
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "step": 7,
        "extras": {
            "bf16": torch.randn(33, 5).to(torch.bfloat16),
            "half": torch.randn(3).half(),
            "mask": torch.rand(17) > 0.5,
            "ints": torch.arange(-5, 1000, dtype=torch.int64),
            "scalar": torch.tensor(3.5),
            "empty": torch.empty(0, 4),
            "noncontig": torch.randn(6, 8).t(),
            "big": torch.randn(3 << 20),  # 12 MiB, split into several pieces
            "size": torch.Size([2, 3]),
            "dtype": torch.float16,
        },
    }


def _assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor)
        assert a.dtype == b.dtype and a.shape == b.shape
        if a.numel():  # compare raw bytes: bit-exact, NaN-safe, any dtype
            assert torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))
    elif isinstance(a, dict):
        assert type(a) is type(b) and list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b


@pytest.mark.parametrize("piece_bytes", [4096, 4 << 20])
def test_round_trip_is_bit_exact(tmp_path, piece_bytes):
    state = _model_and_optimizer_state()
    path = str(tmp_path / "ckpt.fs3")
    st = save_state_dict(state, path, piece_bytes=piece_bytes, max_workers=4)
    assert st.num_tensors > 10 and st.tensor_bytes > 12 << 20
    stats = []
    back = load_state_dict(path, piece_bytes=piece_bytes, stats=stats)
    _assert_same(state, back)
    assert stats[0].tensor_bytes == st.tensor_bytes
    assert isinstance(back["model"], OrderedDict)
    # the loaded state restores a fresh model exactly
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 10))
    model.load_state_dict(back["model"])
    assert not [p for p in os.listdir(tmp_path) if ".saving-" in p]


def test_save_replaces_atomically_and_failed_save_keeps_old(tmp_path):
    path = str(tmp_path / "ckpt.fs3")
    save_state_dict({"w": torch.ones(10)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_state_dict({"w": torch.zeros(10), "bad": Unpicklable()}, path)
    assert torch.equal(load_state_dict(path)["w"], torch.ones(10))
    save_state_dict({"w": torch.full((10,), 2.0)}, path)
    assert torch.equal(load_state_dict(path)["w"], torch.full((10,), 2.0))
    assert sorted(os.listdir(tmp_path)) == ["ckpt.fs3"]


def test_corrupt_tensor_data_is_detected(tmp_path):
    path = tmp_path / "ckpt.fs3"
    save_state_dict({"w": torch.arange(100_000, dtype=torch.float32)}, str(path))
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match="tensor 0"):
        load_state_dict(str(path))
    assert load_state_dict(str(path), verify=False)["w"].numel() == 100_000


@pytest.mark.parametrize("damage", ["magic", "header", "truncate"])
def test_damaged_file_gives_clear_error(tmp_path, damage):
    path = tmp_path / "ckpt.fs3"
    save_state_dict({"w": torch.randn(1000)}, str(path))
    data = bytearray(path.read_bytes())
    if damage == "magic":
        data[:8] = b"XXXXXXXX"
    elif damage == "header":
        data[20] ^= 1
    else:
        data = data[: len(data) - 1000]
    path.write_bytes(bytes(data))
    with pytest.raises(PackedFormatError):
        load_state_dict(str(path))


class Custom:
    def __init__(self, x):
        self.x = x


def test_weights_only_refuses_arbitrary_classes(tmp_path):
    path = str(tmp_path / "ckpt.fs3")
    save_state_dict({"obj": Custom(3), "w": torch.ones(2)}, path)
    with pytest.raises(Exception, match="weights_only"):
        load_state_dict(path)
    assert load_state_dict(path, weights_only=False)["obj"].x == 3


def test_rejects_sparse_tensor(tmp_path):
    with pytest.raises(TypeError, match="sparse"):
        save_state_dict({"s": torch.eye(3).to_sparse()}, str(tmp_path / "c"))
