"""librechat.example.yaml is a configuration LibreChat itself accepts, and it points at the proxy.

LibreChat validates librechat.yaml with the zod `configSchema` of its npm package
`librechat-data-provider` (`configSchema.strict()`, after reading the file with js-yaml). The tests
run that same schema through node, from a copy of the package installed once into a cache folder.
Custom endpoints are also held to the full `endpointSchema`: the config schema lets each of their
fields be missing, but LibreChat skips an endpoint without a name, apiKey, baseURL or models. The
Anthropic endpoint's schema is held strict too, so a misspelt key is an issue, not silently dropped.
The Anthropic section of docs/options.md is checked the same way.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from portkey_user_proxy.settings import Settings
from tests.support.deploy_files import LIBRECHAT_EXAMPLE, librechat_example, portkey_endpoint

DOCS = Path(__file__).resolve().parents[2] / "docs"
DEPLOY_PAGE = DOCS / "deploy-compose.md"
OPTIONS_PAGE = DOCS / "options.md"

LIBRECHAT_DATA_PROVIDER_VERSION = os.environ.get("LIBRECHAT_DATA_PROVIDER_VERSION", "0.8.524")

_VALIDATE = r"""
const fs = require("node:fs");
const path = require("node:path");
const { createRequire } = require("node:module");

const request = JSON.parse(fs.readFileSync(0, "utf8"));
const provider = path.join(request.prefix, "node_modules", "librechat-data-provider", "package.json");
const fromProvider = createRequire(provider);
const { configSchema, endpointSchema, Constants } = fromProvider("librechat-data-provider");
const yaml = fromProvider("js-yaml");

const unwrap = (schema) => {
  while (schema?._def?.innerType || schema?._def?.schema) schema = schema._def.innerType || schema._def.schema;
  return schema;
};
const anthropicSchema = unwrap(unwrap(configSchema.shape.endpoints).shape.anthropic);
const describe = (prefix, error) =>
  error.issues.map((issue) => `${[...prefix, ...issue.path].join(".")}: ${issue.message}`);
