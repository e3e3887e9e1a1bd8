"""The shape of ``bench/results/latest.json``: what the smoke test checks and what RESULTS.md is built from.

Every section is either its figures or ``{"error": "..."}`` when it could not run (the other sections still
run, and ``python -m bench.run`` then exits non-zero).
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 1

_number = {"type": "number"}
_nullable_number = {"type": ["number", "null"]}
_stats = {
    "type": "object",
    "required": ["median", "min", "max", "n", "samples"],
    "properties": {
        "median": _number,
        "min": _number,
        "max": _number,
        "n": {"type": "integer", "minimum": 1},
        "samples": {"type": "array", "items": _number, "minItems": 1},
    },
}
_error = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def _section(body: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [body, _error]}


_parse_file = {
    "type": "object",
    "required": ["file", "dags", "cold_parse_seconds", "warm_parse_seconds", "cold_serialize_seconds", "peak_rss_mb"],
    "properties": {
        "file": {"type": "string"},
        "execution_mode": {"type": ["string", "null"]},
        "dags": {"type": "object", "additionalProperties": {"type": "integer"}},
        "cold_parse_seconds": _stats,
        "warm_parse_seconds": _stats,
        "cold_serialize_seconds": _stats,
        "cold_ratio_to_trivial": _number,
        "warm_ratio_to_trivial": _number,
        "peak_rss_mb": _number,
    },
}

PARSE_TIME = {
    "type": "object",
    "required": ["render_method", "trivial", "files"],
    "properties": {
        "render_method": {"enum": ["dbt_manifest", "dbt_ls"]},
        "trivial": _parse_file,
        "files": {
            "type": "array",
            "minItems": 1,
            "items": {**_parse_file, "required": [*_parse_file["required"], "cold_ratio_to_trivial"]},
        },
    },
}

_bare_run = {
    "type": "object",
    "required": ["seconds", "dbt_node_seconds", "peak_rss_mb", "ok", "commands"],
    "properties": {
        "seconds": _number,
        "dbt_node_seconds": _number,
        "peak_rss_mb": _number,
        "ok": {"type": "boolean"},
        "commands": {"type": "array", "minItems": 1},
    },
}
_dag_run = {
    "type": "object",
    "required": ["run_id", "state", "seconds", "tasks", "memory"],
    "properties": {
        "state": {"enum": ["success", "failed"]},
        "seconds": _number,
        "tasks": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "object", "required": ["task_id", "state"]},
        },
        "memory": {
            "type": "object",
            "required": ["peak_platform_rss_mb", "peak_task_process_rss_mb"],
            "properties": {"peak_platform_rss_mb": _number, "peak_task_process_rss_mb": _nullable_number},
        },
    },
}
_mode = {
    "type": "object",
    "required": ["summary", "pairs"],
    "properties": {
        "summary": {
            "type": "object",
            "required": [
                "dag_run_seconds",
                "bare_dbt_seconds",
                "ratio",
                "per_task_overhead_seconds",
                "per_task_phase_medians_seconds",
                "peak_task_process_rss_mb",
                "peak_platform_rss_mb",
                "peak_bare_dbt_rss_mb",
            ],
            "properties": {
                "dag_run_seconds": _stats,
                "bare_dbt_seconds": _stats,
                "ratio": _stats,
                "per_task_overhead_seconds": {"oneOf": [_stats, {"type": "null"}]},
            },
        },
        "pairs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["window", "bare", "dag", "ratio"],
                "properties": {"bare": _bare_run, "dag": _dag_run, "ratio": _number},
            },
        },
    },
}
COSMOS_OVERHEAD = {
    "type": "object",
    "required": ["dag_id", "bare_commands", "scale", "scheduler", "modes", "fastest_mode"],
    "properties": {
        "dag_id": {"enum": ["greenery_daily", "greenery_hourly_snapshot"]},
        "bare_commands": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "scale": _number,
        "scheduler": {"type": "string"},
        "modes": {"type": "object", "minProperties": 1, "additionalProperties": _mode},
        "fastest_mode": {"type": "string"},
    },
}

_build = {
    "type": "object",
    "required": ["seconds", "elapsed_seconds", "incremental_models_seconds", "peak_rss_mb"],
    "properties": {"seconds": _number, "incremental_models_seconds": _number, "peak_rss_mb": _number},
}
SCALING = {
    "type": "object",
    "required": ["points"],
    "properties": {
        "points": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": [
                    "scale",
                    "raw_rows",
                    "load",
                    "full_build",
                    "incremental_daily_build",
                    "growth_from_first_scale",
                ],
                "properties": {
                    "scale": _number,
                    "load": {"type": "object", "required": ["seconds", "peak_rss_mb"]},
                    "full_build": _build,
                    "incremental_daily_build": _build,
                    "growth_from_first_scale": {
                        "type": "object",
                        "required": ["load", "full_build", "incremental_daily_build"],
                    },
                },
            },
        }
    },
}

LOAD_THROUGHPUT = {
    "type": "object",
    "required": ["scale", "rows", "seconds", "ratio_to_psql", "rows_per_second"],
    "properties": {
        "scale": _number,
        "rows": {"type": "integer", "minimum": 1},
        "seconds": {
            "type": "object",
            "required": ["loader_generate", "loader_csv", "psql_copy"],
            "additionalProperties": _stats,
        },
        "ratio_to_psql": {
            "type": "object",
            "required": ["loader_generate", "loader_csv"],
            "additionalProperties": _number,
        },
    },
}

MEMORY = {
    "type": "object",
    "required": ["dbt_task_peak_rss_mb", "airflow_run_peak_rss_mb", "bare_dbt_peak_rss_mb"],
    "properties": {
        "dbt_task_peak_rss_mb": {"type": "object", "additionalProperties": _nullable_number},
        "airflow_run_peak_rss_mb": {"type": "object", "additionalProperties": _nullable_number},
        "bare_dbt_peak_rss_mb": _nullable_number,
    },
}

_goal = {
    "type": "object",
    "required": ["description", "target", "measured", "met"],
    "properties": {
        "description": {"type": "string"},
        "target": _nullable_number,
        "measured": _nullable_number,
        "met": {"type": ["boolean", "null"]},
    },
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "greenery benchmark results",
    "type": "object",
    "required": [
        "schema_version",
        "size",
        "started_at",
        "duration_seconds",
        "machine",
        "versions",
        "git",
        "sections",
        "goals",
    ],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "size": {"type": "object", "required": ["name"], "properties": {"name": {"enum": ["full", "quick", "smoke"]}}},
        "started_at": {"type": "string", "format": "date-time"},
        "duration_seconds": _number,
        "machine": {
            "type": "object",
            "required": ["cpu_count", "cpu_model", "memory_gb", "os", "python", "load_average_at_start"],
        },
        "versions": {
            "type": "object",
            "required": ["apache-airflow", "astronomer-cosmos", "dbt-core", "dbt-postgres", "postgresql"],
            "additionalProperties": {"type": "string"},
        },
        "git": {"type": "object", "required": ["commit", "dirty"]},
        "sections": {
            "type": "object",
            "required": ["parse_time", "cosmos_overhead", "scaling", "load_throughput", "memory"],
            "properties": {
                "parse_time": _section(PARSE_TIME),
                "cosmos_overhead": _section(COSMOS_OVERHEAD),
                "scaling": _section(SCALING),
                "load_throughput": _section(LOAD_THROUGHPUT),
                "memory": _section(MEMORY),
            },
        },
        "goals": {"type": "object", "additionalProperties": _goal},
    },
}


def validate(document: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when ``document`` does not have the results' shape."""
    import jsonschema

    jsonschema.validate(document, SCHEMA, format_checker=jsonschema.FormatChecker())


def section_errors(document: dict[str, Any]) -> dict[str, str]:
    """Sections that failed (sections left out with ``--only`` are not failures)."""
    return {
        name: body["error"]
        for name, body in document["sections"].items()
        if "error" in body and not body.get("skipped")
    }
