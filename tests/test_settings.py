"""One home for configuration: every setting is declared in include/settings.py, read only through it, parsed by
one bounded parser that raises one ConfigurationError, and listed in the README's Configuration table."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from include import settings
from include.settings import ConfigurationError

REPO_ROOT = Path(__file__).resolve().parent.parent
# Written by `make up` into every process it starts so that `make down` finds them: a marker, not a setting.
NOT_SETTINGS = {"GREENERY_LOCAL_AIRFLOW"}
SEARCHED = [
    *REPO_ROOT.glob("include/**/*.py"),
    *REPO_ROOT.glob("dags/*.py"),
    *REPO_ROOT.glob("bench/*.py"),
    *REPO_ROOT.glob("dbt/greenery/**/*.yml"),
    *REPO_ROOT.glob("dbt/greenery/**/*.sql"),
    REPO_ROOT / "Makefile",
    REPO_ROOT / "Dockerfile",
    REPO_ROOT / ".env.example",
]


def _readme_table() -> dict[str, str]:
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("## Configuration") :]
    section = section[: section.index("\n## ", 1)]
    return {match[1]: match[0] for match in re.finditer(r"^\| `([A-Z_]+)` \|.*$", section, re.MULTILINE)}


def test_every_greenery_variable_the_project_mentions_is_declared() -> None:
    mentioned = {
        name for path in SEARCHED for name in re.findall(r"\bGREENERY_[A-Z_]+[A-Z]\b", path.read_text())
    } - NOT_SETTINGS
    assert mentioned, "found no GREENERY_ variable at all: the search is broken"
    assert sorted(mentioned - set(settings.SETTINGS)) == []


def test_every_setting_is_in_the_readme_table_with_its_default() -> None:
    table = _readme_table()
    assert sorted(set(settings.SETTINGS) - set(table)) == []
    stray = {name for name in table if name.startswith("GREENERY_")} - set(settings.SETTINGS)
    assert sorted(stray) == [], "README lists settings the code does not declare"
    for setting in settings.SETTINGS.values():
        if setting.kind not in ("path",) and setting.default is not None and setting.name != "GREENERY_DEV_SIMULATOR":
            default_cell = table[setting.name].split("|")[2]
            assert f"`{setting.default}`" in default_cell, f"{setting.name}: README default {default_cell.strip()!r}"


def _environment_reads(path: Path, root: Path = REPO_ROOT) -> list[str]:
    """Lines of ``path`` that read the environment (``os.environ[...]``, ``.get``, ``in``, ``os.getenv``). Copying
    it whole for a child process (``dict(os.environ)``, ``{**os.environ}``) and writing to it are not reads."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Attribute) and node.attr == "getenv":
            found.append(line)
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            if isinstance(node.ctx, ast.Load):
                found.append(line)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if ast.unparse(node.func.value) == "os.environ" and node.func.attr in ("get", "pop", "items", "keys"):
                found.append(line)
        elif isinstance(node, ast.Compare) and any(ast.unparse(c) == "os.environ" for c in node.comparators):
            found.append(line)
    return [f"{path.relative_to(root)}:{line}" for line in sorted(found)]


def test_settings_are_read_nowhere_but_in_the_settings_module() -> None:
    modules = [*REPO_ROOT.glob("include/**/*.py"), *REPO_ROOT.glob("dags/*.py")]
    reads = [read for module in modules if module.name != "settings.py" for read in _environment_reads(module)]
    assert reads == []


