# Image for Astro CLI (`astro dev start`) and Docker users.
# Astro Runtime 3.3 is Apache Airflow 3.3, the line requirements.txt pins (tests/test_docker_image.py checks it).
# The runtime image's ONBUILD steps copy this project to /usr/local/airflow and install packages.txt and
# requirements.txt, so Airflow, Cosmos and dbt share one Python environment as they do in `make up`.
# plugins/ lands in Airflow's plugins folder there (/usr/local/airflow/plugins): it serves the dbt docs and the dbt
# health page behind the login; Cosmos' own docs plugin stays off ([cosmos] dbt_docs_projects unset), as it serves
# them to anyone.
# The dbt health page's chart libraries (Vega-Lite), from the npm registry at the versions package-lock.json pins, as
# `make chart-libs` installs them; only node_modules reaches the image, which has no Node.js of its own.
FROM node:20-bookworm-slim AS chart-libs
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

FROM astrocrpublic.azurecr.io/runtime:3.3-2

# The ONBUILD step installs requirements.txt (the direct pins); this puts every package at the version the lock
# pins, hashes checked, the set `make up` and CI install (requirements.lock, written by `make lock`). The lock is
# complete, so pip resolves nothing (--no-deps); the image's own pip needs no extra tool.
RUN pip install --quiet --no-cache-dir --no-deps --require-hashes -r requirements.lock

# Where include/settings.py looks for them (NODE_MODULES_DIR, beside include/); the plugin serves them from there.
COPY --from=chart-libs /build/node_modules /usr/local/airflow/node_modules

ENV PYTHONPATH=/usr/local/airflow \
    GREENERY_DBT_PROJECT_DIR=/usr/local/airflow/dbt/greenery \
    GREENERY_DBT_DOCS_DIR=/usr/local/airflow/dbt-docs \
    AIRFLOW__COSMOS__ENABLE_TELEMETRY=False \
    AIRFLOW__COSMOS__ENABLE_DATASET_AIRFLOW3_URI=True \
    AIRFLOW__TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP=250

# The DAGs render from dbt's manifest: parse once at build time instead of running `dbt ls` on every DAG parse.
RUN cd dbt/greenery && dbt parse --quiet --profiles-dir . --project-dir . --target-path target/airflow
