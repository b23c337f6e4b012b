"""A teacher you pay for once: sparse teacher targets for every response token of the training set.

One pass of the frozen teacher over the training split stores, per response token (in dataset
order, positions as :func:`~distill.data.sequences.at_response_positions` orders them):

    top_k    the k largest teacher logits and their ids (raw logits: any temperature applies later); with
             ``tail``, also the teacher's probability mass outside those k ids at the cache's temperature
             (one float per token: the loss then compares k + 1 bins, see SparseTeacher)
    sampled  k draws from the teacher's distribution at the draw temperature tau (default 2): the
             distinct ids drawn, their counts and their logits (Sparse Logit Sampling, Anshumann et
             al. 2025: at T = tau the counts / k are an unbiased estimate of p_T, so the forward-KL
             gradient is unbiased; other temperatures reweight the draws, see SparseTeacher)

How the missing tail is handled is :class:`~distill.losses.sparse.SparseTeacher`'s: the target
has no mass off the cached ids, which only forward KL can use (reverse KL, JSD and TVD need the
teacher's probability of every token, so a cache refuses them).

Files (``<cache_dir>/teacher-logits/<key>/``): ``ids.npy`` (T, k) int32, ``logits.npy`` (T, k)
float32, ``counts.npy`` (T, k) uint16 (sampled), ``tail.npy`` (T,) float32 (top_k with tail),
``offsets.npy`` (examples + 1) int64, and ``meta.json``, written last, with every file's size in bytes
(``files``): a cache whose files are missing, cut short or grown, or whose ``meta.json`` is missing or
unreadable, is damaged (:func:`damage`) and is rebuilt under the lock with one log line, never read. Read
memory-mapped. The key hashes the teacher's identity (:func:`~distill.teacher.identity.teacher_identity`),
the tokenized training split and the settings.
It is an entry of the project's one disk cache (:mod:`distill.core.disk_cache`): built once under a
lock, into a temp directory renamed when complete.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from distill.core.disk_cache import get_or_build
from distill.core.errors import is_int, is_number, require
from distill.core.fingerprints import dataset_fingerprint, sha256_json
from distill.data.sampler import in_dataset_order
from distill.data.sequences import response_mask
from distill.inference.forward import frozen_forward
from distill.losses import DEFAULT_CHUNK_SIZE, Hidden, SparseTeacher, chunk_rows
from distill.teacher.identity import teacher_identity

MODES = ("top_k", "sampled")
DEFAULT_SIZE = 16
DEFAULT_DRAW_TEMPERATURE = 2.0


@dataclass(frozen=True)
class CacheSettings:
    """``mode`` (top_k or sampled), ``size`` (k, or draws per token), the sampling ``seed``, the
    ``temperature`` the sampled cache draws at and a top-k cache's ``tail`` is stored at, and ``tail``."""

    mode: str
    size: int = DEFAULT_SIZE
    seed: int = 0
    temperature: float = DEFAULT_DRAW_TEMPERATURE
    tail: bool = False

    def __post_init__(self) -> None:
        require(self.mode in MODES, "distiller.teacher_cache", self.mode, f"must be null, {' or '.join(MODES)}")
        check_size_and_temperature(self.size, self.temperature)
        require(isinstance(self.tail, bool) and (self.mode == "top_k" or not self.tail), "distiller.teacher_cache_tail",
                self.tail, "must be true or false, and true only with teacher_cache=top_k (a sampled cache estimates "
                "the whole distribution already)")  # fmt: skip

    def key_fields(self) -> dict[str, Any]:
        if self.mode == "sampled":
            return {k: v for k, v in asdict(self).items() if k != "tail"}
        tail = {"tail": True, "temperature": self.temperature} if self.tail else {}
        return {"mode": self.mode, "size": self.size, **tail}


def check_size_and_temperature(size: object, temperature: object) -> None:
    """``teacher_cache_size`` and ``teacher_cache_temperature``, checked whether or not a cache is on."""
    require(is_int(size) and 0 < size <= 65535, "distiller.teacher_cache_size", size,  # type: ignore[operator]
            "must be an integer in [1, 65535]")  # fmt: skip
    ok = is_number(temperature) and temperature > 0  # type: ignore[operator]
    require(ok, "distiller.teacher_cache_temperature", temperature, "must be > 0")


