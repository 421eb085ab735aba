#!/usr/bin/env python3
"""Checks openapi.yaml itself, then real responses against it.

  validate-openapi.py SPEC [CAPTURE_DIR]

Each *.json file in CAPTURE_DIR is one exchange captured by the integration tests:
  {"method": "GET", "path": "/v1/assets?limit=2" (as sent, percent-encoded), "status": 200,
   "headers": {"content-type": "application/json", ...} (lower-case names), "body": "<text>"}
A response fails when its route or status is not documented, a required header is missing or does not
match its schema, its content type is not documented, or its JSON body does not validate against the
documented schema. Prints one line per problem; exits 1 if there is any.
Needs openapi-spec-validator and jsonschema (scripts/setup.sh installs them into .venv).
"""
import json
import pathlib
import re
import sys

import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_URI = "urn:afterimage:openapi"


def pointer_escape(part):
    return str(part).replace("~", "~0").replace("/", "~1")


def resolve(spec, node, pointer):
    """Follows a local $ref (one level at a time) and returns (object, its JSON pointer)."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"only local $ref is supported, got {ref}")
        pointer = ref[1:]
        node = spec
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node, pointer


def route_for(spec, path):
    bare = path.split("?", 1)[0]
    for template in spec["paths"]:
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, bare):
            return template
    return None


def validator_for(registry, pointer):
    return Draft202012Validator({"$ref": SPEC_URI + "#" + pointer}, registry=registry)


def check_exchange(spec, registry, exchange):
    problems = []
    method = exchange["method"].lower()
    status = str(exchange["status"])
    headers = {k.lower(): v for k, v in exchange.get("headers", {}).items()}
    template = route_for(spec, exchange["path"])
    if template is None:
        return [f"route {exchange['path']} is not in the spec"]
    operation = spec["paths"][template].get("get" if method == "head" else method)
    if operation is None:
        return [f"{method.upper()} {template} is not in the spec"]
    where = f"{method.upper()} {template} -> {status}"
    responses = operation["responses"]
    key = status if status in responses else ("default" if "default" in responses else None)
    if key is None:
        return [f"{where}: status not documented (documented: {', '.join(responses)})"]
    base = "/paths/" + pointer_escape(template) + "/" + method + "/responses/" + key
    response, pointer = resolve(spec, responses[key], base)
    for name, header in (response.get("headers") or {}).items():
        header, header_pointer = resolve(spec, header, pointer + "/headers/" + pointer_escape(name))
        value = headers.get(name.lower())
        if value is None:
            if header.get("required"):
                problems.append(f"{where}: required header {name} missing")
            continue
        schema = header.get("schema", {})
        instance = value
        if schema.get("type") == "integer":
            try:
                instance = int(value)
            except ValueError:
                problems.append(f"{where}: header {name} is not an integer: {value!r}")
                continue
        for error in validator_for(registry, header_pointer + "/schema").iter_errors(instance):
            problems.append(f"{where}: header {name}: {error.message}")
    content = response.get("content")
    body = exchange.get("body", "")
    if not content:
        return problems
    media = headers.get("content-type", "").split(";")[0].strip()
    if media not in content:
        return problems + [f"{where}: content type {media!r} not documented ({', '.join(content)})"]
    if media == "application/json" and method != "head":
        try:
            document = json.loads(body)
        except json.JSONDecodeError as error:
            return problems + [f"{where}: body is not JSON: {error}"]
        schema_pointer = pointer + "/content/" + pointer_escape(media) + "/schema"
        for error in validator_for(registry, schema_pointer).iter_errors(document):
            location = "/".join(str(p) for p in error.absolute_path) or "(root)"
            problems.append(f"{where}: body at {location}: {error.message}")
    return problems


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    spec = yaml.safe_load(pathlib.Path(sys.argv[1]).read_text())
    validate_spec(spec)
    registry = Registry().with_resource(SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012))
    problems = []
    checked = 0
    if len(sys.argv) == 3:
        for path in sorted(pathlib.Path(sys.argv[2]).glob("*.json")):
            exchange = json.loads(path.read_text())
            checked += 1
            problems += [f"{path.name}: {p}" for p in check_exchange(spec, registry, exchange)]
    for problem in problems:
        print(problem)
    print(f"spec valid; {checked} responses checked; {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
