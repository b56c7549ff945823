"""The package's imports follow the pipeline: tokenizer -> core -> data -> train -> finetune -> eval
-> tools -> CLIs. A module imports only its own rank or lower, nothing imports in a cycle, and an
import inside a function is there for an optional or heavy dependency, with a comment saying which."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = {"slm", "slm.config", "slm.model", "slm.generate", "slm.checkpoint", "slm.hf", "slm.lm", "slm.chat",
        "slm.runs", "slm.metrics", "slm.lora", "slm.jmed"}
TOOLS = {"slm.recipe", "slm.export", "slm.model_card", "slm.analysis", "slm.demo"}
STAGES = ("slm.data", "slm.train", "slm.finetune", "slm.eval")
CLIS = {"evaluate", "train", "finetune"}


def rank(module: str) -> int:
    if module == "tokenizer" or module.startswith("tokenizer."):
        return 0
    if module in CORE:
        return 1
    for n, stage in enumerate(STAGES, 2):
        if module == stage or module.startswith(stage + "."):
            return n
    if module in TOOLS:
        return 2 + len(STAGES)
    assert module in CLIS, f"{module} has no rank: add it to the pipeline in this test and in the design"
    return 3 + len(STAGES)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def first_party(name: str) -> bool:
    return name.split(".")[0] in ("slm", "tokenizer")


def resolve(name: str, modules: set[str]) -> str:
    """`from slm.eval import registry` names the module slm.eval.registry; `from slm.lm import X`, slm.lm."""
    return name if name in modules else name.rsplit(".", 1)[0] if name.rsplit(".", 1)[0] in modules else name


class Imports(ast.NodeVisitor):
    """Every import of a module: (imported name, line, inside a function), `if TYPE_CHECKING:` left out."""

    def __init__(self):
        self.found: list[tuple[str, int, bool]] = []
        self.depth = 0

    def visit_FunctionDef(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node):
        if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
            self.generic_visit(node)

    def visit_Import(self, node):
        self.found += [(a.name, node.lineno, self.depth > 0) for a in node.names]

    def visit_ImportFrom(self, node):
        if node.level == 0 and node.module:
            self.found += [(f"{node.module}.{a.name}", node.lineno, self.depth > 0) for a in node.names]


def graph() -> tuple[dict[str, set[str]], list[str]]:
    """First-party edges (function-level ones too), and the function-level imports without a reason."""
    paths = sorted([*ROOT.glob("slm/**/*.py"), *ROOT.glob("tokenizer/**/*.py"), *(ROOT / f"{c}.py" for c in CLIS)])
    modules = {module_name(p) for p in paths}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    unexplained = []
    for path in paths:
        lines = path.read_text(encoding="utf-8").splitlines()
        visitor = Imports()
        visitor.visit(ast.parse("\n".join(lines)))
        explained: set[str] = set()  # top-level packages whose function-level import gave its reason
        for name, line, local in visitor.found:
            top = name.split(".")[0]
            if first_party(name):
                edges[module_name(path)].add(resolve(name, modules))
            if local:
                if "#" in lines[line - 1]:
                    explained.add(top)
                elif top not in explained:
                    unexplained.append(f"{path.relative_to(ROOT)}:{line}: {lines[line - 1].strip()}")
    return edges, unexplained


def test_no_module_imports_a_later_stage():
    edges, _ = graph()
    wrong = [f"{a} (rank {rank(a)}) imports {b} (rank {rank(b)})" for a, targets in edges.items() for b in targets
             if rank(b) > rank(a)]
    assert not wrong, "\n".join(wrong)


def test_the_tokenizer_package_never_imports_slm():
    edges, _ = graph()
    assert not [(a, b) for a, targets in edges.items() if a.startswith("tokenizer") for b in targets
                if b.startswith("slm")]


def test_there_are_no_import_cycles():
    edges, _ = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if target not in edges or target == node:
                continue
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif state.get(target) is None:
                visit(target, path + [target])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_function_level_imports_say_why():
    _, unexplained = graph()
    assert not unexplained, "imports inside functions need a comment naming the optional dependency:\n" + \
        "\n".join(unexplained)
