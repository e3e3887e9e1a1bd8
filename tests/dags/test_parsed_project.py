"""The dbt project parsed once per machine, not once per task or per run's window (include/dbt_tasks/parsed_project.py),
with real dbt (and, to compile, a real warehouse database)."""

from __future__ import annotations

import functools
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from cosmos import settings as cosmos_settings

from include import settings
from include.dbt_tasks import parsed_project
from include.dbt_tasks.cosmos_config import DBT_PROFILE_NAME, DBT_TARGET_NAME
from include.dbt_tasks.parsed_project import LOADED


@pytest.fixture
def kept_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own machine cache, so that no other test's parse is reused."""
    monkeypatch.setattr(cosmos_settings, "enable_cache", True)
    monkeypatch.setattr(cosmos_settings, "cache_dir", tmp_path / "cache")
    return tmp_path / "cache"


def _project_copy(where: Path) -> Path:
    """The project as Cosmos hands it to a task: a fresh directory (here a copy, so a test may edit a model)."""
    shutil.copytree(settings.DBT_PROJECT_DIR, where, ignore=shutil.ignore_patterns("target", "logs"))
    return where


def _profiles(where: Path, env: dict[str, str]) -> Path:
    """A profiles.yml like the one Cosmos writes from the Airflow connection, for the test database."""
    where.mkdir(parents=True)
    output = {
        "type": "postgres",
        "host": env["PGHOST"],
        "port": int(env["PGPORT"]),
        "user": env["PGUSER"],
        "password": env.get("PGPASSWORD", ""),
        "dbname": env["PGDATABASE"],
        "schema": "analytics",
        "threads": 1,
    }
    profile = {DBT_PROFILE_NAME: {"target": DBT_TARGET_NAME, "outputs": {DBT_TARGET_NAME: output}}}
    (where / "profiles.yml").write_text(json.dumps(profile))
    return where


@pytest.fixture
def profiles(tmp_path: Path) -> Path:
    """A profile whose database is never reached: parsing connects to nothing."""
    return _profiles(tmp_path / "profiles", {"PGHOST": "127.0.0.1", "PGPORT": "5432", "PGUSER": "x", "PGDATABASE": "x"})


def _loads(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.getMessage().startswith(LOADED)]


def test_the_second_task_on_a_machine_reuses_the_first_ones_parse(tmp_path, kept_parse, caplog, profiles) -> None:
    caplog.set_level(logging.INFO, logger=parsed_project.__name__)
    first = parsed_project.load(_project_copy(tmp_path / "one"), profiles)
    second = parsed_project.load(_project_copy(tmp_path / "two"), profiles)

    assert _loads(caplog) == [
        "dbt project loaded (parsed in full: saved manifest not found. Starting full parse).",
        "dbt project loaded (nothing had changed since its last parse on this machine).",
    ]
    assert sorted(second.nodes) == sorted(first.nodes)
    assert any(unique_id.startswith("model.greenery.fct_orders") for unique_id in second.nodes)
    assert (kept_parse / parsed_project.CACHE_NAME / DBT_TARGET_NAME / parsed_project.PARTIAL_PARSE_FILE).is_file()


def test_a_changed_model_is_parsed_again_and_kept_for_the_next_task(tmp_path, kept_parse, caplog, profiles) -> None:
    caplog.set_level(logging.INFO, logger=parsed_project.__name__)
    parsed_project.load(_project_copy(tmp_path / "one"), profiles)
    edited = _project_copy(tmp_path / "two")
    model = next(edited.glob("models/marts/**/fct_orders.sql"))
    model.write_text(model.read_text() + "\n-- reviewed\n")

    changed = parsed_project.load(edited, profiles)
    after = parsed_project.load(_project_copy(tmp_path / "three"), profiles)

    (node,) = [node for unique_id, node in changed.nodes.items() if unique_id == "model.greenery.fct_orders"]
    assert "-- reviewed" in node.raw_code
    messages = _loads(caplog)
    assert messages[1] == "dbt project loaded (re-parsed the files that changed)."
    # The third task has the unedited model again: dbt sees the change back and parses that file once more.
    assert messages[2] == "dbt project loaded (re-parsed the files that changed)."
    (node,) = [node for unique_id, node in after.nodes.items() if unique_id == "model.greenery.fct_orders"]
    assert "-- reviewed" not in node.raw_code


