"""Reference implementations for the runner's version orderings and RPM matching.

Run with Debian's /usr/bin/python3 (python3-rpm and python3-packaging are Debian
packages; scripts/setup.sh installs them). Nothing here comes from the runner.

  version_reference.py pairs-rpm ALL_ZIP N      -> "a\tb\tcmp" lines, cmp by rpm.ver
  version_reference.py pairs-pep440 ALL_ZIP N   -> "a\tb\tcmp" lines, cmp by packaging
                                                   ("x" when packaging rejects a or b)
  version_reference.py pairs-dpkg ALL_ZIP N STATUS -> "a\tb" lines (dpkg compares them)
  version_reference.py match-rpm ALL_ZIP ECOSYSTEM DBPATH
      -> "id\tname" lines: the advisories of ALL_ZIP (ECOSYSTEM) affecting the packages
         in the rpm database at DBPATH, read by rpm itself, compared with labelCompare.
"""

import json
import random
import sys
import zipfile


def records(path):
    with zipfile.ZipFile(path) as z:
        for n in z.namelist():
            if n.endswith(".json"):
                yield json.loads(z.read(n))


def versions_by_package(path):
    """{package name: set of versions} from range events and version lists."""
    out = {}
    for r in records(path):
        for a in r.get("affected", []):
            name = a.get("package", {}).get("name", "")
            vs = out.setdefault(name, set())
            for rng in a.get("ranges", []):
                if rng.get("type") not in ("ECOSYSTEM", "SEMVER"):
                    continue
                for e in rng.get("events", []):
                    for k, v in e.items():
                        if k in ("introduced", "fixed", "last_affected") and v != "0":
                            vs.add(v)
            vs.update(a.get("versions", []))
    return out


def tricky(vs, rnd):
    """Variants exercising the rules: ~ pre-releases, ^ snapshots, epochs, letters."""
    out = set()
    for v in rnd.sample(sorted(vs), min(len(vs), 400)):
        base, _, rel = v.rpartition("-") if "-" in v else (v, "", "")
        out.add(v)
        for suffix in ("~rc1", "~~", "^git1", "^20240101~pre", "a", ".0", "_1", "p1"):
            out.add(base + suffix + ("-" + rel if rel else ""))
        out.add("1:" + v)
        out.add("0:" + v)
        if rel:
            out.add(base)
            out.add(base + "-" + rel + "~1")
    return out


def pairs(path, n, extra=()):
    rnd = random.Random(16)
    by_pkg = versions_by_package(path)
    all_vs = sorted(set().union(*by_pkg.values()) | set(extra))
    out = []
    # Versions of one package against each other: the comparisons matching does.
    for name in sorted(by_pkg):
        vs = sorted(by_pkg[name])
        for i in range(len(vs)):
            for j in range(i + 1, min(len(vs), i + 4)):
                out.append((vs[i], vs[j]))
    rnd.shuffle(out)
    out = out[: n // 2]
    while len(out) < n and len(all_vs) > 1:
        out.append((rnd.choice(all_vs), rnd.choice(all_vs)))
    return out, rnd, all_vs


def main():
    mode = sys.argv[1]
    if mode == "pairs-rpm":
        import rpm

        ps, rnd, all_vs = pairs(sys.argv[2], int(sys.argv[3]))
        extra = sorted(tricky(all_vs, rnd))
        for _ in range(int(sys.argv[3]) // 4):
            ps.append((rnd.choice(extra), rnd.choice(extra)))
        for a, b in ps:
            x, y = rpm.ver(a), rpm.ver(b)
            print(f"{a}\t{b}\t{(x > y) - (x < y)}")
    elif mode == "pairs-pep440":
        from packaging.version import InvalidVersion, Version

        ps, _, _ = pairs(sys.argv[2], int(sys.argv[3]))
        for a, b in ps:
            try:
                x, y = Version(a), Version(b)
                c = str((x > y) - (x < y))
            except InvalidVersion:
                c = "x"
            print(f"{a}\t{b}\t{c}")
    elif mode == "pairs-dpkg":
        deb = set()
        with open(sys.argv[4], encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("Version: "):
                    deb.add(line[len("Version: "):].strip())
        ps, rnd, _ = pairs(sys.argv[2], int(sys.argv[3]) // 2)
        deb = sorted(deb)
        for _ in range(int(sys.argv[3]) - len(ps)):
            ps.append((rnd.choice(deb), rnd.choice(deb)))
        for a, b in ps:
            print(f"{a}\t{b}")
    elif mode == "match-rpm":
        import rpm

        path, ecosystem, dbpath = sys.argv[2], sys.argv[3], sys.argv[4]
        rpm.addMacro("_dbpath", dbpath)
        ts = rpm.TransactionSet()
        installed = []
        for h in ts.dbMatch():
            name = h["name"]
            if name == "gpg-pubkey":
                continue
            src = h["sourcerpm"] or ""
            src = src[: -len(".src.rpm")].rsplit("-", 2)[0] if src.endswith(".src.rpm") else name
            evr = (str(h["epochnum"]), h["version"], h["release"])
            installed.append((name, src, evr))

        def evr_of(s):
            v = rpm.ver(s)
            return (v.e or "0", v.v, v.r)

        found = set()
        for r in records(path):
            if r.get("withdrawn"):
                continue
            for a in r.get("affected", []):
                pkg = a.get("package", {})
                if pkg.get("ecosystem") != ecosystem:
                    continue
                for name, src, evr in installed:
                    if pkg.get("name") not in (name, src):
                        continue
                    for rng in a.get("ranges", []):
                        affected = False
                        for e in rng.get("events", []):
                            if "introduced" in e:
                                i = e["introduced"]
                                if i == "0" or rpm.labelCompare(evr, evr_of(i)) >= 0:
                                    affected = True
                            if "fixed" in e and rpm.labelCompare(evr, evr_of(e["fixed"])) >= 0:
                                affected = False
                        if affected:
                            found.add((r["id"], name))
        for id_, name in sorted(found):
            print(f"{id_}\t{name}")
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
