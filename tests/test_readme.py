"""The README's first Python block runs as written and learns its three tasks without forgetting them."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_snippet_runs(capsys):
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert block is not None, "README.md has no ```python block"
    scope: dict = {}
    exec(compile(block.group(1), str(README), "exec"), scope)  # noqa: S102 - the README's own code
    res = scope["learner"].results("cl1")
    assert len(res["rows"]) == 3 and res["final_average"] > 0.8
    assert res["backward_transfer"] > -0.1
    assert "final_average" in capsys.readouterr().out


def test_the_module_table_of_docs_foundation_names_every_module_of_the_package():
    """docs/foundation.md's table of modules and layers stays in step with the code: every module is named there."""
    root = Path(__file__).parents[1]
    table = (root / "docs" / "foundation.md").read_text()
    table = table[table.index("## Modules and their layers"):]
    table = table[: table.index("\n## ", 1)]
    pkg = root / "hypercl"
    missing = []
    for path in sorted(pkg.glob("*.py")):
        if path.name not in ("__init__.py", "__main__.py") and f"`{path.name}`" not in table:
            missing.append(path.name)
    for sub in sorted(p for p in pkg.iterdir() if (p / "__init__.py").is_file()):
        if f"`{sub.name}/`" not in table:
            missing.append(f"{sub.name}/")
        elif sub.name in ("cli", "experiments"):  # the table names each of their modules
            missing += [f"{sub.name}/{p.name}" for p in sorted(sub.glob("*.py"))
                        if p.name not in ("__init__.py", "__main__.py") and f"`{p.name}`" not in table]
    assert not missing, f"docs/foundation.md's module table lacks {missing}"
