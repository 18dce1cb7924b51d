"""Write tests/xensim/spec.json: the part of the published XenAPI data model that the XenAPI simulator implements.

The source is ``xenapi.json`` from the xapi project (see ``../shared/xenapi/README.md`` for its commit and licence).
The output keeps, for each class the simulator models, every field that is not removed (name, type, qualifier,
default parsed into a JSON value, lifecycle state) and the messages the simulator answers (parameters with types,
result type, error names, lifecycle state), plus the values of every enum those use. The tests run from a clone
without ``../shared``, so the output is committed; ``tests/xensim/test_conformance.py`` regenerates it when the
source is there and checks that nothing changed.

Usage: ``python scripts/xenapi_spec.py [SOURCE_DIR] [--check]`` (SOURCE_DIR defaults to the first of
``$CRANE_XENAPI_SPEC_DIR``, ``<repo>/../shared/xenapi``, ``<repo>/../../shared/xenapi`` that exists).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "tests" / "xensim" / "spec.json"

#: The classes the simulator models.
CLASSES = ["session", "task", "pool", "host", "host_metrics", "network", "PIF", "VLAN", "SR", "VDI", "VBD", "VIF",
           "VM", "VM_metrics", "VM_guest_metrics"]

#: The messages the simulator implements besides the generated accessors (get_/set_/add_to_/remove_from_/add_/
#: remove_ of a field, get_record, get_all, get_all_records, get_by_uuid, get_by_name_label).
EXPLICIT = {
    "session": ["login_with_password", "logout"],
    "task": ["cancel", "destroy"],
    "pool": ["create_VLAN_from_PIF"],
    "host": ["compute_free_memory", "set_cpu_features", "reset_cpu_features"],
    "network": ["create", "destroy"],
    "VLAN": ["create", "destroy"],
    "VDI": ["create", "destroy", "resize"],
    "VBD": ["create", "destroy", "plug", "unplug"],
    "VIF": ["create", "destroy"],
    "VM": ["clone", "copy", "provision", "start", "start_on", "clean_shutdown", "hard_shutdown", "destroy",
           "set_memory_limits", "set_memory_static_range", "set_memory_dynamic_range", "set_memory",
           "set_VCPUs_max", "set_VCPUs_at_startup", "query_data_source"],
}

ACCESSOR = re.compile(r"^(get_record|get_all|get_all_records|get_by_uuid|get_by_name_label|"
                      r"get_\w+|set_\w+|add_to_\w+|remove_from_\w+|add_\w+|remove_\w+)$")

LIFECYCLE = {"Published_s": "published", "Prototyped_s": "prototyped", "Deprecated_s": "deprecated",
             "Removed_s": "removed", "Extended_s": "extended", "Changed_s": "changed"}


def source_dir(argv: list[str]) -> Path | None:
    """The directory holding xenapi.json and its README, or None when none of the candidates exists."""
    args = [a for a in argv if not a.startswith("--")]
    candidates = [Path(args[0])] if args else []
    if os.environ.get("CRANE_XENAPI_SPEC_DIR"):
        candidates.append(Path(os.environ["CRANE_XENAPI_SPEC_DIR"]))
    candidates += [REPO.parent / "shared" / "xenapi", REPO.parent.parent / "shared" / "xenapi"]
    return next((c for c in candidates if (c / "xenapi.json").is_file()), None)


def provenance(readme: str) -> dict[str, str]:
    commit = re.search(r"commit ([0-9a-f]{40})", readme)
    licence = re.search(r"(LGPL[^;)]*(?:;[^)]*)?)\)", readme)
    return {"source": "xapi-project/xen-api doc/data/xenapi.json",
            "commit": commit.group(1) if commit else "unknown",
            "licence": licence.group(1).strip() if licence else "see ../shared/xenapi/README.md",
            "generator": "scripts/xenapi_spec.py",
            "note": "The subset of the XenAPI data model the XenAPI simulator (tests/xensim) implements. "
                    "Generated; do not edit by hand."}


def parse_default(text: str, typ: str) -> Any:
    """A field default as written in xenapi.json ('{}', '"0:0"', 'false', '1.', 'Null', '{"a" -> "b"}') as JSON."""
    if typ.endswith(" ref"):
        return "OpaqueRef:NULL"
    if typ == "bool":
        return text == "true"
    if typ == "int":
        return int(text)
    if typ == "float":
        return float(text)
    if typ == "string":
        return json.loads(text)
    if typ.endswith(" set"):
        inner = text.strip()[1:-1].strip()
        elem = typ[:-4]
        return [parse_default(p.strip(), elem) for p in inner.split(",")] if inner else []
    if typ.endswith(" map"):
        inner = text.strip()[1:-1].strip()
        pairs = re.findall(r'"([^"]*)"\s*->\s*"([^"]*)"', inner)
        return dict(pairs)
    return text  # datetime, enum


def build(src: Path) -> dict[str, Any]:
    model = {c["name"]: c for c in json.loads((src / "xenapi.json").read_text())}
    enums: dict[str, list[str]] = {}
    for cls in model.values():
        for enum in cls["enums"]:
            enums[enum["name"]] = [v["name"] for v in enum["values"]]
    used: set[str] = set()
    classes: dict[str, Any] = {}
    for name in CLASSES:
        cls = model[name]
        fields = {}
        for f in cls["fields"]:
            state = LIFECYCLE[f["lifecycle"]["state"]]
            if state == "removed":
                continue
            entry = {"type": f["type"], "qualifier": f["qualifier"], "state": state}
            if "default" in f:
                entry["default"] = parse_default(f["default"], f["type"])
            fields[f["name"]] = entry
            used.update(re.findall(r"enum (\w+)", f["type"]))
        messages = {}
        for m in cls["messages"]:
            implemented = m["name"] in EXPLICIT.get(name, []) or (m["implicit"] and ACCESSOR.match(m["name"])
                                                                  and m["name"] not in ("create", "destroy")
                                                                  and m["lifecycle"]["state"] != "Removed_s")
            if not implemented:
                continue
            messages[m["name"]] = {"params": [[p["type"], p["name"]] for p in m["params"]],
                                   "result": m["result"][0], "errors": sorted(e["name"] for e in m["errors"]),
                                   "state": LIFECYCLE[m["lifecycle"]["state"]], "implicit": m["implicit"]}
            for p in m["params"]:
                used.update(re.findall(r"enum (\w+)", p["type"]))
        classes[name] = {"fields": fields, "messages": dict(sorted(messages.items()))}
    return {"provenance": provenance((src / "README.md").read_text()),
            "enums": {k: enums[k] for k in sorted(used)}, "classes": classes}


def render(spec: dict[str, Any]) -> str:
    return json.dumps(spec, indent=1, sort_keys=False) + "\n"


def main(argv: list[str]) -> int:
    src = source_dir(argv)
    if src is None:
        print("xenapi_spec: no xenapi.json found (give its directory, or set CRANE_XENAPI_SPEC_DIR)",
              file=sys.stderr)
        return 2
    text = render(build(src))
    if "--check" in argv:
        same = OUTPUT.is_file() and OUTPUT.read_text() == text
        print(f"{OUTPUT.relative_to(REPO)} {'is up to date' if same else 'differs: run scripts/xenapi_spec.py'}")
        return 0 if same else 1
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(REPO)} from {src / 'xenapi.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
