"""Readers for the deployment files at the repository's root, for the tests that hold them to the app.

YAML is read with duplicate keys refused (Compose merges files by service name, and a repeated key
would silently replace the first), and the Dockerfile is read the way Docker reads it: continuation
lines joined, comments dropped, build arguments of the global scope substituted into `FROM`.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_OVERRIDE = ROOT / "docker-compose.override.yml"
LIBRECHAT_EXAMPLE = ROOT / "librechat.example.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
KUBERNETES = ROOT / "deploy" / "kubernetes"
# What the README and the documentation site tell an admin: the old README's facts, now on their pages.
# The pages about the code itself (its layout, its benchmarks, its tests) are not among them.
_ABOUT_THE_CODE = {"architecture.md", "benchmarks.md", "development.md"}
DEPLOY_DOCS = (
    ROOT / "README.md",
    *sorted(path for path in (ROOT / "docs").glob("*.md") if path.name not in _ABOUT_THE_CODE),
)

PROXY_SERVICE = "portkey-user-proxy"


class _UniqueKeyLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def deploy_docs_text() -> str:
    return "\n".join(path.read_text() for path in DEPLOY_DOCS)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_UniqueKeyLoader)


def load_yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.load_all(path.read_text(), Loader=_UniqueKeyLoader) if doc is not None]


def pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


# --- Dockerfile -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ...
    arguments: str
    stage: int  # 0 for global ARGs before the first FROM, then 1, 2, ...

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form instruction; fails for the shell form."""
        value = json.loads(self.arguments)
        assert isinstance(value, list), f"{self.keyword} is not in exec form: {self.arguments}"
        return [str(part) for part in value]


def dockerfile_instructions(text: str | None = None) -> list[Instruction]:
    text = DOCKERFILE.read_text() if text is None else text
    instructions: list[Instruction] = []
    global_args: dict[str, str] = {}
    stage = 0
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # Docker drops comments and blank lines, even inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical = (pending + stripped).strip()
        pending = ""
        keyword, _, arguments = logical.partition(" ")
        keyword = keyword.upper()
        arguments = arguments.strip()
        if keyword == "FROM":
            stage += 1
            arguments = _substitute(arguments, global_args)
        elif keyword == "ARG" and stage == 0:
            name, _, default = arguments.partition("=")
            global_args[name] = default
        instructions.append(Instruction(keyword, arguments, stage))
    return instructions


def _substitute(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), value)


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the final stage, found {len(found)}"
    return found[0]


def env_pairs(instruction: Instruction) -> dict[str, str]:
    """`ENV A=1 B=2` as a dict (the key=value form; the legacy `ENV A 1` is not used here)."""
    pairs = {}
    for word in shlex.split(instruction.arguments):
        name, equals, value = word.partition("=")
        assert equals, f"ENV uses the key=value form: {instruction.arguments}"
        pairs[name] = value
    return pairs


def healthcheck_command(instruction: Instruction) -> list[str]:
    """The exec-form command of `HEALTHCHECK [--options] CMD [...]`."""
    _, marker, command = instruction.arguments.partition("CMD ")
    assert marker, f"HEALTHCHECK has no CMD: {instruction.arguments}"
    return Instruction("CMD", command.strip(), instruction.stage).exec_form()


def served_port() -> int:
    """The port the image's default command serves on."""
    command = only(final_stage(dockerfile_instructions()), "CMD").exec_form()
    return int(command[command.index("--port") + 1])


# --- docker-compose.override.yml and librechat.example.yaml -------------------------------------------


def compose() -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(COMPOSE_OVERRIDE.read_text())
    return document


def librechat_example() -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(LIBRECHAT_EXAMPLE.read_text())
    return document


def portkey_endpoint(config: dict[str, Any]) -> dict[str, Any]:
    endpoints = [e for e in config["endpoints"]["custom"] if e.get("name") == "Portkey"]
    assert len(endpoints) == 1, "librechat.example.yaml needs exactly one custom endpoint named Portkey"
    endpoint: dict[str, Any] = endpoints[0]
    return endpoint


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's `environment`, in either of Compose's two spellings; None for a variable given no
    value, which Compose takes from the shell or the project's .env when set there, and leaves out otherwise."""
    value = service.get("environment", {})
    if isinstance(value, list):
        items = [str(item).partition("=") for item in value]
        return {name: (text if equals else None) for name, equals, text in items}
    return {str(k): (None if v is None else str(v)) for k, v in value.items()}


def published_image() -> str:
    """ghcr.io/<owner>/<name>, the owner and name taken from pyproject's Source URL."""
    source = urlsplit(pyproject()["project"]["urls"]["Source"])
    assert source.hostname == "github.com"
    owner, name = source.path.strip("/").split("/")
    return f"ghcr.io/{owner.lower()}/{name}"


def interpolated_variables(text: str) -> set[str]:
    """The `${VAR}` names a file asks its reader (Compose, LibreChat) to fill in."""
    return set(re.findall(r"\$\{(\w+)(?::?-[^}]*)?\}", text))


def host_and_port(url: str) -> tuple[str | None, int | None]:
    parts = urlsplit(url)
    return parts.hostname, parts.port


def uncommented_block(text: str, marker: str) -> str:
    """The commented-out YAML after the comment line starting with `marker`, with its `#` removed."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(marker))
    block = [line[1:] for line in lines[start + 1 :] if re.match(r"#\s{2,}\S", line)]
    return "\n".join(block)


_COMMENTED_YAML = re.compile(r"^(\s*)# (\s*(?:(?:- )?[A-Za-z_]+:(?: .*)?|- \S+))$")


def with_variant(text: str, marker: str) -> str:
    """`text` with the commented YAML lines right after each comment containing `marker` uncommented,
    in place and at their own indentation: the variant a reader gets by following that comment."""
    variant = []
    state = "outside"  # then "prose" (the comment's own lines), then "yaml" (the lines it offers)
    for line in text.splitlines():
        commented_yaml = _COMMENTED_YAML.match(line)
        if line.strip().startswith("#") and marker in line and state == "outside":
            state = "prose"
        elif state != "outside" and commented_yaml:
            state = "yaml"
            line = commented_yaml.group(1) + commented_yaml.group(2)
        elif state == "yaml" or not line.strip().startswith("#"):
            state = "outside"
        variant.append(line)
    return "\n".join(variant) + "\n"


# --- deploy/kubernetes ----------------------------------------------------------------------------


def kubernetes_objects() -> dict[tuple[str, str], dict[str, Any]]:
    """Every object in deploy/kubernetes by (kind, name), the kustomization and the example Secret included."""
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in load_yaml_documents(path):
            name = document.get("metadata", {}).get("name", path.name)
            key = (document["kind"], name)
            assert key not in objects, f"{key} is defined twice"
            objects[key] = {**document, "_file": path.name}
    return objects


def of_kind(objects: dict[tuple[str, str], dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [obj for (k, _), obj in objects.items() if k == kind]
    assert len(found) == 1, f"expected one {kind} in deploy/kubernetes, found {len(found)}"
    return found[0]
