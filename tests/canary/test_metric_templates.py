"""Reading a MetricTemplate (the one reading the loader and the worker share), and the README's
examples of each metrics provider."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from canary import metric_templates, providers

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_examples() -> list[dict[str, Any]]:
    """The documents of the first YAML block under "### Metrics providers"."""
    section = README.read_text().split("### Metrics providers", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block is not None
    return [doc for doc in yaml.safe_load_all(block.group(1)) if doc]


def test_a_template_without_provider_asks_prometheus() -> None:
    template, problems = metric_templates.read_template({"spec": {"query": "up"}})

    assert problems == []
    assert template == metric_templates.MetricTemplate(
        query="up", provider=metric_templates.TemplateProvider(type="prometheus")
    )


def test_every_problem_of_a_template_is_reported_at_once() -> None:
    document = {
        "spec": {
            "provider": {"type": "datadog", "address": "ftp://x", "insecureSkipVerify": 1},
        }
    }

    template, problems = metric_templates.read_template(document)

    assert template is None
    assert problems == [
        "spec.query is required",
        "spec.provider.insecureSkipVerify: must be true or false",
        "spec.provider.address: must be an http(s) URL (got 'ftp://x')",
        "spec.provider.secretRef: required with provider 'datadog' (a Secret with "
        "datadog_api_key and datadog_application_key)",
    ]


@pytest.mark.parametrize("document", [None, [], {"spec": "query: up"}])
def test_what_is_not_a_template_is_one_problem(document: Any) -> None:
    assert metric_templates.read_template(document) == (None, ["spec: must be a mapping"])


def test_the_readme_has_a_valid_example_of_each_provider_with_its_secret() -> None:
    documents = readme_examples()
    secrets = {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == "Secret"}
    seen = set()
    for doc in documents:
        if doc["kind"] != "MetricTemplate":
            continue
        template, problems = metric_templates.read_template(doc)
        assert template is not None, problems
        seen.add(template.provider.type)
        secret = secrets[str(template.provider.secret_ref)]
        assert secret["metadata"]["namespace"] == doc["metadata"]["namespace"]
        keys = providers.METRICS_PROVIDERS[template.provider.type].secret_keys
        assert set(secret["stringData"]) <= set(re.findall(r"\w+", keys)) - {"and", "or"}
    assert seen == set(providers.METRICS_PROVIDERS)
