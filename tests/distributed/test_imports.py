"""Nothing imports Ray unless it is asked for; without Ray installed, asking names the extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "corpus"
NO_RAY = "import sys\nsys.modules['ray'] = None\n"


def _run(code: str, tmp_path: Path, model: Path) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "M3RAG_MODEL": str(model)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)


def test_m3rag_the_help_and_indexing_without_ray_do_not_import_ray(tmp_path: Path, tiny_checkpoint: Path) -> None:
    code = (
        "import sys, contextlib, io, m3rag, m3rag.index, m3rag.cli\n"
        "from m3rag.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as help_text, contextlib.suppress(SystemExit):\n"
        "    main(['index', '--help'])\n"
        "assert '--ray-address' in help_text.getvalue() and '--workers' in help_text.getvalue()\n"
        f"assert main(['index', {str(CORPUS)!r}, '--index', 'idx']) == 0\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('ray', 'pyarrow', 'm3rag.distributed')]\n"
        "assert not bad, bad\n"
    )
    result = _run(code, tmp_path, tiny_checkpoint)
    assert result.returncode == 0, result.stderr


def test_without_ray_the_error_names_the_extra(tmp_path: Path, tiny_checkpoint: Path) -> None:
    module = _run(NO_RAY + "import m3rag.distributed", tmp_path, tiny_checkpoint)
    assert module.returncode != 0 and 'pip install "m3rag[ray]"' in module.stderr and "ImportError" in module.stderr
    command = _run(
        NO_RAY + f"from m3rag.cli import main\nraise SystemExit(main(['index', {str(CORPUS)!r}, '--index', 'idx', '--ray']))",
        tmp_path,
        tiny_checkpoint,
    )
    assert command.returncode == 2 and 'pip install "m3rag[ray]"' in command.stderr
    assert not (tmp_path / "idx").exists() or not any((tmp_path / "idx").iterdir())
