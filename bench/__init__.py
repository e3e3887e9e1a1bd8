"""Benchmarks of the greenery package: DAG parse time, Cosmos overhead against bare dbt, scaling with data volume,
loader throughput and memory. ``python -m bench.run [--quick | --smoke]`` (``make bench``) writes
``bench/results/summary.json``, ``bench/RESULTS.md`` and its charts."""
