"""The docs are true to the repository: every repository path and `hf_unlearn.` / `bench.` name that README.md and
docs/*.md give exists, and docs/architecture.md's package map lists every module of hf_unlearn/ (and no module
that is gone). Static: reads files, imports nothing."""

import ast
import re

import pytest

from conftest import REPO

PACKAGE = REPO / "hf_unlearn"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Top folders of the repository, and the package's own folders (docs name modules package-relative: `optim/refresh.py`).
REPO_FOLDERS = ("hf_unlearn", "examples", "docs", "tests", "bench", "recipes")
PACKAGE_FOLDERS = tuple(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
# Where the docs name what a command writes, not what the repository holds (both git-ignored or made on a GPU).
OUTPUTS = ("bench/results/cache/", "bench/results/gpu/")

PATH = re.compile(r"(?<![\w./-])((?:\.\./)?[A-Za-z_][\w.-]*/[\w./*-]*[\w/])")
DOTTED = re.compile(r"(?<![\w./-])((?:hf_unlearn|bench)(?:\.\w+)+)")
PACKAGE_DOTTED = re.compile(r"`(\w+(?:\.\w+)+)[`(]")  # `optim.refresh.recording_logits`: package-relative
LINK = re.compile(r"\]\(([^)\s#]+)")


def _without_urls(text: str) -> str:
    return re.sub(r"https?://\S+", " ", text)


def _repository_paths(doc):
    """(path as written, where it must exist) for every repository path `doc` names."""
    text = _without_urls(doc.read_text())
    for link in LINK.findall(text):
        yield link, [doc.parent / link]
    for path in PATH.findall(text):
        first = path.split("/")[0]
        if path.startswith(OUTPUTS) or "*" in path:
            continue
        if first in REPO_FOLDERS:
            yield path, [REPO / path]
        elif first in PACKAGE_FOLDERS and (path.endswith((".py", "/"))):  # `data/muse` alone is a user's data folder
            yield path, [PACKAGE / path, REPO / path]


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_repository_path_the_docs_name_exists(doc):
    missing = sorted({path for path, places in _repository_paths(doc) if not any(p.exists() for p in places)})
    assert not missing, f"{doc.relative_to(REPO)} names paths that do not exist: {missing}"


def _defined_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in getattr(tree, "body", []):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.If, ast.Try)):  # optional imports
            names |= _defined_names(node) | {n for h in getattr(node, "handlers", []) for n in _defined_names(h)}
    return names


def _resolves(dotted: str) -> bool:
    """A module (file or package), or a name defined at the top of one (one attribute deeper for a class)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = REPO.joinpath(*parts[:cut])
        module = base.with_suffix(".py") if base.with_suffix(".py").exists() else base / "__init__.py"
        if not module.exists():
            continue
        rest = parts[cut:]
        if not rest:
            return True
        tree = ast.parse(module.read_text())
        if rest[0] not in _defined_names(tree):
            return False
        if len(rest) == 1:
            return True
        classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == rest[0]]
        return len(rest) == 2 and any(rest[1] in _defined_names(c) for c in classes)
    return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_module_and_name_the_docs_give_exists(doc):
    text = _without_urls(doc.read_text())
    names = set(DOTTED.findall(text))
    names |= {f"hf_unlearn.{name}" for name in PACKAGE_DOTTED.findall(text) if name.split(".")[0] in PACKAGE_FOLDERS}
    missing = sorted(name for name in names if not _resolves(name))
    assert not missing, f"{doc.relative_to(REPO)} names modules or attributes that do not exist: {missing}"


NAME_COLUMN = 20  # in the package map, an entry's name starts left of it, a description continues right of it
MENTION = re.compile(r"[\w./]*\w(?:\.py|/)")


def _package_map_listing() -> set[str]:
    """The hf_unlearn-relative paths (modules `x/y.py`, folders `x/`) that docs/architecture.md's package map lists,
    each file name taken relative to the folder whose entry it stands under."""
    text = (REPO / "docs" / "architecture.md").read_text()
    block = text.split("## Package map", 1)[1].split("```", 2)[1]
    listed, folders = set(), []  # folders: (indent, name) of the entries the current line stands under
    for line in block.splitlines()[1:]:
        indent = len(line) - len(line.lstrip())
        if not line.strip():
            continue
        if indent < NAME_COLUMN:
            first = line.split()[0]
            while folders and folders[-1][0] >= indent:
                folders.pop()
            if first.endswith("/"):
                folders.append((indent, first))
        prefix = "".join(name for _, name in folders)
        listed |= {prefix + mention for mention in MENTION.findall(line)}
    return {path[len("hf_unlearn/"):] for path in listed if path.startswith("hf_unlearn/")}


def test_the_package_map_lists_every_module():
    listed = _package_map_listing()
    modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}

    def is_listed(module):
        # A folder holding one module (an `evaluate` module: privleak/privleak.py) is named by the folder.
        folder = module.rsplit("/", 1)[0] + "/" if "/" in module else None
        only_module = folder is not None and len([m for m in modules if m.startswith(folder)]) == 1
        return module in listed or (only_module and folder in listed)

    unlisted = sorted(m for m in modules if not is_listed(m))
    assert not unlisted, f"docs/architecture.md's package map does not list: {unlisted}"
    gone = sorted(p for p in listed if p.endswith(".py") and not (PACKAGE / p).exists())
    assert not gone, f"docs/architecture.md's package map lists modules that do not exist: {gone}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_results_are_named_by_date_and_commit_not_by_work_period(doc):
    periods = re.findall(r"\bsession \d+", doc.read_text(), flags=re.IGNORECASE)
    assert not periods, f"{doc.name} names results by work period ({periods}): name the date and commit instead"
