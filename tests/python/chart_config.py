"""Reads a rendered graylens chart (helm template output) and prints the
graylens.toml of its ConfigMap, after checking that every file the config
names (token_file, cert_file, key_file, client_ca_file, --config) is mounted
into the graylens container from a volume that holds it.

    chart_config.py RENDERED.yaml
"""

import re
import sys

import yaml


def main():
    with open(sys.argv[1]) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for claim in sts["spec"].get("volumeClaimTemplates", []):
        volumes[claim["metadata"]["name"]] = {"name": claim["metadata"]["name"], "claim": claim}
    problems = []
    mounts = {}
    for m in container["volumeMounts"]:
        if m["name"] not in volumes:
            problems.append(f'{m["mountPath"]}: no volume named {m["name"]}')
        else:
            mounts[m["mountPath"]] = volumes[m["name"]]
    toml = cm["data"]["graylens.toml"]
    files = re.findall(r'^\s*\w+_file\s*=\s*"([^"]+)"', toml, re.M)
    args = container["args"]
    files.append(args[args.index("--config") + 1])
    for path in files:
        directory, name = path.rsplit("/", 1)
        vol = mounts.get(directory)
        if vol is None:
            problems.append(f"{path}: no volume mounted at {directory}")
        elif "secret" in vol:
            items = [i["path"] for i in vol["secret"].get("items", [])]
            if name not in items:
                problems.append(f"{path}: secret {vol['secret']['secretName']} mounts {items}")
        elif "configMap" in vol:
            if vol["configMap"]["name"] != cm["metadata"]["name"] or name not in cm["data"]:
                problems.append(f"{path}: not in ConfigMap {cm['metadata']['name']}")
        else:
            problems.append(f"{path}: volume {vol['name']} holds no such file")
    if problems:
        sys.exit("\n".join(problems))
    sys.stdout.write(toml)


if __name__ == "__main__":
    main()
