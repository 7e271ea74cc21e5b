"""Code versions of assets: a hash of the source an asset's value depends on, followed from the asset function
through every definition of this package it uses (read, never imported), without docstrings, comments and
descriptions. The UI then marks an asset unsynced after a change to that code and after nothing else."""

import ast
import copy
import functools
import hashlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

PACKAGE = "turbine_dagster"
DEPLOYMENT_MODULES = frozenset({"turbine_dagster.settings", "turbine_dagster.defs.environment"})
"""Where a deployment is configured (teams, roots, schedules) from the environment: not followed."""
VERSION_CHARS = 12
ROOT = Path(__file__).resolve().parents[1]  # the turbine_dagster package folder


def _module_file(module: str) -> Path | None:
    """The source file of a module of this package, found on disk: nothing is imported."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    relative = Path(*module.split(".")[1:])
    for candidate in (ROOT / relative / "__init__.py", (ROOT / relative).with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def module_source(module: str) -> str:
    """The source text of a module of this package."""
    path = _module_file(module)
    if path is None:
        raise ModuleNotFoundError(f"code version: no source file for module {module} under {ROOT}")
    return path.read_text(encoding="utf-8")


def _is_module(name: str) -> bool:
    return _module_file(name) is not None


@dataclass
class _Module:
    """A module's top-level definitions and the names it imports, read from its source."""

    definitions: dict[str, ast.AST] = field(default_factory=dict)
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # name -> (module, attribute)


def _imported_names(node: ast.Import | ast.ImportFrom, module: str) -> Iterator[tuple[str, tuple[str, str | None]]]:
    """(local name, (module, attribute or None)) for each name an import statement binds within this package."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.startswith(PACKAGE):
                # `import a.b.c` binds `a`; `import a.b.c as x` binds x to a.b.c
                yield (
                    (alias.asname, (alias.name, None))
                    if alias.asname
                    else (alias.name.split(".")[0], (alias.name.split(".")[0], None))
                )
        return
    source = node.module or ""
    if node.level:
        package = module.rsplit(".", node.level)[0]
        source = f"{package}.{source}" if source else package
    if not source.startswith(PACKAGE):
        return
    for alias in node.names:
        submodule = f"{source}.{alias.name}"
        yield alias.asname or alias.name, ((submodule, None) if _is_module(submodule) else (source, alias.name))


@functools.cache
def _tree(module: str) -> ast.Module:
    return ast.parse(module_source(module))


@functools.cache
def _parsed(module: str) -> _Module:
    parsed = _Module()
    for node in _tree(module).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            parsed.definitions[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        parsed.definitions[name.id] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            parsed.imports.update(_imported_names(node, module))
    return parsed


def _stripped(node: ast.AST, drop_decorators: bool = False) -> ast.AST:
    """A copy of the syntax tree without docstrings and bare strings, ``description=`` arguments, and (when
    asked) the node's own decorators."""
    node = copy.deepcopy(node)
    if drop_decorators and hasattr(node, "decorator_list"):
        node.decorator_list = []
    for child in ast.walk(node):
        for name in ("body", "orelse", "finalbody"):
            body = getattr(child, name, None)
            if isinstance(body, list):
                kept = [
                    s
                    for s in body
                    if not (
                        isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and isinstance(s.value.value, str)
                    )
                ]
                setattr(child, name, kept or [ast.Pass()])
        if isinstance(child, ast.Call):
            child.keywords = [k for k in child.keywords if k.arg != "description"]
    return node


def _bound_names(node: ast.AST) -> set[str]:
    """Names ``node`` binds itself (parameters, assignments, inner definitions): they shadow the module's."""
    bound = set()
    for child in ast.walk(node):
        if isinstance(child, ast.arg):
            bound.add(child.arg)
        elif isinstance(child, ast.Name) and not isinstance(child.ctx, ast.Load):
            bound.add(child.id)
        elif child is not node and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(child.name)
    return bound


def _references(node: ast.AST, module: str) -> Iterator[tuple[str, str]]:
    """(module, attribute) of every name of this package that ``node`` uses."""
    scope = _parsed(module)
    bound = _bound_names(node)
    local_imports: dict[str, tuple[str, str | None]] = {}
    for child in ast.walk(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            local_imports.update(_imported_names(child, module))
    for child in ast.walk(node):
        if isinstance(child, ast.Attribute):
            chain = []
            base: ast.AST = child
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id not in bound:
                target = local_imports.get(base.id) or scope.imports.get(base.id)
                if target and target[1] is None:  # a module: follow `module.sub.name` as far as it names modules
                    name = target[0]
                    for attr in reversed(chain):
                        if _is_module(f"{name}.{attr}"):
                            name = f"{name}.{attr}"
                            continue
                        yield name, attr
                        break
        elif isinstance(child, ast.Name) and child.id not in bound:
            target = local_imports.get(child.id) or scope.imports.get(child.id)
            if child.id in scope.definitions:
                yield module, child.id
            elif target and target[1] is not None:  # a module's name alone is followed where an attribute is read
                yield target


def _find_function(module: str, qualname: str) -> ast.AST:
    """The definition of ``qualname`` (``factory.<locals>.inner`` included) in the module's source."""
    nodes: list[ast.AST] = _tree(module).body
    found: ast.AST | None = None
    for part in (p for p in qualname.split(".") if p != "<locals>"):
        found = next(
            (
                n
                for n in nodes
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == part
            ),
            None,
        )
        if found is None:
            raise LookupError(f"code version: {qualname} not found in the source of {module}")
        nodes = [n for n in ast.walk(found) if n is not found]
    assert found is not None
    return found


@functools.cache
def _symbol(module: str, name: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A top-level definition's text and the names of this package it uses."""
    parsed = _parsed(module)
    if name in parsed.definitions:
        node = _stripped(parsed.definitions[name])
        return ast.dump(node), tuple(sorted(set(_references(node, module)) - {(module, name)}))
    if name in parsed.imports:  # re-exported: the definition lives elsewhere
        return "", (parsed.imports[name],)
    return "", ()  # not a top-level name of the module's source (set at run time): nothing to read


def code_version(fn: Callable) -> str:
    """The code version of an asset computed by ``fn``: its definition and every definition of this package it
    reaches, except the deployment modules; docstrings, descriptions and its own decorator do not count."""
    fn = inspect.unwrap(fn)
    root = _stripped(_find_function(fn.__module__, fn.__qualname__), drop_decorators=True)
    parts = {f"{fn.__module__}:{fn.__qualname__}": ast.dump(root)}
    pending = list(_references(root, fn.__module__))
    seen: set[tuple[str, str]] = set()
    while pending:
        reference = pending.pop()
        if reference in seen or reference[0] in DEPLOYMENT_MODULES:
            continue
        seen.add(reference)
        text, references = _symbol(*reference)
        if text:
            parts[":".join(reference)] = text
        pending.extend(references)
    digest = hashlib.sha256()
    for key in sorted(parts):
        digest.update(f"{key}\n{parts[key]}\n".encode())
    return digest.hexdigest()[:VERSION_CHARS]


def versioned(assets_def: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """The same asset(s) with the code version of their compute function (every output of a multi-asset shares
    it: one function computes them all)."""
    version = code_version(assets_def.op.compute_fn.decorated_fn)
    return assets_def.map_asset_specs(lambda spec: spec.replace_attributes(code_version=version))


def clear_cache() -> None:
    """Forget parsed sources (tests that change a source through ``module_source``)."""
    for cached in (_tree, _parsed, _symbol):
        cached.cache_clear()
