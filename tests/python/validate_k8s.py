"""Validates Kubernetes objects offline, as strictly as `kubectl apply --validate=strict`.

    validate_k8s.py --kubernetes 1.33.0 [--crd CRD.yaml ...] FILE.yaml ...

Objects of a kind defined by a given CRD are checked against that CRD's
openAPIV3Schema (unknown fields are errors unless the schema preserves them);
every other object against the Kubernetes schemas that `kubernetes-validate`
ships (strict). An object of a kind neither knows is an error. Prints one line
per object, every error with its path, and exits 1 if any failed.
"""

import argparse
import copy
import sys

import jsonschema
import kubernetes_validate
import yaml


def strict(schema):
    """The schema with additionalProperties false wherever properties are
    listed and nothing else says what may be added (the API server prunes or,
    with strict validation, refuses such fields)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def load_crds(paths):
    schemas = {}
    for path in paths:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for v in spec["versions"]:
                    schema = copy.deepcopy(v["schema"]["openAPIV3Schema"])
                    # metadata is the API server's ObjectMeta, not the CRD's to define.
                    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
                    key = (f'{spec["group"]}/{v["name"]}', spec["names"]["kind"])
                    schemas[key] = strict(schema)
    return schemas


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kubernetes", default="1.33.0")
    ap.add_argument("--crd", action="append", default=[])
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    crds = load_crds(args.crd)
    failed = 0
    for path in args.files:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        if not docs:
            print(f"ERROR {path}: no objects")
            failed += 1
        for doc in docs:
            kind, api = doc.get("kind"), doc.get("apiVersion")
            name = f'{path}: {kind} {doc.get("metadata", {}).get("name")}'
            if not doc.get("metadata", {}).get("name"):
                print(f"ERROR {name}: metadata.name is required")
                failed += 1
                continue
            if (api, kind) in crds:
                v = jsonschema.Draft7Validator(crds[(api, kind)])
                errors = sorted(v.iter_errors(doc), key=lambda e: list(e.path))
                for e in errors:
                    at = ".".join(str(p) for p in e.path) or "(top)"
                    print(f"ERROR {name}: {at}: {e.message}")
                failed += bool(errors)
                if not errors:
                    print(f"OK {name} (CRD schema {api})")
                continue
            try:
                version = kubernetes_validate.validate(doc, args.kubernetes, strict=True)
                print(f"OK {name} (Kubernetes {version}, strict)")
            except kubernetes_validate.ValidationError as e:
                at = ".".join(str(p) for p in e.path) or "(top)"
                print(f"ERROR {name}: {at}: {e.message}")
                failed += 1
            except kubernetes_validate.SchemaNotFoundError:
                print(f"ERROR {name}: no schema for {api} {kind} (pass its CRD with --crd)")
                failed += 1
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
