"""Summary cache and the process pool."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import ssotcheck.engine
from ssotcheck.cache import SummaryCache, content_key
from ssotcheck.cli import main
from ssotcheck.scan import summarize
from ssotcheck.testing import make_project, run, write

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_second_run_hits_cache_and_changed_file_is_reparsed(tmp_path: Path) -> None:
    config = make_project(tmp_path, {"src/app/a.py": "X = 1\n", "src/app/b.py": "Y = 2\n"})
    first = run(config, use_cache=True)
    assert first.stats.files == 5
    assert (first.stats.parsed, first.stats.cache_hits) == (5, 0)
    entries = list((tmp_path / ".ssotcheck_cache").rglob("*.json"))
    assert len(entries) == 5

    second = run(config, use_cache=True)
    assert (second.stats.parsed, second.stats.cache_hits) == (0, 5)
    assert second.findings == first.findings

    write(tmp_path, "src/app/b.py", "class ConnectionManager:\n    pass\n")
    third = run(config, use_cache=True)
    assert (third.stats.parsed, third.stats.cache_hits) == (1, 4)
    assert [f.rule for f in third.findings] == ["SSOT001"]


def test_no_cache_writes_nothing(tmp_path: Path) -> None:
    config = make_project(tmp_path)
    assert main(["--config", str(config), "--no-cache"]) == 0
    assert not (tmp_path / ".ssotcheck_cache").exists()
    assert main(["--config", str(config)]) == 0
    assert (tmp_path / ".ssotcheck_cache").is_dir()


def test_cache_round_trips_summaries_exactly(tmp_path: Path) -> None:
    source = (FIXTURES / "violating" / "src" / "app" / "main.py").read_bytes()
    cache = SummaryCache(tmp_path)
    key = content_key(source)
    assert cache.get(key) is None
    cache.put(key, summarize(source))
    assert cache.get(key) == summarize(source)
    assert (cache.hits, cache.misses) == (1, 1)


def test_corrupt_cache_entry_is_a_miss(tmp_path: Path) -> None:
    config = make_project(tmp_path)
    run(config, use_cache=True)
    for entry in (tmp_path / ".ssotcheck_cache").rglob("*.json"):
        entry.write_text("{not json")
    again = run(config, use_cache=True)
    assert again.stats.parsed == again.stats.files


def test_process_pool_with_two_jobs_gives_identical_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {f"src/app/m{i}.py": f"class ConnectionManager{i}:\n    pass\n" for i in range(12)}
    config = make_project(tmp_path, files)
    serial = run(config, jobs=1)

    created: list[int] = []

    class SpyPool(ProcessPoolExecutor):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            created.append(kwargs["max_workers"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(ssotcheck.engine, "ProcessPoolExecutor", SpyPool)
    pooled = run(config, jobs=2, pool_threshold=0, use_cache=True)
    assert created == [2]
    assert pooled.findings == serial.findings and len(pooled.findings) == 12
    assert len(list((tmp_path / ".ssotcheck_cache").rglob("*.json"))) == 15
    warm = run(config, jobs=2, pool_threshold=0, use_cache=True)
    assert created == [2] and warm.stats.parsed == 0
