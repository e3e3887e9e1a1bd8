"""Docker cannot run on the machines this project is developed on, so the image is checked statically: its base is
the Astro Runtime line of the pinned Airflow, and everything it relies on exists in the repository."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _dockerfile_lines() -> list[str]:
    lines = (REPO_ROOT / "Dockerfile").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def test_base_image_is_a_pinned_astro_runtime_of_the_pinned_airflow() -> None:
    # The last stage is the image; the one before only installs the chart libraries.
    base = [line for line in _dockerfile_lines() if line.upper().startswith("FROM ")][-1]
    match = re.fullmatch(r"FROM astrocrpublic\.azurecr\.io/runtime:(\d+)\.(\d+)-(\d+)", base)
    assert match, f"base image is not a pinned Astro Runtime 3.x tag: {base}"
    pinned = re.search(r"^apache-airflow==(\d+)\.(\d+)\.\d+$", (REPO_ROOT / "requirements.txt").read_text(), re.M)
    assert pinned, "requirements.txt does not pin apache-airflow"
    assert match.group(1, 2) == pinned.group(1, 2), "Astro Runtime line and pinned Airflow differ"


def test_files_the_astro_build_reads_exist() -> None:
    # The runtime image's ONBUILD steps copy these; a missing one fails `astro dev start`.
    for name in (
        "requirements.txt",
        "requirements.lock",
        "packages.txt",
        "dags",
        "include",
        "dbt/greenery/dbt_project.yml",
    ):
        assert (REPO_ROOT / name).exists(), f"{name} is missing"


def test_build_steps_point_at_paths_that_exist() -> None:
    text = "\n".join(_dockerfile_lines())
    project_dir = re.search(r"GREENERY_DBT_PROJECT_DIR=/usr/local/airflow/([\w./-]+)", text)
    assert project_dir and (REPO_ROOT / project_dir.group(1) / "dbt_project.yml").is_file()
    for path in re.findall(r"\bcd ([\w./-]+)", text):
        assert (REPO_ROOT / path).is_dir(), f"Dockerfile cds into {path}, which is not in the repository"
    # The image's manifest is where the DAGs look for it (include.settings.DBT_MANIFEST_PATH).
    from include import settings

    target = settings.DBT_MANIFEST_PATH.parent.relative_to(settings.DBT_PROJECT_DIR)
    assert f"dbt parse --quiet --profiles-dir . --project-dir . --target-path {target}" in text


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    ignored = set((REPO_ROOT / ".dockerignore").read_text().split())
    for entry in (".local", ".env", "dbt/greenery/target", ".venv"):
        assert entry in ignored, f".dockerignore does not exclude {entry}"


def test_image_installs_the_runtime_lock_with_hashes() -> None:
    text = "\n".join(_dockerfile_lines())
    assert re.search(r"^RUN pip install .*--require-hashes -r requirements\.lock$", text, re.M), (
        "the image does not install requirements.lock with its hashes"
    )


def test_the_image_has_the_chart_libraries_of_the_committed_lock() -> None:
    from include import settings

    text = "\n".join(_dockerfile_lines())
    assert "COPY package.json package-lock.json ./\nRUN npm ci --ignore-scripts" in text
    target = settings.NODE_MODULES_DIR.relative_to(settings.REPO_ROOT)
    assert f"COPY --from=chart-libs /build/node_modules /usr/local/airflow/{target}" in text
    assert "node_modules" in (REPO_ROOT / ".dockerignore").read_text().split()


def test_the_triggerer_starts_a_runs_node_tasks_in_one_loop_wherever_it_runs() -> None:
    # In the producer mode every node task of a run waits in the triggerer from the run's start (docs/dags.md): the
    # image, the Helm values and make up all let one loop of the triggerer pick up a run's triggers (about 75).
    import yaml

    image = re.search(r"AIRFLOW__TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP=(\d+)", "\n".join(_dockerfile_lines()))
    local = re.search(
        r'"AIRFLOW__TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP": "(\d+)"',
        (REPO_ROOT / "include" / "local_platform" / "local_airflow.py").read_text(),
    )
    values = yaml.safe_load((REPO_ROOT / "deploy" / "values.yaml").read_text())
    assert image is not None, "the image does not set [triggerer] max_trigger_to_select_per_loop"
    assert local is not None, "make up does not set [triggerer] max_trigger_to_select_per_loop"
    found = {
        int(image.group(1)),
        int(local.group(1)),
        int(values["config"]["triggerer"]["max_trigger_to_select_per_loop"]),
    }
    assert found == {250}
