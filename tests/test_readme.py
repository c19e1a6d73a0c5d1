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
