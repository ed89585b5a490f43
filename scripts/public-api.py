#!/usr/bin/env python3
"""The public API of one crate, one item a line, from rustdoc's JSON output.

    public-api.py CRATE_JSON > api/CRATE.txt

Walks the crate from its root through every public module and re-export,
and prints each reachable item with its path and kind: functions and
methods with their signatures, struct fields, enum variants, trait items,
constants with their types, and the traits each public type implements.
The lines are sorted, so a diff of two snapshots is the API change.
scripts/public-api runs it for every publishable crate and compares with
the committed snapshots in api/.
"""
import json
import sys


def main(path):
    doc = json.load(open(path))
    index = doc["index"]
    paths = doc["paths"]
    lines = set()
    seen = set()

    def name_of(item_id):
        p = paths.get(str(item_id))
        return "::".join(p["path"]) if p else None

    def ty(t):
        """A type, written as Rust writes it (enough to see a change)."""
        if t is None:
            return "()"
        if not isinstance(t, dict):
            return str(t)
        (k, v), = t.items()
        if k == "primitive":
            return v
        if k == "generic":
            return v
        if k == "resolved_path":
            base = v.get("path") or name_of(v.get("id")) or "?"
            return base + args(v.get("args"))
        if k == "borrowed_ref":
            m = "mut " if v.get("is_mutable") else ""
            lt = (v.get("lifetime") + " ") if v.get("lifetime") else ""
            return "&" + lt + m + ty(v["type"])
        if k == "raw_pointer":
            return ("*mut " if v.get("is_mutable") else "*const ") + ty(v["type"])
        if k == "slice":
            return "[" + ty(v) + "]"
        if k == "array":
            return "[" + ty(v["type"]) + "; " + str(v["len"]) + "]"
        if k == "tuple":
            return "(" + ", ".join(ty(x) for x in v) + ")"
        if k in ("impl_trait", "dyn_trait"):
            bounds = v if k == "impl_trait" else v.get("traits", [])
            parts = []
            for b in bounds:
                if isinstance(b, dict) and "trait_bound" in b:
                    parts.append(ty({"resolved_path": b["trait_bound"]["trait"]}))
                elif isinstance(b, dict) and "trait" in b:
                    parts.append(ty({"resolved_path": b["trait"]}))
                elif isinstance(b, dict) and "outlives" in b:
                    parts.append(b["outlives"])
            return ("impl " if k == "impl_trait" else "dyn ") + " + ".join(parts)
        if k == "qualified_path":
            return "<" + ty(v["self_type"]) + ">::" + v["name"]
        if k == "function_pointer":
            return "fn(..)"
        return json.dumps(t, sort_keys=True)

    def args(a):
        if not a:
            return ""
        if "angle_bracketed" in a:
            out = []
            for x in a["angle_bracketed"].get("args", []):
                if "type" in x:
                    out.append(ty(x["type"]))
                elif "lifetime" in x:
                    out.append(x["lifetime"])
                elif "const" in x:
                    out.append(str(x["const"].get("expr")))
            for c in a["angle_bracketed"].get("constraints", []):
                binding = c.get("binding", {})
                if "equality" in binding:
                    out.append(c["name"] + " = " + ty(binding["equality"].get("type")))
            return "<" + ", ".join(out) + ">" if out else ""
        if "parenthesized" in a:
            p = a["parenthesized"]
            return "(" + ", ".join(ty(x) for x in p.get("inputs", [])) + ") -> " + ty(p.get("output"))
        return ""

    def sig(item):
        f = item["inner"]["function"]
        s = f["sig"]
        header = f.get("header", {})
        prefix = "async " if header.get("is_async") else ""
        if header.get("is_unsafe"):
            prefix += "unsafe "
        generics = [g["name"] for g in f.get("generics", {}).get("params", [])
                    if "type" in g.get("kind", {})]
        g = "<" + ", ".join(generics) + ">" if generics else ""
        inputs = ", ".join(n + ": " + ty(t) for n, t in s["inputs"])
        out = s.get("output")
        return prefix + "fn" + g + "(" + inputs + ")" + (" -> " + ty(out) if out else "")

    def public(item):
        return item.get("visibility") == "public"

    def walk(item_id, prefix, via_use=False):
        item = index.get(str(item_id))
        if item is None:
            # From another crate: a re-export of a dependency's item.
            n = name_of(item_id)
            if n:
                lines.add(f"{prefix} = re-export of {n}")
            return
        if not public(item) and not via_use:
            return
        inner = item["inner"]
        (kind, body), = inner.items()
        key = (item_id, prefix)
        if key in seen:
            return
        seen.add(key)
        if kind == "module":
            lines.add(f"mod {prefix}")
            for child in body["items"]:
                c = index.get(str(child))
                if c is None:
                    continue
                if "use" in c["inner"]:
                    u = c["inner"]["use"]
                    if not public(c):
                        continue
                    if u.get("is_glob"):
                        target = index.get(str(u.get("id")))
                        if target and "module" in target["inner"]:
                            for g in target["inner"]["module"]["items"]:
                                gi = index.get(str(g))
                                if gi and public(gi) and gi.get("name"):
                                    walk(g, f"{prefix}::{gi['name']}")
                        continue
                    if u.get("id") is None:
                        lines.add(f"{prefix}::{u['name']} = re-export of {u['source']}")
                        continue
                    walk(u["id"], f"{prefix}::{u['name']}", via_use=True)
                elif c.get("name"):
                    walk(child, f"{prefix}::{c['name']}")
            return
        if kind == "function":
            lines.add(f"{prefix}: {sig(item)}")
            return
        if kind in ("constant", "static"):
            t = body.get("type")
            lines.add(f"{kind} {prefix}: {ty(t)}")
            return
        if kind == "type_alias":
            lines.add(f"type {prefix} = {ty(body.get('type'))}")
            return
        if kind == "macro":
            lines.add(f"macro {prefix}!")
            return
        if kind == "struct":
            lines.add(f"struct {prefix}")
            sk = body.get("kind", {})
            fields = []
            if isinstance(sk, dict):
                if "plain" in sk:
                    fields = sk["plain"].get("fields", [])
                    if sk["plain"].get("has_stripped_fields"):
                        lines.add(f"struct {prefix} (has private fields)")
                elif "tuple" in sk:
                    fields = [f for f in sk["tuple"] if f is not None]
            for f in fields:
                fi = index.get(str(f))
                if fi and public(fi):
                    lines.add(f"field {prefix}::{fi['name']}: {ty(fi['inner']['struct_field'])}")
            impls(prefix, body.get("impls", []))
            return
        if kind == "enum":
            lines.add(f"enum {prefix}")
            for v in body.get("variants", []):
                vi = index.get(str(v))
                if vi:
                    lines.add(f"variant {prefix}::{vi['name']}")
            impls(prefix, body.get("impls", []))
            return
        if kind == "trait":
            lines.add(f"trait {prefix}")
            for t in body.get("items", []):
                ti = index.get(str(t))
                if ti is None:
                    continue
                if "function" in ti["inner"]:
                    has_default = ti["inner"]["function"].get("has_body")
                    lines.add(f"{prefix}::{ti['name']}: {sig(ti)}" + (" (provided)" if has_default else ""))
                else:
                    lines.add(f"{prefix}::{ti['name']} ({next(iter(ti['inner']))})")
            return
        lines.add(f"{kind} {prefix}")

    def impls(prefix, ids):
        for i in ids:
            imp = index.get(str(i))
            if imp is None:
                continue
            body = imp["inner"]["impl"]
            if body.get("is_synthetic") or body.get("blanket_impl"):
                continue
            trait = body.get("trait")
            if trait:
                lines.add(f"impl {ty({'resolved_path': trait})} for {prefix}")
                continue
            for m in body.get("items", []):
                mi = index.get(str(m))
                if mi and public(mi) and "function" in mi["inner"]:
                    lines.add(f"{prefix}::{mi['name']}: {sig(mi)}")
                elif mi and public(mi) and "assoc_const" in mi["inner"]:
                    lines.add(f"const {prefix}::{mi['name']}")

    root = doc["root"]
    walk(root, index[str(root)]["name"])
    for line in sorted(lines):
        print(line)


if __name__ == "__main__":
    main(sys.argv[1])