def test_a_project_that_does_not_parse_is_one_sentence_with_dbts_reason(tmp_path, kept_parse, profiles) -> None:
    broken = _project_copy(tmp_path / "broken")
    (broken / "models" / "marts" / "broken.sql").write_text("select * from {{ ref('no_such_model') }}\n")

    with pytest.raises(RuntimeError, match=r"^dbt could not load the project: .*no_such_model"):
        parsed_project.load(broken, profiles)


class _CosmosTask:
    """What ``run_dbt_runner`` reads of the Cosmos operator it runs for."""

    def __init__(self) -> None:
        self._dbt_runner_callbacks: list[Any] = []


def test_a_command_with_other_vars_runs_on_the_kept_parse_and_compiles_with_its_own_vars(
    tmp_path, kept_parse, fresh_database, caplog
) -> None:
    caplog.set_level(logging.INFO, logger=parsed_project.__name__)
    _, env = fresh_database("parsed")
    profiles = _profiles(tmp_path / "profiles", env)
    runner = functools.partial(parsed_project.run_dbt_runner, _CosmosTask())
    compiled = []
    for day, start in enumerate(("2021-02-10", "2021-02-11"), start=1):
        project = _project_copy(tmp_path / f"task{day}")
        window = json.dumps({"start_date": start, "end_date": "2021-02-12"})
        command = ["dbt", "compile", "--inline", "select {{ window_bound('start_date') }} as window_start"]
        command += ["--vars", window, "--project-dir", str(project), "--profiles-dir", str(profiles)]
        command += ["--profile", DBT_PROFILE_NAME, "--target", DBT_TARGET_NAME]
        result = runner(command, env={}, cwd=str(project))
        assert result.success, result.exception
        compiled.append(result.result.results[0].node.compiled_code)

    assert compiled == [
        "select cast('2021-02-10 00:00:00.000000' as timestamp) as window_start",
        "select cast('2021-02-11 00:00:00.000000' as timestamp) as window_start",
    ]
    # The second window did not make dbt parse the project again: the parse never sees the vars.
    assert _loads(caplog)[-1] == "dbt project loaded (nothing had changed since its last parse on this machine)."


def test_every_dbt_task_of_the_dags_loads_the_project_through_the_kept_parse(daily, hourly) -> None:
    from cosmos.operators.local import DbtLocalBaseOperator

    dbt_tasks = [task for dag in (daily, hourly) for task in dag.tasks if isinstance(task, DbtLocalBaseOperator)]
    assert dbt_tasks
    assert all(task.run_dbt_runner.func is parsed_project.run_dbt_runner for task in dbt_tasks)
    assert all(task.run_dbt_runner.args == (task,) for task in dbt_tasks)


def _parsed_with(project: Path, profiles: Path, dbt_vars: dict[str, str] | None) -> dict[str, Any]:
    """What dbt's parse makes of each node (its config, dependencies and columns) with ``dbt_vars``."""
    from dbt.cli.main import dbtRunner

    args = ["--log-level", "none", "parse", "--no-partial-parse", "--project-dir", str(project)]
    args += ["--profiles-dir", str(profiles), "--target-path", str(project / "target")]
    args += ["--vars", json.dumps(dbt_vars)] if dbt_vars else []
    result = dbtRunner().invoke(args)
    assert result.success, result.exception
    return {
        unique_id: (node.config.to_dict(), sorted(node.depends_on.nodes), sorted(node.columns))
        for unique_id, node in result.result.nodes.items()
    }


def test_nothing_dbt_parses_depends_on_the_runs_window(tmp_path, profiles) -> None:
    """What makes one kept parse right for every run: a model that read the window in its config or around a
    ref would make this fail, and then the window must not be left out of the parse."""
    project = _project_copy(tmp_path / "project")

    without = _parsed_with(project, profiles, None)
    first_day = _parsed_with(project, profiles, {"start_date": "2021-02-10", "end_date": "2021-02-11"})
    other_day = _parsed_with(project, profiles, {"start_date": "2021-03-01", "end_date": "2021-03-02"})

    assert first_day == without
    assert other_day == without
