"""The hosted setup for a class (binder/, .devcontainer/): what repo2docker builds installs the kit.

``repo2docker --no-build --debug`` writes the Dockerfile that Binder or a course's
JupyterHub would build, without Docker. It comes with the ``hosted`` extra
(``pip install -e ".[hosted]"``, as CI does); without it those tests skip, saying so.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from batchlab.paths import kit_root
from packaging.specifiers import SpecifierSet

ROOT = kit_root()
BINDER = ROOT / "binder"
#: Without the `hosted` extra (the README's plain install) these tests skip, saying so.
pytestmark = pytest.mark.student_env
needs_repo2docker = pytest.mark.skipif(importlib.util.find_spec("repo2docker") is None,
                                       reason='repo2docker is missing: pip install -e ".[hosted]"')


def requires_python() -> SpecifierSet:
    return SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
                        ["requires-python"])


@pytest.fixture(scope="module")
def dockerfile() -> str:
    """The Dockerfile repo2docker writes for this repository, as Binder builds it (uid 1000, jovyan)."""
    if importlib.util.find_spec("repo2docker") is None:
        pytest.skip('repo2docker is missing: pip install -e ".[hosted]"')
    proc = subprocess.run([sys.executable, "-m", "repo2docker", "--no-build", "--debug", "--user-id", "1000",
                           "--user-name", "jovyan", str(ROOT)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "DOCKER_HOST": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.lstrip().startswith("FROM "), proc.stdout[:500] + proc.stderr[-2000:]
    return proc.stdout


@needs_repo2docker
class TestTheImage:
    def test_python_is_the_version_ci_tests(self, dockerfile: str) -> None:
        runtime = (BINDER / "runtime.txt").read_text(encoding="utf-8").strip()
        version = runtime.removeprefix("python-")
        env_copy = next(line for line in dockerfile.splitlines() if line.endswith(" /tmp/env/environment.lock"))
        source = re.sub(r"-2([def])", lambda m: {"d": "-", "e": ".", "f": "/"}[m.group(1)], env_copy)  # escapism
        assert f"/environment.py-{version}-" in source, f"the image's conda environment is not {runtime}: {env_copy}"
        assert version + ".0" in requires_python(), f"{runtime} is outside requires-python {requires_python()}"

    def test_the_requirements_are_installed_into_the_kernel_environment(self, dockerfile: str) -> None:
        assert re.search(r'RUN \$\{KERNEL_PYTHON_PREFIX\}/bin/pip install .*-r "binder/requirements\.txt"',
                         dockerfile)

    def test_post_build_installs_the_kit_from_the_copied_repository_as_the_notebook_user(
            self, dockerfile: str) -> None:
        lines = dockerfile.splitlines()
        copy = next(i for i, line in enumerate(lines) if re.match(r"COPY --chown=1000:1000 src/ \$\{REPO_DIR\}/", line))
        run = lines.index("RUN ./binder/postBuild")
        assert copy < run, "postBuild runs before the repository is in the image"
        user = [line for line in lines[:run] if line.startswith("USER ")][-1]
        assert user == "USER ${NB_USER}"
        steps = [line.strip() for line in (BINDER / "postBuild").read_text(encoding="utf-8").splitlines()
                 if line.strip() and not line.lstrip().startswith("#")]
        assert any(re.fullmatch(r"(python -m )?pip install( --no-cache-dir)? -e \.", s) for s in steps), steps

    def test_the_start_hook_is_the_entrypoint(self, dockerfile: str) -> None:
        assert re.search(r'R2D_ENTRYPOINT[= ]"?\$\{REPO_DIR\}/binder/start', dockerfile)


class TestStartHook:
    """binder/start: on a JupyterHub the student's pulled copy becomes the kit root; elsewhere nothing changes."""

    def run_start(self, home: Path, repo_dir: Path, **env: str) -> str:
        clean = {k: v for k, v in os.environ.items() if k != "BATCHLAB_ROOT"}
        proc = subprocess.run(["bash", str(BINDER / "start"), "sh", "-c", 'printf %s "${BATCHLAB_ROOT:-unset}"'],
                              capture_output=True, text=True, timeout=60,
                              env={**clean, "HOME": str(home), "REPO_DIR": str(repo_dir), **env})
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def test_on_a_hub_the_pulled_copy_is_the_kit_root(self, tmp_path: Path) -> None:
        (tmp_path / "lesson15").mkdir()
        (tmp_path / "lesson15" / "pyproject.toml").write_text("[project]\n", encoding="utf-8")
        assert self.run_start(tmp_path, Path("/srv/lesson15")) == str(tmp_path / "lesson15")

    def test_before_the_pull_nothing_changes(self, tmp_path: Path) -> None:
        assert self.run_start(tmp_path, Path("/srv/lesson15")) == "unset"

    def test_on_binder_the_repository_is_the_home_and_nothing_changes(self, tmp_path: Path) -> None:
        (tmp_path / "lesson15").mkdir()
        (tmp_path / "lesson15" / "pyproject.toml").write_text("[project]\n", encoding="utf-8")
        assert self.run_start(tmp_path, tmp_path) == "unset"

    def test_a_root_set_by_the_hub_wins(self, tmp_path: Path) -> None:
        (tmp_path / "lesson15").mkdir()
        (tmp_path / "lesson15" / "pyproject.toml").write_text("[project]\n", encoding="utf-8")
        assert self.run_start(tmp_path, Path("/srv/lesson15"), BATCHLAB_ROOT="/data/x") == "/data/x"


class TestDevcontainer:
    def test_it_uses_the_python_ci_tests_and_installs_the_kit(self) -> None:
        config = json.loads((ROOT / ".devcontainer" / "devcontainer.json").read_text(encoding="utf-8"))
        version = re.search(r"python:\d+-(\d+\.\d+)-", config["image"])
        assert version and version.group(1) + ".0" in requires_python(), config["image"]
        assert "pip install -e ." in config["postCreateCommand"]
        assert config.get("remoteUser") not in (None, "root")  # as students run it: not root
