"""Interoperability of xdistill's safetensors reader/writer with the Python
`safetensors` package: files it writes read back byte for byte, and files we write
(single and sharded with an index) load in it with the same values and metadata."""
import json
import os
import pathlib
import subprocess

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file


def tool():
    path = os.environ.get("XD_ST_TOOL")
    if not path and os.environ.get("XDISTILL_BIN"):
        path = str(pathlib.Path(os.environ["XDISTILL_BIN"]).parent / "tests" / "io" / "xd_st_tool")
    assert path and os.path.exists(path), "xd_st_tool not built (set XD_ST_TOOL)"
    return path


def run_tool(*args):
    return subprocess.run([tool(), *map(str, args)], capture_output=True, text=True, timeout=120)


def sample_tensors():
    g = torch.Generator().manual_seed(0)
    return {
        "model.embed_tokens.weight": torch.randn(11, 6, generator=g).to(torch.bfloat16),
        "model.layers.0.mlp.up_proj.weight": torch.randn(5, 3, generator=g),
        "half": torch.randn(3, 3, generator=g).to(torch.float16),
        "double": torch.randn(2, generator=g, dtype=torch.float64),
        "ids": torch.arange(-3, 4, dtype=torch.int64),
        "i32": torch.arange(5, dtype=torch.int32),
        "i16": torch.arange(3, dtype=torch.int16),
        "i8": torch.tensor([-1, 2], dtype=torch.int8),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
    }


DTYPE_NAMES = {torch.bfloat16: "BF16", torch.float32: "F32", torch.float16: "F16", torch.float64: "F64",
               torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
               torch.uint8: "U8", torch.bool: "BOOL"}


def raw_bytes(t):
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def dump(path):
    r = run_tool("dump", path)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_python_written_file_reads_back_exactly(tmp_path):
    tensors = sample_tensors()
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt", "origin": "python"})
    out = dump(tmp_path)
    assert out["metadata"] == {"format": "pt", "origin": "python"}
    assert sorted(out["tensors"]) == sorted(tensors)
    for name, t in tensors.items():
        got = out["tensors"][name]
        assert got["dtype"] == DTYPE_NAMES[t.dtype], name
        assert got["shape"] == list(t.shape), name
        assert bytes.fromhex(got["hex"]) == raw_bytes(t), name


def test_python_written_sharded_checkpoint_reads_through_index(tmp_path):
    tensors = sample_tensors()
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[:5], "model-00002-of-00002.safetensors": names[5:]}
    weight_map = {}
    for shard, members in shards.items():
        save_file({n: tensors[n] for n in members}, tmp_path / shard, metadata={"format": "pt"})
        weight_map.update({n: shard for n in members})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    out = dump(tmp_path)
    for name, t in tensors.items():
        assert bytes.fromhex(out["tensors"][name]["hex"]) == raw_bytes(t), name


@pytest.mark.parametrize("mode", ["copy", "copy-planned"])
@pytest.mark.parametrize("shard_bytes", [1 << 30, 100])
def test_files_we_write_load_in_python(tmp_path, shard_bytes, mode):
    tensors = sample_tensors()
    save_file(tensors, tmp_path / "src.safetensors", metadata={"format": "pt", "k": "v"})
    dst = tmp_path / "out"
    r = run_tool(mode, tmp_path / "src.safetensors", dst, shard_bytes)
    assert r.returncode == 0, r.stderr
    index = dst / "model.safetensors.index.json"
    if shard_bytes > 1000:
        files = [dst / "model.safetensors"]
        assert not index.exists()
    else:
        weight_map = json.loads(index.read_text())["weight_map"]
        assert sorted(weight_map) == sorted(tensors)
        files = sorted(dst / f for f in set(weight_map.values()))
        assert len(files) > 1
    loaded = {}
    for f in files:
        part = load_file(f)
        assert not set(part) & set(loaded), "a tensor stored twice"
        loaded.update(part)
        with safe_open(f, "pt") as h:
            assert h.metadata() == {"format": "pt", "k": "v"}
        if shard_bytes <= 1000:
            assert all(weight_map[n] == f.name for n in part)
    assert sorted(loaded) == sorted(tensors)
    for name, t in tensors.items():
        assert loaded[name].dtype == t.dtype and torch.equal(loaded[name], t), name


def test_corrupt_python_file_gives_an_error_not_a_crash(tmp_path):
    save_file(sample_tensors(), tmp_path / "model.safetensors")
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) - 10])
    r = run_tool("dump", tmp_path)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "model.safetensors" in r.stderr and "beyond" in r.stderr, r.stderr