const results = request.documents.map((document) => {
  const config = "yaml" in document ? yaml.load(document.yaml) : document.config;
  const parsed = configSchema.strict().safeParse(config);
  const issues = parsed.success ? [] : describe([], parsed.error);
  (config?.endpoints?.custom ?? []).forEach((endpoint, index) => {
    const checked = endpointSchema.strict().safeParse(endpoint);
    if (!checked.success) issues.push(...describe(["endpoints", "custom", index], checked.error));
  });
  if (config?.endpoints?.anthropic) {
    const checked = anthropicSchema.strict().safeParse(config.endpoints.anthropic);
    if (!checked.success) issues.push(...describe(["endpoints", "anthropic"], checked.error));
  }
  return issues;
});
process.stdout.write(JSON.stringify({ configVersion: Constants.CONFIG_VERSION, results }));
"""

Validate = Callable[[list[dict[str, Any]]], tuple[str, list[list[str]]]]


def _cache_folder() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "portkey-user-proxy" / "librechat-schema"


def _installed_version(prefix: Path) -> str | None:
    manifest = prefix / "node_modules" / "librechat-data-provider" / "package.json"
    if not manifest.exists():
        return None
    version: str = json.loads(manifest.read_text())["version"]
    return version


@pytest.fixture(scope="module")
def validate() -> Validate:
    """Validates documents ({"yaml": text} or {"config": object}) as LibreChat does; returns each one's issues."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run LibreChat's config schema (npm package librechat-data-provider)")
    prefix = _cache_folder()
    if _installed_version(prefix) != LIBRECHAT_DATA_PROVIDER_VERSION:
        prefix.mkdir(parents=True, exist_ok=True)
        package = f"librechat-data-provider@{LIBRECHAT_DATA_PROVIDER_VERSION}"
        installed = subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error", package],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if installed.returncode != 0:
            pytest.fail(f"npm could not install {package} into {prefix}:\n{installed.stderr}")

    def run(documents: list[dict[str, Any]]) -> tuple[str, list[list[str]]]:
        request = json.dumps({"prefix": str(prefix), "documents": documents})
        done = subprocess.run(
            [node, "-e", _VALIDATE], input=request, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        return answer["configVersion"], answer["results"]

    return run


def test_librechat_accepts_the_example(validate: Validate):
    _, (issues,) = validate([{"yaml": LIBRECHAT_EXAMPLE.read_text()}])
    assert issues == []


def test_example_is_written_for_a_config_version_librechat_knows(validate: Validate):
    current, _ = validate([])
    version = str(librechat_example()["version"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)

    def parts(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split("."))

    assert parts(version) <= parts(current), f"version {version} is newer than LibreChat's {current}"


def _without(path: str) -> Callable[[dict[str, Any]], None]:
    *parents, leaf = path.split(".")

    def mutate(config: dict[str, Any]) -> None:
        target: Any = config
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        del target[leaf]

    return mutate


def _portkey(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    return lambda config: change(portkey_endpoint(config))


BROKEN = {
    "no version": (_without("version"), "version"),
    "misspelled top-level key": (lambda c: c.update(endpoint=c.pop("endpoints")), "Unrecognized key"),
    "no baseURL": (_portkey(lambda e: e.pop("baseURL")), "endpoints.custom.0.baseURL"),
    "no apiKey": (_portkey(lambda e: e.pop("apiKey")), "endpoints.custom.0.apiKey"),
    "empty model list": (_portkey(lambda e: e["models"].update(default=[])), "endpoints.custom.0.models.default"),
    "titleConvo as text": (_portkey(lambda e: e.update(titleConvo="yes")), "endpoints.custom.0.titleConvo"),
    "header value a number": (_portkey(lambda e: e["headers"].update({"x-portkey-retry": 3})), "headers"),
    "misspelled endpoint key": (_portkey(lambda e: e.update(baseUrl=e.pop("baseURL"))), "baseUrl"),
}


def test_librechat_rejects_broken_copies_of_the_example(validate: Validate):
    documents = []
    for change, _ in BROKEN.values():
        config = copy.deepcopy(librechat_example())
        change(config)
        documents.append({"config": config})
    _, results = validate(documents)
    for (name, (_, expected)), issues in zip(BROKEN.items(), results, strict=True):
        assert issues, f"a copy with {name} was accepted"
        assert any(expected in issue for issue in issues), f"{name}: {issues}"


def test_portkey_endpoint_sends_the_portkey_key_and_the_user_id():
    endpoint = portkey_endpoint(librechat_example())
    headers = endpoint["headers"]
    assert headers["x-portkey-api-key"] == "${PORTKEY_API_KEY}"
    user_id_header = Settings.model_fields["user_id_header"].default
    assert headers[user_id_header] == "{{LIBRECHAT_USER_ID}}", "the header the proxy reads by default"
    assert "x-portkey-metadata" not in headers or "_user" not in headers["x-portkey-metadata"]


def test_routing_alternatives_are_offered_commented_out():
    text = LIBRECHAT_EXAMPLE.read_text()
    for header in ("x-portkey-virtual-key", "x-portkey-provider", "x-portkey-config", "x-portkey-metadata"):
        assert re.search(rf"^\s*#\s*{header}:\s*\S", text, re.MULTILINE), f"no commented {header}"


def test_commented_metadata_is_a_json_object_portkey_accepts():
    match = re.search(r"#\s*x-portkey-metadata:\s*'([^']+)'", LIBRECHAT_EXAMPLE.read_text())
    assert match
    metadata = json.loads(match.group(1))
    assert isinstance(metadata, dict)
    assert all(isinstance(value, str) and len(value) <= 128 for value in metadata.values())
    assert "_user" not in metadata, "the proxy sets _user itself"


def test_models_are_listed_and_titles_use_one_of_them():
    endpoint = portkey_endpoint(librechat_example())
    assert endpoint["models"]["fetch"] is False
    assert endpoint["models"]["default"]
    assert endpoint["titleConvo"] is True
    assert endpoint["titleModel"] in endpoint["models"]["default"]
    assert endpoint["modelDisplayLabel"]


def _readme_yaml_blocks() -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", DEPLOY_PAGE.read_text(), re.MULTILINE | re.DOTALL)


def test_the_deploy_page_shows_the_examples_endpoints_word_for_word():
    (shown,) = [block for block in _readme_yaml_blocks() if block.startswith("endpoints:\n  custom:\n")]
    example = LIBRECHAT_EXAMPLE.read_text()
    # Comments included: the deploy page and the file an admin copies say the same about each header.
    assert shown == example[example.index("\nendpoints:\n") + 1 :]


def test_the_example_says_which_headers_are_required_and_which_optional():
    text = LIBRECHAT_EXAMPLE.read_text()
    headers = text.split("      headers:\n", 1)[1].split("      models:", 1)[0]
    remarks = re.findall(r"^\s+# (Required|Recommended|Optional)\b", headers, re.MULTILINE)
    assert remarks == ["Required", "Required", "Recommended", "Optional", "Optional"]
    recommended = headers.split("# Recommended", 1)[1].split("x-librechat-user-id", 1)[0]
    assert 'dropParams: ["user"]' in recommended, "says when the body carries no `user`"


def _readme_anthropic_section() -> str:
    return OPTIONS_PAGE.read_text().split("## LibreChat's Anthropic endpoint", 1)[1].split("\n## ", 1)[0]


def _with_readme_anthropic_endpoint() -> dict[str, Any]:
    block = _readme_anthropic_section().split("```yaml\n", 1)[1].split("```", 1)[0]
    config = copy.deepcopy(librechat_example())
    config["endpoints"].update(yaml.safe_load(block)["endpoints"])
    return config


def test_librechat_accepts_the_readmes_anthropic_endpoint(validate: Validate):
    config = _with_readme_anthropic_endpoint()
    assert config["endpoints"]["anthropic"]["headers"]["x-portkey-provider"]
    misspelt = copy.deepcopy(config)
    misspelt["endpoints"]["anthropic"]["header"] = misspelt["endpoints"]["anthropic"].pop("headers")

    _, (issues, misspelt_issues) = validate([{"config": config}, {"config": misspelt}])

    assert issues == []
    assert any("endpoints.anthropic" in issue and "header" in issue for issue in misspelt_issues), misspelt_issues


def test_the_readmes_anthropic_reverse_proxy_is_the_proxy_without_v1():
    match = re.search(r"^ANTHROPIC_REVERSE_PROXY=(\S+)", _readme_anthropic_section(), re.MULTILINE)
    assert match, "the section names ANTHROPIC_REVERSE_PROXY"
    # Anthropic's SDK appends /v1/messages; the proxy forwards the path unchanged to Portkey's /v1/messages.
    assert match.group(1) + "/v1" == portkey_endpoint(librechat_example())["baseURL"]
