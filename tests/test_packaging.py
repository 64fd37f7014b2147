"""Installed as a package: `pip install` of a clone gives working console scripts and the
presets, from any directory; without TensorFlow, one line says which extra to install."""

import importlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest

import ns3l_tf
from ns3l_tf import cli

from .conftest import REPO_ROOT, SMALL_FASHION_MNIST


def _clone(destination):
    """The repository's files as a fresh clone has them (tracked and new, not ignored)."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, files):
        source, target = os.path.join(REPO_ROOT, name), os.path.join(destination, name)
        if not os.path.lexists(source):  # deleted in the working tree, not yet committed
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.islink(source):
            os.symlink(os.readlink(source), target)
        else:
            shutil.copy2(source, target)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh virtual environment with the clone pip-installed (not editable) into it. Its
    dependencies come from this environment's site-packages (a `.pth` line: no download), so
    pip checks them as it would anywhere."""
    root = tmp_path_factory.mktemp("packaging")
    _clone(root / "clone")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", root / "venv"], check=True)
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    venv_site = subprocess.run(
        [root / "venv" / "bin" / "python", "-c", purelib],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with open(os.path.join(venv_site, "dependencies.pth"), "w") as f:
        f.write(sysconfig.get_path("purelib") + "\n")
    install = subprocess.run(
        [root / "venv" / "bin" / "python", "-m", "pip", "install", "--no-index",
         "--no-build-isolation", "--quiet", root / "clone"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    (root / "elsewhere").mkdir()
    return root


@pytest.mark.large
def test_console_scripts_train_a_preset_and_evaluate_it_from_another_directory(installed):
    bin_dir, cwd = installed / "venv" / "bin", installed / "elsewhere"
    where = subprocess.run(
        [bin_dir / "python", "-c", "import ns3l_tf; print(ns3l_tf.__file__)"],
        cwd=cwd, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert where.startswith(str(installed / "venv"))  # the installed copy, not this checkout
    for script in ("ns3l-train", "ns3l-tune", "ns3l-data", "ns3l-evaluate"):
        assert (bin_dir / script).exists(), script
    metadata = subprocess.run(
        [bin_dir / "python", "-c", "import importlib.metadata as m, json; "
         "d = m.metadata('ns3l_tf'); print(json.dumps([d['License'], d['Author']]))"],
        cwd=cwd, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert metadata.strip() == '["Apache-2.0", "The ns3l_tf Authors"]'
    own_flag = {"ns3l-train": "--algorithm", "ns3l-tune": "--max_trials", "ns3l-data": "--dataset",
                "ns3l-evaluate": "--run_dir"}  # fmt: skip
    for script, flag in own_flag.items():
        shown = subprocess.run(
            [bin_dir / script, "--help"], cwd=cwd, capture_output=True, text=True
        )
        assert shown.returncode == 0 and f"{flag}:" in shown.stdout, (script, shown.stdout[:500])
        assert "flags:" in shown.stdout and len(shown.stdout.splitlines()) > 20, script
        version = subprocess.run([bin_dir / script, "--version"], capture_output=True, text=True)
        assert (version.returncode, version.stdout) == (0, f"ns3l_tf {ns3l_tf.__version__}\n")
    help_text = subprocess.run(
        [bin_dir / "ns3l-train", "--helpfull"], cwd=cwd, capture_output=True, text=True
    ).stdout
    assert "--preset" in help_text and "fmnist_quick" in help_text
    train = subprocess.run(
        [bin_dir / "ns3l-train", "--preset=fmnist_quick", "--train_steps=4", "--eval_every=2",
         "--lr_decay_step=0", "--num_validation=500", "--output_dir=run"],
        cwd=cwd, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    assert "test error" in train.stdout and (cwd / "run" / "results.json").exists()
    evaluate = subprocess.run(
        [bin_dir / "ns3l-evaluate", "--run_dir=run"], cwd=cwd, capture_output=True, text=True
    )
    images = f"on {SMALL_FASHION_MNIST['test']} images"
    assert evaluate.returncode == 0 and images in evaluate.stdout, evaluate.stderr


def test_without_tensorflow_the_scripts_say_which_extra_to_install(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real(name)
    )
    with pytest.raises(SystemExit) as exit_info:
        cli.require_tensorflow()
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: TensorFlow is not installed") and "'ns3l_tf[cpu]'" in line


def test_without_tensorflow_the_library_says_which_extra_to_install(monkeypatch):
    def no_tensorflow(name, *args):
        raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")

    monkeypatch.setattr(importlib, "import_module", no_tensorflow)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'ns3l_tf\[cpu\]'"):
        ns3l_tf.__getattr__("SSLModel")


def test_every_submodule_the_readme_names_is_an_attribute_of_the_package():
    for name in ("training", "tuning", "backend", "loop", "inference", "distribute"):
        module = getattr(ns3l_tf, name)
        assert module.__name__ == f"ns3l_tf.{name}"
    assert callable(ns3l_tf.training.run) and callable(ns3l_tf.tuning.run)
    with pytest.raises(AttributeError, match="has no attribute 'trainng'"):
        ns3l_tf.trainng  # noqa: B018


def test_without_jax_backend_jax_is_one_line_naming_the_extra(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "jax" else real(name)
    )
    monkeypatch.delitem(sys.modules, "keras", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli.use_backend("jax")
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        "error: --backend=jax: JAX is not installed; pip install 'ns3l_tf[jax]' (the CPU "
        "build), or 'jax[cuda12]' for NVIDIA GPUs"
    )


RELEASE_HEADING = re.compile(r"^## (\d+\.\d+\.\d+)(?: \(([0-9a-f]{7,40})\))?$", re.MULTILINE)


def released_versions() -> list[tuple[str, str]]:
    """`(version, commit)` of each released CHANGELOG heading, newest first."""
    with open(os.path.join(REPO_ROOT, "CHANGELOG.md"), encoding="utf-8") as f:
        return RELEASE_HEADING.findall(f.read())


def git(*args: str, cwd: str = REPO_ROOT) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_the_newest_released_version_is_the_package_and_each_names_its_commit():
    released = released_versions()
    assert released and released[0][0] == ns3l_tf.__version__
    assert [version for version, commit in released if not commit] == []


def test_make_tags_tags_each_released_commit_which_declares_its_version(tmp_path):
    if not os.path.isdir(os.path.join(REPO_ROOT, ".git")):
        pytest.skip("not a git checkout")
    if git("rev-parse", "--is-shallow-repository") == "true":
        pytest.skip("a shallow clone lacks the released commits")
    released = released_versions()
    for version, commit in released:
        assert f'__version__ = "{version}"' in git("show", f"{commit}:ns3l_tf/__init__.py")
    clone = str(tmp_path / "clone")
    git("clone", "--quiet", "--no-tags", REPO_ROOT, clone)
    for name in ("Makefile", "CHANGELOG.md"):  # the working tree's, committed or not
        shutil.copy(os.path.join(REPO_ROOT, name), clone)
    assert git("tag", "--list", cwd=clone) == ""
    identity = {
        f"GIT_{who}_{what}": "ns3l_tf tests"
        for who in ("AUTHOR", "COMMITTER")
        for what in ("NAME", "EMAIL")
    }
    for _ in range(2):  # the second run finds every tag there and adds none
        subprocess.run(
            ["make", "--silent", "tags"], cwd=clone, env={**os.environ, **identity}, check=True
        )
    for version, commit in released:
        assert git("rev-parse", f"v{version}^{{commit}}", cwd=clone) == git("rev-parse", commit)
    assert len(git("tag", "--list", cwd=clone).split()) == len(released)
    for tag in git("tag", "--list", "v*").split():  # tags of this checkout, where it has any
        commit = dict(released)[tag[1:]]
        assert git("rev-parse", f"{tag}^{{commit}}") == git("rev-parse", commit)