def test_the_reader_sees_reads_it_must_refuse(tmp_path: Path) -> None:
    module = tmp_path / "sneaky.py"
    module.write_text(
        "import os\nA = os.environ.get('GREENERY_X')\nB = os.environ['HOME']\nC = 'X' in os.environ\n"
        "D = os.getenv('Y')\nenv = {**os.environ}\nos.environ['Z'] = '1'\nos.environ.setdefault('Q', '2')\n"
    )
    assert [read.split(":")[1] for read in _environment_reads(module, tmp_path)] == ["2", "3", "4", "5"]


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        (settings.DAILY_HOUR, "24", "GREENERY_DAILY_HOUR='24' must be a whole number from 0 to 23."),
        (settings.DAILY_HOUR, "6.5", "GREENERY_DAILY_HOUR='6.5' must be a whole number from 0 to 23."),
        (settings.SLACK_TIMEOUT_SECONDS, "0", "GREENERY_SLACK_TIMEOUT_SECONDS='0' must be a number from 1 to 120."),
        (settings.FRESHNESS_BLOCKS, "maybe", "GREENERY_FRESHNESS_BLOCKS='maybe' must be 1 (on) or 0 (off)."),
        (settings.COSMOS_EXECUTION_MODE, "k8s", "GREENERY_COSMOS_EXECUTION_MODE='k8s' is not supported: use one of"),
        (settings.DBT_META_SCHEMA, "dbt-meta; drop", "GREENERY_DBT_META_SCHEMA='dbt-meta; drop' must be a PostgreSQL"),
        (
            settings.AIRFLOW_BASE_URL,
            "airflow.local",
            "GREENERY_AIRFLOW_BASE_URL='airflow.local' must be an http(s) URL",
        ),
        (settings.MAX_WINDOW_DAYS, "0", "GREENERY_MAX_WINDOW_DAYS='0' must be a whole number from 1 to 3660."),
        (settings.EXECUTOR, "kubernetes", "GREENERY_EXECUTOR='kubernetes' is not supported: use one of local, celery."),
        (settings.DBT_QUEUE, "dbt queue", "GREENERY_DBT_QUEUE='dbt queue' must be a name of letters, digits"),
        (settings.CELERY_WORKERS, "0", "GREENERY_CELERY_WORKERS='0' must be a whole number from 1 to 8."),
        (
            settings.DBT_DOCS_URL,
            "/srv/dbt-docs",
            "GREENERY_DBT_DOCS_URL='/srv/dbt-docs' must be an object storage URL with a bucket, e.g. s3://",
        ),
        (settings.DBT_DOCS_URL, "s3://", "GREENERY_DBT_DOCS_URL='s3://' must be an object storage URL"),
    ],
)
def test_a_bad_value_is_one_configuration_error_that_names_the_variable(setting, value, message) -> None:
    with pytest.raises(ConfigurationError) as error:
        setting.value({setting.name: value})
    assert str(error.value).startswith(message)


def test_an_object_store_url_keeps_its_folder_without_the_trailing_slash() -> None:
    assert settings.DBT_DOCS_URL.value({"GREENERY_DBT_DOCS_URL": "s3://greenery/dbt-docs/"}) == "s3://greenery/dbt-docs"
    assert settings.DBT_DOCS_URL.value({}) is None


def test_unset_or_blank_gives_the_default_and_values_are_typed() -> None:
    assert settings.DAILY_HOUR.value({}) == 6
    assert settings.DAILY_HOUR.value({"GREENERY_DAILY_HOUR": "  "}) == 6
    assert settings.DAILY_HOUR.value({"GREENERY_DAILY_HOUR": " 22 "}) == 22
    assert settings.FRESHNESS_BLOCKS.value({"GREENERY_FRESHNESS_BLOCKS": "true"}) is True
    assert settings.COSMOS_EXECUTION_MODE.value({"GREENERY_COSMOS_EXECUTION_MODE": "WATCHER"}) == "watcher"
    assert settings.AIRFLOW_BASE_URL.value({}) is None
    assert settings.AIRFLOW_BASE_URL.value({"GREENERY_AIRFLOW_BASE_URL": "https://af.example.com/"}) == (
        "https://af.example.com"
    )
    assert settings.DAILY_DEADLINE_MINUTES.value({"GREENERY_DAILY_DEADLINE_MINUTES": "0"}) == 0


def test_secret_values_are_the_set_secret_variables_only() -> None:
    environ = {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x", "PGPASSWORD": "abc", "HOME": "/root"}
    assert settings.secret_values(environ) == ["https://hooks.slack.com/services/T/B/x"]