def cache_key(identity: str, train_split: Any, settings: CacheSettings) -> str:
    """The key of a cache: the teacher's identity, the tokenized training split (a ``datasets.Dataset``)
    and the settings."""
    return sha256_json({"teacher": identity, "data": dataset_fingerprint(train_split), **settings.key_fields()})[:20]


@torch.no_grad()
def sparse_targets(logits: Tensor, settings: CacheSettings, generator: torch.Generator) -> dict[str, Tensor]:
    """(N, V) teacher logits -> ``ids``, ``logits`` (N, k) and, for ``sampled``, ``counts`` (N, k); for ``top_k``
    with ``tail``, ``tail`` (N,), the mass of softmax(logits / temperature) outside the k ids."""
    logits = logits.float()
    if settings.mode == "top_k":
        values, ids = logits.topk(min(settings.size, logits.shape[-1]), dim=-1)
        if not settings.tail:
            return {"ids": ids, "logits": values}
        tail = torch.softmax(logits / settings.temperature, -1).scatter_(1, ids, 0.0).sum(-1)
        return {"ids": ids, "logits": values, "tail": tail}
    p_tau = torch.softmax(logits / settings.temperature, -1)
    draws = torch.multinomial(p_tau, settings.size, replacement=True, generator=generator)
    tally = torch.zeros_like(logits).scatter_add_(1, draws, torch.ones_like(draws, dtype=logits.dtype))
    # the distinct ids drawn first (at most k of them, or V); the rest have count 0
    counts, ids = tally.topk(min(settings.size, logits.shape[-1]), dim=-1)
    return {"ids": ids, "logits": logits.gather(1, ids), "counts": counts}


def write_meta(path: Path, meta: dict[str, Any]) -> None:
    """``meta.json`` with ``files``, the size of every ``.npy`` file in ``path``: written last, it marks the cache
    complete and lets :func:`damage` find a file cut short."""
    files = {f.name: f.stat().st_size for f in sorted(path.glob("*.npy"))}
    (path / "meta.json").write_text(json.dumps({**meta, "files": files}, indent=2))


def damage(path: Path) -> str | None:
    """What is wrong with the cache directory ``path`` (a missing, unreadable or incomplete ``meta.json``, a
    missing file, a file of another size than recorded), or None when it is whole."""
    try:
        files = json.loads((path / "meta.json").read_text())["files"]
    except FileNotFoundError:
        return "no meta.json"
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "meta.json is unreadable"
    except KeyError:
        return "meta.json has no file sizes (written by distill 0.3 or older)"
    for name, size in files.items():
        found = (path / name).stat().st_size if (path / name).exists() else None
        if found != size:
            return f"{name}: {'missing' if found is None else f'{found} bytes'}, {size} expected"
    return None


class TeacherLogitCache:
    """A built cache, memory-mapped: :meth:`targets` gives the rows of a batch's examples."""

    def __init__(self, path: Path) -> None:
        problem = damage(path)
        if problem is not None:
            raise ValueError(f"the teacher cache {path} is damaged ({problem}): delete it and rerun to rebuild it")
        self.path = path
        self.meta = json.loads((path / "meta.json").read_text())
        self.ids = np.load(path / "ids.npy", mmap_mode="r")
        self.logits = np.load(path / "logits.npy", mmap_mode="r")
        self.counts = np.load(path / "counts.npy", mmap_mode="r") if (path / "counts.npy").exists() else None
        self.tail = np.load(path / "tail.npy", mmap_mode="r") if (path / "tail.npy").exists() else None
        self.offsets = np.load(path / "offsets.npy")

    @property
    def settings(self) -> CacheSettings:
        """The settings it was built with (caches built before ``temperature`` existed drew at T = 1)."""
        m = self.meta
        return CacheSettings(m["mode"], m["size"], m.get("seed", 0), m.get("temperature", 1.0), m.get("tail", False))

    @property
    def bytes_per_token(self) -> int:
        arrays = [a for a in (self.ids, self.logits, self.counts, self.tail) if a is not None]
        return sum(a.dtype.itemsize * (a.shape[1] if a.ndim == 2 else 1) for a in arrays)

    def targets(self, indices: Iterable[int], device: torch.device | str = "cpu") -> SparseTeacher:
        """The sparse targets of these training examples' response tokens, concatenated in order."""
        rows = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in indices])

        def take(array: np.ndarray, dtype: torch.dtype) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(array[rows])).to(device=device, dtype=dtype)

        counts = take(self.counts, torch.float32) if self.counts is not None else None
        tail = take(self.tail, torch.float32) if self.tail is not None else None
        tau = self.settings.temperature
        return SparseTeacher(take(self.ids, torch.long), take(self.logits, torch.float32), counts, tau, tail)


