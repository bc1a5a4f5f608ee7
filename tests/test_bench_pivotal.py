"""bench/pivotal.py's dataset: the character's captions pass the trigger checks the benchmark's runs make, and a
quarter of the character images (and only those) is held out.

Break this catches (run once, it failed): a character caption whose words share the trigger's pieces often enough
to be refused (e.g. `orvantis, or or or`), which would stop every benchmark run at start-up.
"""

from __future__ import annotations

import sys
from pathlib import Path

import toml

from library.anima.pivotal_checks import plan_trigger
from library.anima.tokenizers import load_t5_tokenizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def test_the_benchmark_dataset_passes_the_trigger_checks(tmp_path: Path) -> None:
    import pivotal

    config = toml.loads(pivotal.dataset_toml(tmp_path, 4).read_text(encoding="utf-8"))
    assert [d.get("validation_split", 0) for d in config["datasets"]] == [0.25, 0]
    captions = [p.read_text(encoding="utf-8") for p in sorted(tmp_path.glob("*/*.txt"))]
    assert captions.count(pivotal.CHARACTER) == 4 and len(captions) == 4 + 3 * 2
    plan = plan_trigger(pivotal.TRIGGER, pivotal.INIT, load_t5_tokenizer(), captions)
    assert plan.token_ids == [42, 6451, 159]
