"""Packed dataset format: round trips, batched coalesced reads, corruption detection, torch Dataset."""

from __future__ import annotations

import os
import random

import pytest

from fs3.dataset import PackedDataset, PackedReader, PackedWriter, pack_directory
from fs3.errors import ChecksumMismatchError, PackedFormatError
from fs3.pio import LocalFile


def _samples(n: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    # sizes include empty samples and ones larger than the writer's buffer
    sizes = [rng.choice([0, 1, 7, 100, 4096, 5000, 70_000]) for _ in range(n)]
    return [rng.randbytes(s) for s in sizes]


def _write(path, samples, **kw) -> None:
    with LocalFile(path, "w") as f, PackedWriter(f, len(samples), **kw) as w:
        for s in samples:
            w.write(s)


@pytest.mark.parametrize("n", [0, 1, 300])
@pytest.mark.parametrize("buffer_bytes", [1, 64 << 10])
def test_round_trip_single_and_batched(tmp_path, n, buffer_bytes):
    samples = _samples(n)
    path = tmp_path / "d.pack"
    _write(path, samples, buffer_bytes=buffer_bytes)
    with PackedReader(LocalFile(path), coalesce_gap_bytes=1024, max_read_bytes=32 << 10) as r:
        assert len(r) == n
        for i in range(n):
            assert r.read(i) == samples[i]
            assert r.sample_size(i) == len(samples[i])
        idx = list(range(n)) * 2
        random.Random(1).shuffle(idx)
        assert r.read_batch(idx) == [samples[i] for i in idx]
        assert r.read_batch([]) == []


def test_plan_coalesces_neighbours_and_caps_read_size(tmp_path):
    samples = [bytes([i]) * 1000 for i in range(100)]
    path = tmp_path / "d.pack"
    _write(path, samples)
    r = PackedReader(LocalFile(path), coalesce_gap_bytes=0, max_read_bytes=10_000)
    plan = r.plan(range(100))
    assert [len(p.samples) for p in plan] == [10] * 10
    assert all(p.end - p.start <= 10_000 for p in plan)
    # far-apart samples are not merged when the gap exceeds coalesce_gap_bytes
    plan = r.plan([0, 50, 99])
    assert len(plan) == 3
    r.close()


def test_negative_and_out_of_range_index(tmp_path):
    samples = _samples(5)
    path = tmp_path / "d.pack"
    _write(path, samples)
    with PackedReader.open(str(path)) as r:
        assert r.read(-1) == samples[-1]
        with pytest.raises(IndexError, match="sample index 5 out of range for 5"):
            r.read(5)
        with pytest.raises(IndexError):
            r.read_batch([0, 99])


def test_corrupt_sample_is_detected(tmp_path):
    samples = [b"a" * 1000, b"b" * 1000, b"c" * 1000]
    path = tmp_path / "d.pack"
    _write(path, samples)
    r = PackedReader(LocalFile(path))
    off = int(r._offsets[1]) + 10
    r.close()
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(b"X")
    with PackedReader(LocalFile(path)) as r:
        assert r.read(0) == samples[0]
        with pytest.raises(ChecksumMismatchError, match="sample 1"):
            r.read(1)
        with pytest.raises(ChecksumMismatchError, match="sample 1"):
            r.read_batch([2, 1, 0])
    with PackedReader(LocalFile(path), verify=False) as r:
        assert r.read(1) != samples[1]


@pytest.mark.parametrize("where", ["magic", "header", "index", "truncated"])
def test_corrupt_header_or_index_rejected_at_open(tmp_path, where):
    path = tmp_path / "d.pack"
    _write(path, _samples(10))
    data = bytearray(path.read_bytes())
    if where == "magic":
        data[0:8] = b"NOTAPACK"
    elif where == "header":
        data[16] ^= 0xFF  # num_samples
    elif where == "index":
        data[64 + 3] ^= 0x01
    else:
        data = data[:60]
    path.write_bytes(bytes(data))
    with pytest.raises(PackedFormatError):
        PackedReader(LocalFile(path))


def test_writer_count_mismatch_leaves_no_valid_file(tmp_path):
    path = tmp_path / "d.pack"
    with LocalFile(path, "w") as f:
        w = PackedWriter(f, 3)
        w.write(b"x")
        with pytest.raises(PackedFormatError, match="sized for 3 samples but got 1"):
            w.close()
    with pytest.raises(PackedFormatError, match="not a packed dataset|file ended"):
        PackedReader(LocalFile(path))
    with LocalFile(path, "w") as f, PackedWriter(f, 1) as w:
        w.write(b"x")
        with pytest.raises(PackedFormatError, match="does not fit"):
            w.write(b"y")
        w.abort()


def test_pack_directory_keeps_names_in_metadata(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    files = {"a.bin": b"alpha", "sub/b.bin": b"", "sub/c.bin": os.urandom(100_000)}
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    dst = str(tmp_path / "out.pack")
    total = pack_directory(str(src), dst)
    assert total == sum(len(v) for v in files.values())
    assert not [p for p in os.listdir(tmp_path) if ".packing-" in p]
    with PackedReader.open(dst) as r:
        names = r.metadata["names"]
        assert names == sorted(files)
        assert [r.read(i) for i in range(len(r))] == [files[n] for n in names]


def test_pack_directory_rejects_empty_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PackedFormatError, match="no regular files"):
        pack_directory(str(tmp_path / "empty"), str(tmp_path / "x.pack"))


def test_torch_dataloader_with_workers_reads_every_sample(tmp_path):
    torch = pytest.importorskip("torch")
    samples = [i.to_bytes(4, "little") * (i % 7 + 1) for i in range(200)]
    path = tmp_path / "d.pack"
    _write(path, samples)

    ds = PackedDataset(str(path), transform=lambda b: int.from_bytes(b[:4], "little"))
    assert len(ds) == 200 and ds[17] == 17
    loader = torch.utils.data.DataLoader(
        ds, batch_size=16, shuffle=True, num_workers=2, collate_fn=list, multiprocessing_context="fork"
    )
    seen = sorted(x for batch in loader for x in batch)
    assert seen == list(range(200))