# batch -> the teacher's (C, V) logits at its response positions, in order, one chunk of rows at a time
TargetsFn = Callable[[dict[str, Any]], Iterable[Tensor]]


def teacher_logit_chunks(
    teacher: nn.Module, batch: dict[str, Any], width: int, chunk_size: int | str = DEFAULT_CHUNK_SIZE
) -> Iterator[Tensor]:
    """The teacher's logits over its first ``width`` columns at the batch's response positions,
    ``chunk_size`` rows at a time (:func:`~distill.losses.chunk_rows`; its frozen forward without the
    full-vocabulary head)."""
    out = frozen_forward(teacher, batch, "causal_lm", chunked=True).outputs
    if not isinstance(out, Hidden):
        yield out[:, :width]
        return
    rows = chunk_rows(chunk_size, width)
    with torch.no_grad():
        for start in range(0, out.states.shape[0], rows):
            yield out.head.logits(out.states[start : start + rows], width)


def build(path: Path, batches: Iterable[dict[str, Any]], teacher_logits: TargetsFn, settings: CacheSettings,
          n_examples: int, meta: dict[str, Any]) -> None:  # fmt: skip
    """One teacher pass over ``batches`` (the training split in order) into the new directory ``path``."""
    path.mkdir(parents=True)
    generator = torch.Generator().manual_seed(settings.seed)
    parts: dict[str, list[np.ndarray]] = {}
    lengths: list[int] = []
    with tqdm(total=n_examples, desc="teacher cache", unit="example", dynamic_ncols=True) as bar:
        for batch in batches:
            for logits in teacher_logits(batch):
                for name, values in sparse_targets(logits, settings, generator).items():
                    parts.setdefault(name, []).append(values.cpu().numpy())
            lengths += response_mask(batch["labels"]).sum(1).tolist()
            bar.update(len(batch["labels"]))
    dtypes = {"ids": np.int32, "logits": np.float32, "counts": np.uint16, "tail": np.float32}
    for name, chunks in parts.items():
        np.save(path / f"{name}.npy", np.concatenate(chunks).astype(dtypes[name]))
    np.save(path / "offsets.npy", np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
    write_meta(path, {**meta, **asdict(settings), "tokens": int(sum(lengths))})


def open_or_build(
    root: Path, key: str, build_fn: Callable[[Path], None], log: logging.Logger
) -> tuple[TeacherLogitCache, bool]:
    """The cache ``root/key``, built by ``build_fn(directory)`` first if missing or damaged (under its lock;
    a damaged one is replaced, with one log line). Returns the cache and whether this call built it."""
    path = root / key

    def ready(directory: Path) -> bool:
        problem = damage(directory) if directory.exists() else "missing"
        if problem not in (None, "missing"):
            log.warning("teacher cache %s is damaged (%s): rebuilding it", directory, problem)
        return problem is None

    built = get_or_build(path, build_fn, ready=ready)
    cache = TeacherLogitCache(path)
    what = "built" if built else "reused"
    log.info(
        "teacher cache %s: %s (%d tokens, %d bytes per token)", what, path, cache.meta["tokens"], cache.bytes_per_token
    )
    return cache, built


def cache_for_loader(
    teacher: nn.Module, loader: Any, settings: CacheSettings, root: Path, width: int, log: logging.Logger
) -> TeacherLogitCache:
    """The cache of ``teacher`` over ``loader``'s dataset (read in order; its batches need ``index``)."""
    ordered = in_dataset_order(loader)
    key = cache_key(teacher_identity(teacher), ordered.dataset, settings)

    def build_fn(path: Path) -> None:
        build(path, ordered, lambda b: teacher_logit_chunks(teacher, b, width), settings, len(ordered.dataset),
              {"width": width})  # fmt: skip

    return open_or_build(root, key, build_fn, log)[0]
