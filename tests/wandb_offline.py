"""Read a W&B offline run file (``run-<id>.wandb``) without a server, for assertions in tests.

The file is a 7-byte header (":W&B", magic, version) followed by LevelDB-log-style records in
32 KiB blocks: crc32 (4 bytes), length (2, little-endian), type (1: full, 2: first, 3: middle,
4: last), then the payload, a serialized ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

BLOCK, HEADER, RECORD_HEADER = 32768, 7, 7


def records(path: Path) -> list[Any]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    out, pos, pending = [], HEADER, b""
    while pos + RECORD_HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < RECORD_HEADER:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + RECORD_HEADER])
        payload = data[pos + RECORD_HEADER : pos + RECORD_HEADER + length]
        pos += RECORD_HEADER + length
        if kind == 0 and length == 0:
            continue
        pending = payload if kind in (1, 2) else pending + payload
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def read_run(run_dir: Path) -> dict[str, Any]:
    """``{"id", "group", "job_type", "name", "config", "summary", "exit_code"}`` of an offline run dir."""
    files = list(Path(run_dir).glob("run-*.wandb"))
    assert len(files) == 1, f"expected one .wandb file in {run_dir}, found {files}"
    run: dict[str, Any] = {"config": {}, "summary": {}, "exit_code": None}
    for r in records(files[0]):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run.update(id=r.run.run_id, group=r.run.run_group, job_type=r.run.job_type, name=r.run.display_name,
                       tags=list(r.run.tags))  # fmt: skip
            run["config"].update({i.key: json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "config":
            run["config"].update({i.key: json.loads(i.value_json) for i in r.config.update})
        elif kind == "summary":
            # nested keys (e.g. "val/accuracy" -> {"max": ...}) come as a key path
            run["summary"].update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.summary.update})
        elif kind == "exit":
            run["exit_code"] = r.exit.exit_code
    return run


def offline_runs(root: Path) -> list[dict[str, Any]]:
    """Every offline run under ``root`` (searched recursively), sorted by path."""
    return [read_run(p) for p in sorted(Path(root).rglob("offline-run-*")) if p.is_dir()]
