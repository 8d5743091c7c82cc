"""The floor plan holds: wings import only downwards (import-linter's contracts in pyproject.toml), no module
imports itself back through others (function-level imports included), and the light edges stay light:
``import bgone``, ``bgone --help``/``--version`` and an API-only service node never load PyTorch."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if state.get(imported) == 1:
                found.append([*path[path.index(imported) :], imported])
            elif imported not in state:
                visit(imported, path)
        path.pop()
        state[module] = 2

    for module in sorted(graph.modules):
        if module not in state:
            visit(module, [])
    return found


def test_no_module_imports_itself_back() -> None:
    """grimp records every import statement, including those inside functions."""
    cycles = _cycles(grimp.build_graph("bgone"))
    assert cycles == [], "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_environment_is_read_only_in_settings_and_the_cli() -> None:
    src = REPO / "src" / "bgone"
    readers = [
        f"{path.relative_to(src)}:{number}"
        for path in sorted(src.rglob("*.py"))
        if path.name != "settings.py" and "cli" not in path.relative_to(src).parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "os.environ" in line or "getenv(" in line
    ]
    assert readers == []


PROBE = """
import sys
{body}
heavy = sorted(m for m in ("torch", "av", "onnxruntime") if m in sys.modules)
print(",".join(heavy) or "light")
"""


def _probe(body: str) -> str:
    proc = subprocess.run([sys.executable, "-c", PROBE.format(body=body)], capture_output=True, text=True, check=True)
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "body",
    [
        "import bgone; bgone.__version__; bgone.BgoneError",
        "import bgone.cli",
        "from bgone.settings import server_settings",
        # An API-only node: the whole app, every route, a store and storage, but no worker and no model.
        "import tempfile; from bgone.service.app import create_app; from bgone.settings import server_settings\n"
        "create_app(server_settings(role='api', open_access=True, data_dir=tempfile.mkdtemp()))",
        # ... and the requests it takes: queueing a fal request, an upload, the status, the history.
        "import tempfile; from fastapi.testclient import TestClient; from bgone.service.app import create_app\n"
        "from bgone.settings import server_settings\n"
        "app = create_app(server_settings(role='api', open_access=True, data_dir=tempfile.mkdtemp()))\n"
        "with TestClient(app) as client:\n"
        "    job = client.post('/queue/fal-ai/birefnet/v2', json={'image_url': 'https://example.com/a.png'}).json()\n"
        "    assert client.get(job['status_url'].replace('http://testserver', '')).status_code == 202\n"
        "    assert client.post('/files/upload', content=b'bytes').status_code == 200\n"
        "    assert client.get('/api/history').status_code == 200",
    ],
)
def test_light_edges_never_load_torch(body: str) -> None:
    assert _probe(body) == "light"  # neither PyTorch, nor PyAV (FFmpeg), nor onnxruntime


def test_help_and_version_answer_at_once() -> None:
    bgone = Path(sys.executable).with_name("bgone")
    for args in (["--version"], ["--help"]):
        started = time.perf_counter()
        proc = subprocess.run([str(bgone), *args], capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - started
        assert "bgone" in proc.stdout
        assert seconds < 3.0, f"bgone {args[0]} took {seconds:.2f} s"  # ~0.5 s; the margin is for a busy CI box
    version = subprocess.run([str(bgone), "--version"], capture_output=True, text=True, check=True).stdout
    assert version.strip().startswith("bgone ") and version.strip().split()[1][0].isdigit()
