"""Seeded mutation fuzzing of the file readers: only HistobridgeError subclasses may escape.

Valid small inputs (generator snapshots in two pickle protocols, our safetensors + JSON pair, and
the real ``.qpdata`` fixtures) are mutated with bit flips, truncation, insertions, deletions,
duplicated spans and overwritten length-sized integers. Every mutant is read in one child process
with a per-case alarm and a 4 GiB address-space cap, so a crash, hang or runaway allocation is a
reported failure instead of a dead test run.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from histobridge.models.checkpoints import save_generator
from histobridge.models.stylegan2 import Generator, GeneratorConfig

sys.path.insert(0, os.path.dirname(__file__))
from _gan_pickles import write_snapshot

REPO = Path(__file__).resolve().parents[1]
TINY = GeneratorConfig(
    z_dim=8, c_dim=2, w_dim=8, img_resolution=8, mapping_layers=2, channel_base=32, channel_max=4,
    conv_clamp=256,
)

_WORKER = r"""
import json, resource, signal, sys, traceback
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from histobridge.errors import HistobridgeError

kind = sys.argv[1]
if kind == "checkpoint":
    from histobridge.models.checkpoints import load_generator as read
else:
    from histobridge.qupath.qpdata import read_qpdata as read

class Hang(Exception):
    pass

def alarm(*_):
    raise Hang("no answer within 20 s")

signal.signal(signal.SIGALRM, alarm)
for path in sys.argv[2:]:
    print(json.dumps([path, "start", ""]), flush=True)
    signal.alarm(20)
    try:
        read(path)
        outcome = ("read", "")
    except HistobridgeError as err:
        outcome = ("refused", type(err).__name__)
    except BaseException as err:
        outcome = ("escaped", "".join(traceback.format_exception(err))[-1500:])
    signal.alarm(0)
    print(json.dumps([path, *outcome]), flush=True)
"""


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random structural or bit-level change (never returns the input unchanged)."""
    buf = bytearray(data)
    n = len(buf)
    op = rng.choice(["flip", "flip", "truncate", "insert", "delete", "duplicate", "bigint"])
    if op == "flip" or n < 2:
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(max(n, 1))
            if n:
                buf[i] ^= 1 << rng.randrange(8)
            else:
                buf.append(rng.randrange(256))
    elif op == "truncate":
        del buf[rng.randrange(n):]
    elif op == "insert":
        i = rng.randrange(n + 1)
        buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif op == "delete":
        i = rng.randrange(n)
        del buf[i : i + rng.randint(1, 64)]
    elif op == "duplicate":
        i = rng.randrange(n)
        span = buf[i : i + rng.randint(1, 256)]
        j = rng.randrange(n + 1)
        buf[j:j] = span
    else:  # a size-like integer where a length field might be
        i = rng.randrange(max(n - 8, 1))
        width = rng.choice([1, 2, 4, 8])
        value = rng.choice([0, 1, 2**31 - 1, 2**32 - 1, 2**63 - 1, rng.randrange(2 ** (8 * width))])
        buf[i : i + width] = (value % 2 ** (8 * width)).to_bytes(width, rng.choice(["little", "big"]))
    if bytes(buf) == data:
        buf.append(0)
    return bytes(buf)


def _run(kind: str, paths: list[Path], timeout: float) -> list[str]:
    """Read every path in one child; returns one description per case that did not end cleanly."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _WORKER, kind, *map(str, paths)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )
    done: dict[str, tuple[str, str]] = {}
    last = None
    for line in proc.stdout.splitlines():
        path, outcome, detail = json.loads(line)
        if outcome == "start":
            last = path
        else:
            done[path] = (outcome, detail)
    problems = [f"{p}: {detail}" for p, (outcome, detail) in done.items() if outcome == "escaped"]
    if proc.returncode != 0:
        problems.append(f"reader process died (rc {proc.returncode}) on {last}: {proc.stderr[-1500:]}")
    return problems


def _mutants(seeds: dict[str, bytes], count: int, rng: random.Random, out: Path,
             place: Callable[[Path, str, bytes], Path]) -> list[Path]:
    paths = []
    names = sorted(seeds)
    for i in range(count):
        name = names[i % len(names)]
        data = seeds[name]
        for _ in range(rng.choice([1, 1, 2, 3])):
            data = mutate(data, rng)
        paths.append(place(out / f"case{i:04d}", name, data))
    return paths


@pytest.mark.slow
def test_fuzz_checkpoint_loader(tmp_path):
    torch.manual_seed(0)
    G = Generator(TINY).eval()
    src = tmp_path / "src"
    seeds = {
        "p4.pkl": write_snapshot(G, src / "p4" / "g.pkl", training_set_kwargs={"resolution": 8}).read_bytes(),
        "p2.pkl": write_snapshot(G, src / "p2" / "g.pkl", layout="sgsf", protocol=2).read_bytes(),
    }
    weights = save_generator(G, src / "st" / "g.safetensors")
    seeds["g.safetensors"] = weights.read_bytes()
    seeds["g.json"] = weights.with_suffix(".json").read_bytes()
    seeds["header_only.safetensors"] = seeds["g.safetensors"]

    def place(folder: Path, name: str, data: bytes) -> Path:
        folder.mkdir(parents=True)
        if name == "g.json":  # mutate the sidecar, keep the weights intact
            (folder / "g.json").write_bytes(data)
            (folder / "g.safetensors").write_bytes(seeds["g.safetensors"])
            return folder / "g.safetensors"
        if name == "g.safetensors":
            (folder / "g.json").write_bytes(seeds["g.json"])
        target = folder / ("g.safetensors" if name.endswith(".safetensors") else "g.pkl")
        target.write_bytes(data)
        return target

    rng = random.Random(20240611)
    paths = _mutants(seeds, 1500, rng, tmp_path, place)
    problems = _run("checkpoint", paths, timeout=900)
    assert not problems, "\n".join(problems[:10])


@pytest.mark.slow
def test_fuzz_qpdata_reader(tmp_path, shared_dir):
    files = sorted((shared_dir / "fixtures" / "qupath").rglob("*.qpdata"))
    if not files:
        pytest.skip("no .qpdata fixtures under shared/fixtures/qupath")
    seeds = {str(f.relative_to(shared_dir)): f.read_bytes() for f in files if f.stat().st_size < 64_000}
    assert seeds

    def place(folder: Path, name: str, data: bytes) -> Path:
        folder.mkdir(parents=True)
        target = folder / "data.qpdata"
        target.write_bytes(data)
        return target

    rng = random.Random(7)
    paths = _mutants(seeds, 300, rng, tmp_path, place)
    problems = _run("qpdata", paths, timeout=900)
    # Known, owned by the .qpdata reader: a rectangle ROI whose bounds decode to NaN reaches
    # shapely.box, which raises GEOSException ("Points of LinearRing do not form a closed
    # linestring") instead of the reader's CorruptROI. Anything else fails this test.
    known = [p for p in problems if "qpdata/rois.py" in p and "do not form a closed linestring" in p]
    unknown = [p for p in problems if p not in known]
    assert not unknown, "\n".join(unknown[:10])
    if known:
        pytest.xfail(f"{len(known)} mutant(s) with NaN rectangle bounds escape as GEOSException (rois.py)")
