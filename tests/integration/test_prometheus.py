"""A real Prometheus server (Debian's package, unpacked by `make test`) scrapes the deployment, and
the README's PromQL finds the token, request and batch series."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import requests

from demo.running import free_port
from tests.integration.conftest import csv_of, post_csv

pytestmark = pytest.mark.integration
PROMETHEUS = Path(__file__).resolve().parents[1] / "prometheus" / "root" / "usr" / "bin" / "prometheus"
MODEL = "datarobot-deployed-llm"
# The README's dashboard queries (README "Metrics"), each expected to return a series.
QUERIES = [
    "sum by (model) (rate(vllm_dropin_tokens_total[1m]))",
    "histogram_quantile(0.95, sum by (le, route) (rate(vllm_dropin_time_to_first_token_seconds_bucket[5m])))",
    "sum(rate(vllm_dropin_batch_rows_total[1m]))",
]


@pytest.fixture(scope="module")
def prometheus(main_env, tmp_path_factory):
    if not PROMETHEUS.exists():
        pytest.skip(
            "Prometheus is not installed (`make test` unpacks Debian's prometheus package into tests/prometheus)"
        )
    work = tmp_path_factory.mktemp("prometheus")
    target = main_env.url.removeprefix("http://")
    (work / "prometheus.yml").write_text(
        f"global:\n  scrape_interval: 1s\nscrape_configs:\n- job_name: deployment\n"
        f"  static_configs:\n  - targets: ['{target}']\n"
    )
    port = free_port()
    with (work / "prometheus.log").open("w") as log:
        server = subprocess.Popen(
            [str(PROMETHEUS), f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(30)


def query(prometheus: str, promql: str) -> list[dict]:
    try:
        answer = requests.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10).json()
    except requests.RequestException:
        return []  # not up yet
    return answer["data"]["result"] if answer.get("status") == "success" else []


def test_prometheus_scrapes_the_deployment_and_the_readme_queries_answer(main_env, prometheus):
    deadline = time.monotonic() + 120
    while not query(prometheus, 'up{job="deployment"} == 1'):
        assert time.monotonic() < deadline, "Prometheus never scraped the deployment"
        time.sleep(0.5)
    for _ in range(3):  # every queried series exists once these are counted
        assert post_csv(main_env, csv_of(["one", "two"])).status_code == 200
        streamed = requests.post(
            f"{main_env.url}/v1/completions",
            json={"model": MODEL, "prompt": "x", "max_tokens": 3, "stream": True},
            timeout=60,
        )
        assert streamed.status_code == 200
    for promql in QUERIES:  # rate() answers once two scrapes hold the series
        while not query(prometheus, promql):
            assert time.monotonic() < deadline, f"no series for {promql}"
            time.sleep(0.5)
    tokens = query(prometheus, 'vllm_dropin_tokens_total{kind="completion",route="/v1/completions"}')
    assert float(tokens[0]["value"][1]) >= 9
    assert query(prometheus, "vllm:num_requests_running")  # vLLM's own series, through the deployment
