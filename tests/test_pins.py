"""requirements.lock is the one place where versions live; pyproject.toml and environment.yml agree.

- every line of the lock (comments aside) is `name==version`, each name once;
- every dependency in pyproject.toml (runtime and optional) is pinned exactly, to the lock's
  version (the build-system's `setuptools>=61` is a build requirement, not installed by the lock);
- environment.yml's pip list names the same packages with the same pins;
- the installed versions of those direct dependencies are the lock's (a local label such as
  torch's `+cpu` aside).
environment.yml is read with a small parser of its own, so the test needs no YAML library.
"""

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][A-Za-z0-9.!+_-]*)$")


def canonical(name):
    """PEP 503 normalized name: case and runs of '-', '_', '.' do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pins(lines, source):
    """{canonical name: version} from `name==version` strings; fails on anything else."""
    pins = {}
    for line in lines:
        match = PIN.match(line)
        assert match, f"{source}: {line!r} is not an exact pin name==version"
        name = canonical(match.group(1))
        assert name not in pins, f"{source}: {match.group(1)} is pinned twice"
        pins[name] = match.group(2)
    return pins


def lock_lines():
    text = (ROOT / "requirements.lock").read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def pyproject():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def pyproject_requirements():
    project = pyproject()["project"]
    requirements = list(project["dependencies"])
    for group in project.get("optional-dependencies", {}).values():
        requirements += group
    return requirements


def environment_pip_lines(text):
    """The entries under `- pip:` in environment.yml, a conda file of this simple form:

    dependencies:
      - python=3.11
      - pip:
          - numpy==2.4.6
    Comments and blank lines are skipped; the list ends where the indentation drops back.
    """
    lines = [line.split("#", 1)[0].rstrip() for line in text.splitlines()]
    lines = [line for line in lines if line.strip()]
    for i, line in enumerate(lines):
        if line.strip() == "- pip:":
            indent = len(line) - len(line.lstrip())
            entries = []
            for item in lines[i + 1 :]:
                if len(item) - len(item.lstrip()) <= indent:
                    break
                assert item.strip().startswith("- "), f"environment.yml: unexpected {item!r}"
                entries.append(item.strip()[2:].strip().strip("\"'"))
            return entries
    raise AssertionError("environment.yml has no '- pip:' list")


def environment_conda_lines(text):
    """The conda entries of `dependencies:` (python=3.11, pip), without the pip list."""
    entries, inside = [], False
    for line in text.splitlines():
        line = line.split("#", 1)[0].rstrip()
        if line.startswith("dependencies:"):
            inside = True
        elif inside and line and not line.startswith(" "):
            inside = False
        elif inside and re.match(r"^  - \S", line) and line.strip() != "- pip:":
            entries.append(line.strip()[2:])
    return entries


ENVIRONMENT = (ROOT / "environment.yml").read_text()


def test_every_lock_line_is_an_exact_pin_and_each_name_appears_once():
    lines = lock_lines()
    assert len(lines) > 50  # the whole environment, not only the direct dependencies
    parse_pins(lines, "requirements.lock")


def test_nothing_in_pyproject_is_unpinned():
    for requirement in pyproject_requirements():
        assert PIN.match(requirement), f"pyproject.toml: {requirement!r} is not pinned exactly"


def test_pyproject_pins_equal_the_lock():
    lock = parse_pins(lock_lines(), "requirements.lock")
    direct = parse_pins(pyproject_requirements(), "pyproject.toml")
    assert direct, "pyproject.toml lists no dependencies"
    for name, version in direct.items():
        assert name in lock, f"{name} is pinned in pyproject.toml but missing from the lock"
        assert version == lock[name], f"{name}: pyproject.toml {version}, lock {lock[name]}"


def test_environment_yml_pins_the_same_packages_as_pyproject_at_the_lock_versions():
    lock = parse_pins(lock_lines(), "requirements.lock")
    env = parse_pins(environment_pip_lines(ENVIRONMENT), "environment.yml")
    direct = parse_pins(pyproject_requirements(), "pyproject.toml")
    assert env == direct
    for name, version in env.items():
        assert version == lock[name], f"{name}: environment.yml {version}, lock {lock[name]}"


def test_python_version_agrees_everywhere():
    assert pyproject()["project"]["requires-python"] == "==3.11.*"
    assert "python=3.11" in environment_conda_lines(ENVIRONMENT)
    assert sys.version_info[:2] == (3, 11)


def test_the_small_environment_parser_agrees_with_pyyaml():
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: nothing to compare with")
    data = yaml.safe_load(ENVIRONMENT)
    pip = [d["pip"] for d in data["dependencies"] if isinstance(d, dict)]
    conda = [d for d in data["dependencies"] if isinstance(d, str)]
    assert pip == [environment_pip_lines(ENVIRONMENT)]
    assert conda == environment_conda_lines(ENVIRONMENT)


def test_the_small_environment_parser_reads_what_it_says():
    text = (
        "name: x\ndependencies:\n  - python=3.11\n  - pip\n  - pip:\n"
        "      - a==1  # c\n\n      - B_c==2.0\nother: 1\n"
    )
    assert environment_pip_lines(text) == ["a==1", "B_c==2.0"]
    assert environment_conda_lines(text) == ["python=3.11", "pip"]
    with pytest.raises(AssertionError, match="no '- pip:' list"):
        environment_pip_lines("dependencies:\n  - python=3.11\n")


def test_installed_direct_dependencies_are_the_locked_versions():
    lock = parse_pins(lock_lines(), "requirements.lock")
    for name in parse_pins(pyproject_requirements(), "pyproject.toml"):
        installed = importlib.metadata.version(name)
        public = installed.split("+", 1)[0]  # torch 2.13.0+cpu is torch 2.13.0
        assert public == lock[name], f"{name}: installed {installed}, locked {lock[name]}"


def test_canonical_names_and_the_pin_pattern():
    assert canonical("Jinja2") == canonical("jinja2") and canonical("a_b.c") == "a-b-c"
    assert PIN.match("torch==2.13.0") and PIN.match("ipython_pygments_lexers==1.1.1")
    for loose in ("numpy>=2", "numpy", "numpy==2.*", "numpy == 2.4.6", "numpy[extra]==1"):
        assert not PIN.match(loose), loose
