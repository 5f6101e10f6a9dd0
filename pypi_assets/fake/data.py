"""Deterministic fake PyPI data: projects, releases and real wheel/sdist archives.

Every file is a real archive whose METADATA/PKG-INFO covers metadata versions 1.0 to 2.4, so
hashes, sizes and core metadata are genuine. Large indexes stay cheap: a project's releases and
files are built the first time anything asks for them, from a seed derived from its name.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import random
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

__all__ = [
    "METADATA_VERSIONS",
    "STATUSES",
    "FakeFile",
    "FakeIndex",
    "FakeProject",
    "FakeRelease",
    "osv_record",
    "provenance_bundle",
]

METADATA_VERSIONS = ("1.0", "1.1", "1.2", "2.1", "2.2", "2.3", "2.4")
_WORDS = [
    "alpha",
    "bravo",
    "cobalt",
    "delta",
    "ember",
    "falcon",
    "garnet",
    "harbor",
    "iris",
    "juniper",
    "kestrel",
    "lumen",
    "maple",
    "nectar",
    "onyx",
    "pepper",
    "quartz",
    "raven",
    "saffron",
    "tundra",
    "umber",
    "velvet",
    "willow",
    "xenon",
    "yarrow",
    "zephyr",
    "amber",
    "basil",
    "cedar",
    "dune",
]
#: PEP 792 project statuses.
STATUSES = ("active", "archived", "quarantined", "deprecated")
_EPOCH = 1_600_000_000  # 2020-09-13, the fake index's first upload
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def fake_name(i: int) -> str:
    """A display name; some are deliberately not normalised (case, '_' and '.')."""
    base = f"{_WORDS[i % len(_WORDS)]}-{_WORDS[(i // len(_WORDS)) % len(_WORDS)]}-{i}"
    if i % 7 == 3:
        return base.replace("-", "_").title()
    if i % 11 == 5:
        return base.replace("-", ".", 1)
    return base


@dataclass
class FakeFile:
    filename: str
    version: str
    packagetype: str
    python_version: str
    content: bytes
    metadata: bytes  # the METADATA / PKG-INFO inside the archive
    upload_time: float
    requires_python: str | None
    core_metadata: bool  # PEP 658 file advertised (wheels only)
    yanked: bool = False
    yanked_reason: str | None = None
    sha256: str = ""
    md5: str = ""
    blake2b_256: str = ""
    #: JSON fields served in place of the true ones (hostile-upstream tests)
    overrides: dict[str, Any] = field(default_factory=dict)
    #: PEP 740 provenance: ``None`` derives it from the filename (about three files in four)
    provenance: bool | None = None
    #: hostile-upstream tests: the provenance URL the pages state in place of the true one
    provenance_url: str | None = None
    #: hostile-upstream tests: the bytes served at the integrity route in place of the object
    provenance_body: bytes | None = None

    def __post_init__(self) -> None:
        self.sha256 = hashlib.sha256(self.content).hexdigest()
        self.md5 = hashlib.md5(self.content).hexdigest()
        self.blake2b_256 = hashlib.blake2b(self.content, digest_size=32).hexdigest()

    @property
    def path(self) -> str:
        h = self.blake2b_256
        return f"packages/{h[:2]}/{h[2:4]}/{h[4:]}/{self.filename}"

    @property
    def metadata_sha256(self) -> str:
        return hashlib.sha256(self.metadata).hexdigest()

    @property
    def has_provenance(self) -> bool:
        if self.provenance is not None:
            return self.provenance
        return hashlib.sha256(self.filename.encode()).digest()[0] % 4 != 0


@dataclass
class FakeRelease:
    version: str
    files: list[FakeFile]
    info: dict[str, Any]  # version-JSON info: the first upload's metadata, Warehouse-shaped

    @property
    def is_prerelease(self) -> bool:
        try:
            return Version(self.version).is_prerelease
        except InvalidVersion:
            return False


@dataclass
class FakeProject:
    name: str  # display name
    serial: int
    index: int
    _releases: dict[str, FakeRelease] | None = field(default=None, repr=False)
    status: str = "active"  # PEP 792
    status_reason: str | None = None
    organization: str | None = None
    #: (role, user) pairs; ``None`` until first asked: one deterministic Owner
    roles: list[tuple[str, str]] | None = None

    @property
    def quarantined(self) -> bool:
        return self.status == "quarantined"

    def role_list(self) -> list[tuple[str, str]]:
        if self.roles is None:
            self.roles = [("Owner", f"{_WORDS[self.index % len(_WORDS)]}-maintainer")]
        return self.roles


class _Core:
    """Core metadata headers, in order, and the Warehouse ``info`` that matches them."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.headers: list[tuple[str, str]] = []
        self.info = info

    def add(self, header: str, value: str, key: str | None = None, shown: Any = None) -> None:
        """Add a header; with ``key``, ``info[key]`` becomes ``shown`` (default: ``value``)."""
        self.headers.append((header, value))
        if key is not None:
            self.info[key] = value if shown is None else shown


def _base_info(
    summary: str, description: str, author: str, keywords: str, url: str
) -> dict[str, Any]:
    info: dict[str, Any] = {"summary": summary, "description": description, "home_page": url}
    info.update(author=author, author_email=_author_email(url), keywords=keywords)
    for key in ("maintainer", "maintainer_email", "download_url", "requires_python"):
        info[key] = None
    info.update(requires_dist=None, classifiers=[], platform=None)
    info["project_urls"] = {"Homepage": url}
    for key in ("description_content_type", "license", "license_expression", "license_files"):
        info[key] = None
    info.update(provides_extra=None, dynamic=None)
    return info


def _author_email(url: str) -> str:
    return f"dev@{url.rsplit('/', 1)[1]}.example.invalid"


def _license(m: _Core, mv: str) -> None:
    if mv == "2.4":
        m.add("License-Expression", "MIT OR Apache-2.0", "license_expression")
        m.add("License-File", "LICENSE", "license_files", ["LICENSE"])
    else:
        m.add("License", "MIT", "license")
    m.add("Platform", "any", "platform")


def _since_1_1(m: _Core, mv: str, norm: str, version: str) -> None:
    classifiers = ["Programming Language :: Python :: 3", "Operating System :: OS Independent"]
    if mv != "2.4":
        classifiers.append("License :: OSI Approved :: MIT License")
    m.headers += [("Classifier", c) for c in classifiers]
    m.info["classifiers"] = classifiers
    dl = f"https://example.invalid/{norm}/{version}.tar.gz"
    m.add("Download-URL", dl, "download_url")
    m.info["project_urls"]["Download"] = dl
    m.add("Supported-Platform", "RedHat 7.2")


def _since_1_2(m: _Core, name: str, norm: str, version: str, deps: list[str], wheel: bool) -> None:
    m.add("Maintainer", "Mirror Maintainers", "maintainer")
    m.add("Maintainer-email", "mirror@example.invalid", "maintainer_email")
    m.add("Requires-Python", ">=3.8", "requires_python")
    reqs = list(deps)
    if wheel:
        # Wheels may carry more than the sdist's PKG-INFO said (built metadata differs).
        reqs.append('colorama>=0.4; sys_platform == "win32"')
    m.headers += [("Requires-Dist", r) for r in reqs]
    m.info["requires_dist"] = list(deps) or None
    m.add("Provides-Dist", f"{name}-compat (=={version})")
    m.add("Obsoletes-Dist", f"{name}-legacy (<1.0)")
    m.add("Requires-External", "libc")
    m.add("Project-URL", f"Source, https://example.invalid/src/{norm}")
    m.info["project_urls"]["Source"] = f"https://example.invalid/src/{norm}"


def _since_2_1(m: _Core) -> None:
    m.add("Description-Content-Type", "text/markdown", "description_content_type")
    m.add("Provides-Extra", "docs", "provides_extra", ["docs"])
    m.add("Requires-Dist", 'sphinx>=7; extra == "docs"')
    m.info["requires_dist"] = [*(m.info["requires_dist"] or []), 'sphinx>=7; extra == "docs"']


def _metadata(
    mv: str, name: str, version: str, deps: list[str], *, wheel: bool, rng: random.Random
) -> tuple[bytes, dict[str, Any]]:
    """Core metadata text for metadata version ``mv`` and the matching Warehouse ``info``."""
    norm = canonicalize_name(name)
    summary = f"{name} does {rng.choice(_WORDS)} things"
    description = f"# {name}\n\nVersion {version} of {name}.\n\nIt {rng.choice(_WORDS)}s.\n"
    author = f"{rng.choice(_WORDS).title()} Developer"
    keywords = f"{rng.choice(_WORDS)},{rng.choice(_WORDS)} mirror"
    url = f"https://example.invalid/{norm}"
    m = _Core(_base_info(summary, description, author, keywords, url))
    for header, value in (("Metadata-Version", mv), ("Name", name), ("Version", version)):
        m.add(header, value)
    m.add("Summary", summary)
    m.add("Home-page", url)
    m.add("Author", author)
    m.add("Author-email", _author_email(url))
    m.add("Keywords", keywords)
    _license(m, mv)
    major = float(mv)
    if major >= 1.1:
        _since_1_1(m, mv, norm, version)
    if major >= 1.2:
        _since_1_2(m, name, norm, version, deps, wheel)
    if major >= 2.1:
        _since_2_1(m)
    if major >= 2.2:
        m.add("Dynamic", "Classifier", "dynamic", ["Classifier"])
    lines = [f"{k}: {v}" for k, v in m.headers]
    if major >= 2.1:
        return ("\n".join(lines) + "\n\n" + description).encode("utf-8"), m.info
    folded = description.rstrip("\n").replace("\n", "\n       |")
    m.info["description"] = description.rstrip("\n")
    return ("\n".join([*lines, f"Description: {folded}"]) + "\n").encode("utf-8"), m.info


def _wheel(name: str, version: str, tag: str, metadata: bytes) -> bytes:
    dist = f"{canonicalize_name(name).replace('-', '_')}-{version}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        items = {
            f"{canonicalize_name(name).replace('-', '_')}/__init__.py": f"__version__ = {version!r}\n".encode(),
            f"{dist}.dist-info/METADATA": metadata,
            f"{dist}.dist-info/WHEEL": f"Wheel-Version: 1.0\nGenerator: fake\nRoot-Is-Purelib: true\nTag: {tag}\n".encode(),
        }
        record = "".join(f"{path},,\n" for path in items) + f"{dist}.dist-info/RECORD,,\n"
        items[f"{dist}.dist-info/RECORD"] = record.encode()
        for path, data in items.items():
            z.writestr(zipfile.ZipInfo(path, _ZIP_DATE), data)
    return buf.getvalue()


def _sdist(name: str, version: str, metadata: bytes) -> bytes:
    root = f"{canonicalize_name(name).replace('-', '_')}-{version}"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as t:
        for path, data in (
            (f"{root}/PKG-INFO", metadata),
            (f"{root}/setup.py", b"from setuptools import setup\nsetup()\n"),
        ):
            ti = tarfile.TarInfo(path)
            ti.size = len(data)
            ti.mtime = 0
            t.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    # gzip headers carry a timestamp; pin it so the bytes (and hashes) are deterministic.
    return raw[:4] + b"\x00\x00\x00\x00" + raw[8:]


def build_release(
    name: str,
    version: str,
    mv: str,
    deps: list[str],
    upload: float,
    *,
    wheels: int,
    core_metadata: bool,
    seed: int,
) -> FakeRelease:
    rng = random.Random(seed)
    pkg = canonicalize_name(name).replace("-", "_")
    sdist_meta, info = _metadata(mv, name, version, deps, wheel=False, rng=random.Random(seed))
    files = [
        FakeFile(
            filename=f"{pkg}-{version}.tar.gz",
            version=version,
            packagetype="sdist",
            python_version="source",
            content=_sdist(name, version, sdist_meta),
            metadata=sdist_meta,
            upload_time=upload,
            requires_python=info["requires_python"],
            core_metadata=False,
        )
    ]
    tags = ["py3-none-any", "cp311-cp311-manylinux_2_17_x86_64", "cp311-cp311-win_amd64"]
    for i in range(wheels):
        tag = tags[i % len(tags)]
        wmeta, _ = _metadata(mv, name, version, deps, wheel=True, rng=random.Random(seed))
        files.append(
            FakeFile(
                filename=f"{pkg}-{version}-{tag}.whl",
                version=version,
                packagetype="bdist_wheel",
                python_version=tag.split("-")[0],
                content=_wheel(name, version, tag, wmeta),
                metadata=wmeta,
                upload_time=upload + 60 * (i + 1),
                requires_python=info["requires_python"],
                core_metadata=core_metadata,
            )
        )
    info.update({"name": name, "version": version})
    del rng
    return FakeRelease(version=version, files=files, info=info)


def osv_record(
    id: str,
    *,
    fixed_in: Iterable[str] = (),
    aliases: Iterable[str] = (),
    summary: str | None = None,
    details: str = "",
    source: str = "osv",
    withdrawn: str | None = None,
) -> dict[str, Any]:
    """A vulnerability as Warehouse's JSON API shows it (an OSV record, abridged)."""
    return {
        "id": id,
        "aliases": list(aliases),
        "summary": summary,
        "details": details or f"{id}: a fake vulnerability.",
        "fixed_in": list(fixed_in),
        "link": f"https://osv.dev/vulnerability/{id}",
        "source": source,
        "withdrawn": withdrawn,
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def provenance_bundle(project: str, f: FakeFile) -> dict[str, Any]:
    """A PEP 740 provenance object for ``f`` (deterministic fake contents): one GitHub
    Trusted Publisher bundle with one attestation whose in-toto statement names the file."""
    norm = canonicalize_name(project)
    statement = json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": f.filename, "digest": {"sha256": f.sha256}}],
            "predicateType": "https://docs.pypi.org/attestations/publish/v1",
            "predicate": None,
        },
        sort_keys=True,
    ).encode()
    digest = hashlib.sha256(statement).digest()
    attestation = {
        "version": 1,
        "verification_material": {
            "certificate": _b64(b"fake certificate for " + f.filename.encode()),
            "transparency_entries": [
                {
                    "logIndex": str(int.from_bytes(digest[:4], "big")),
                    "kindVersion": {"kind": "dsse", "version": "0.0.1"},
                    "integratedTime": str(int(f.upload_time)),
                }
            ],
        },
        "envelope": {"statement": _b64(statement), "signature": _b64(digest)},
    }
    publisher = {
        "kind": "GitHub",
        "repository": f"example-org/{norm}",
        "workflow": "release.yml",
        "environment": "pypi",
    }
    return {
        "version": 1,
        "attestation_bundles": [{"publisher": publisher, "attestations": [attestation]}],
    }


class FakeIndex:
    """A mutable fake of Warehouse's data, safe to share between server threads."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.projects: dict[str, FakeProject] = {}
        self.serial = 0
        self._changelog: list[tuple[str, str | None, int, str, int]] = []
        self._generated_upto = 0  # serials <= this come from generation (synthesised changelog)
        self._by_path: dict[str, tuple[str, FakeFile]] = {}
        #: per-release vulnerabilities, keyed by (normalised name, version); not journaled
        self._vulns: dict[tuple[str, str], list[dict[str, Any]]] = {}

    # ------------------------------------------------------------------ generation
    @classmethod
    def generate(
        cls, n_projects: int, *, seed: int = 0, names: Iterable[str] | None = None
    ) -> FakeIndex:
        idx = cls()
        source: Iterator[str] = (
            iter(names) if names is not None else (fake_name(i) for i in range(n_projects))
        )
        for i, name in zip(range(n_projects), source, strict=False):
            idx.serial += 10
            idx.projects[canonicalize_name(name)] = FakeProject(
                name=name, serial=idx.serial, index=i + seed * 1_000_003
            )
        idx._generated_upto = idx.serial
        return idx

    def releases(self, norm: str) -> dict[str, FakeRelease]:
        with self.lock:
            p = self.projects[norm]
            if p._releases is None:
                p._releases = self._build(p)
                for r in p._releases.values():
                    for f in r.files:
                        self._by_path[f.path] = (norm, f)
            return p._releases

    def _build(self, p: FakeProject) -> dict[str, FakeRelease]:
        rng = random.Random(p.index * 7919 + 17)
        n = 1 + rng.randrange(5)
        versions = [f"0.{k + 1}.0" for k in range(n)]
        if rng.random() < 0.3:
            versions.insert(len(versions) - 1, f"0.{n}.0rc1")
        out: dict[str, FakeRelease] = {}
        base_time = _EPOCH + p.index * 3600
        names = [
            q.name
            for q in itertools.islice(self.projects.values(), max(1, min(p.index % 1_000_003, 400)))
        ]
        for k, v in enumerate(versions):
            mv = METADATA_VERSIONS[(p.index + k) % len(METADATA_VERSIONS)]
            deps = []
            if names and p.index > 0 and rng.random() < 0.6:
                dep = rng.choice(names)
                if canonicalize_name(dep) != canonicalize_name(p.name):
                    deps.append(f"{dep}>=0.1")
            wheels = 0 if float(mv) < 1.2 else 1 + rng.randrange(3)
            out[v] = build_release(
                p.name,
                v,
                mv,
                deps,
                base_time + k * 86400,
                wheels=wheels,
                core_metadata=mv != "1.2",
                seed=p.index * 31 + k,
            )
        if rng.random() < 0.1:
            out["0.0.1"] = FakeRelease(
                version="0.0.1", files=[], info={"name": p.name, "version": "0.0.1"}
            )
        return out

    # ------------------------------------------------------------------ queries
    def get(self, name: str) -> FakeProject | None:
        return self.projects.get(canonicalize_name(name))

    def file_by_path(self, path: str) -> FakeFile | None:
        with self.lock:
            hit = self._by_path.get(path)
            if hit is None:
                return None
            norm, f = hit
            # Files of deleted releases or projects stay in _by_path; check they still exist.
            p = self.projects.get(norm)
            if p is None or p._releases is None:
                return None
            rel = p._releases.get(f.version)
            return f if rel is not None and f in rel.files else None

    def latest(self, norm: str) -> FakeRelease | None:
        rels = [r for r in self.releases(norm).values() if r.files]
        if not rels:
            return None

        def key(r: FakeRelease) -> Version:
            return Version(r.version)

        good = [r for r in rels if not r.is_prerelease and not all(f.yanked for f in r.files)]
        return max(good or rels, key=key)

    def changelog_since(self, serial: int, limit: int = 50_000) -> list[list[Any]]:
        with self.lock:
            rows: list[list[Any]] = []
            if serial < self._generated_upto:
                for p in self.projects.values():
                    s = (p.index % 1_000_003 + 1) * 10
                    if serial < s <= self._generated_upto:
                        rows.append([p.name, None, _EPOCH + s, "create", s])
                rows.sort(key=lambda r: r[4])
            rows.extend(list(r) for r in self._changelog if r[4] > serial)
            return rows[:limit]

    # ------------------------------------------------------------------ mutations
    def _bump(self, name: str, version: str | None, action: str) -> int:
        self.serial += 1
        self._changelog.append((name, version, int(time.time()), action, self.serial))
        p = self.projects.get(canonicalize_name(name))
        if p is not None:
            p.serial = self.serial
        return self.serial

    def add_project(self, name: str) -> FakeProject:
        with self.lock:
            norm = canonicalize_name(name)
            if norm in self.projects:
                raise ValueError(f"{name} exists")
            p = FakeProject(
                name=name, serial=0, index=len(self.projects) + 10_000_000, _releases={}
            )
            self.projects[norm] = p
            self._bump(name, None, "create")
            return p

    def add_release(
        self,
        name: str,
        version: str,
        *,
        mv: str = "2.3",
        deps: list[str] | None = None,
        wheels: int = 1,
        core_metadata: bool = True,
    ) -> FakeRelease:
        with self.lock:
            norm = canonicalize_name(name)
            p = self.projects[norm]
            rels = self.releases(norm)
            rel = build_release(
                p.name,
                version,
                mv,
                deps or [],
                time.time(),
                wheels=wheels,
                core_metadata=core_metadata,
                seed=hash((norm, version)) & 0xFFFF,
            )
            rels[version] = rel
            for f in rel.files:
                self._by_path[f.path] = (norm, f)
            self._bump(p.name, version, "new release")
            for f in rel.files:
                self._bump(p.name, version, f"add {f.python_version} file {f.filename}")
            return rel

    def add_many_releases(self, name: str, n: int, *, files: int = 1) -> None:
        """``n`` small releases (``files`` tiny sdists each, no core metadata) in one serial
        bump: a project with 100,000 versions in a couple of seconds."""
        with self.lock:
            norm = canonicalize_name(name)
            p = self.projects[norm]
            rels = self.releases(norm)
            pkg = norm.replace("-", "_")
            t = float(_EPOCH)
            for i in range(n):
                v = f"1000.{i}"
                fs = [
                    FakeFile(
                        filename=f"{pkg}-{v}{'' if k == 0 else f'.post{k}'}.tar.gz",
                        version=v,
                        packagetype="sdist",
                        python_version="source",
                        content=f"{pkg} {v} {k}".encode(),
                        metadata=b"",
                        upload_time=t + i,
                        requires_python=None,
                        core_metadata=False,
                    )
                    for k in range(files)
                ]
                rels[v] = FakeRelease(
                    version=v, files=fs, info={"name": p.name, "version": v, "summary": "bulk"}
                )
                for f in fs:
                    self._by_path[f.path] = (norm, f)
            self._bump(p.name, None, f"add {n} releases")

    def add_file(self, name: str, version: str, tag: str = "py2.py3-none-any") -> FakeFile:
        with self.lock:
            norm = canonicalize_name(name)
            p = self.projects[norm]
            rel = self.releases(norm)[version]
            wmeta, _ = _metadata("2.1", p.name, version, [], wheel=True, rng=random.Random(1))
            pkg = norm.replace("-", "_")
            f = FakeFile(
                filename=f"{pkg}-{version}-{tag}.whl",
                version=version,
                packagetype="bdist_wheel",
                python_version=tag.split("-")[0],
                content=_wheel(p.name, version, tag, wmeta),
                metadata=wmeta,
                upload_time=time.time(),
                requires_python=None,
                core_metadata=True,
            )
            rel.files.append(f)
            self._by_path[f.path] = (norm, f)
            self._bump(p.name, version, f"add {f.python_version} file {f.filename}")
            return f

    def set_content(self, name: str, filename: str, content: bytes) -> FakeFile:
        """Give a file other bytes (new digests, new path): large files for streaming tests."""
        with self.lock:
            norm = canonicalize_name(name)
            for rel in self.releases(norm).values():
                for f in rel.files:
                    if f.filename == filename:
                        self._by_path.pop(f.path, None)
                        f.content = content
                        f.__post_init__()
                        self._by_path[f.path] = (norm, f)
                        self._bump(self.projects[norm].name, rel.version, f"change {filename}")
                        return f
            raise KeyError(filename)

    def add_empty_releases(self, name: str, versions: Iterable[str]) -> int:
        """Many releases without files (as Warehouse lists them: ``"1.0": []``), cheaply and
        under one serial: a project with 100,000 versions. Returns how many were added."""
        with self.lock:
            norm = canonicalize_name(name)
            p, rels = self.projects[norm], self.releases(norm)
            added = 0
            for v in versions:
                if v not in rels:
                    rels[v] = FakeRelease(version=v, files=[], info={"name": p.name, "version": v})
                    added += 1
            self._bump(p.name, None, f"add {added} releases")
            return added

    def delete_releases(self, name: str, versions: Iterable[str]) -> None:
        """Remove many releases under one serial (undoes :meth:`add_empty_releases`)."""
        with self.lock:
            norm = canonicalize_name(name)
            rels = self.releases(norm)
            for v in versions:
                rels.pop(v, None)
            self._bump(self.projects[norm].name, None, "remove releases")

    def yank(self, name: str, version: str, reason: str | None = None) -> None:
        with self.lock:
            rel = self.releases(canonicalize_name(name))[version]
            for f in rel.files:
                f.yanked, f.yanked_reason = True, reason
            self._bump(self.projects[canonicalize_name(name)].name, version, "yank release")

    def delete_release(self, name: str, version: str) -> None:
        with self.lock:
            norm = canonicalize_name(name)
            del self.releases(norm)[version]
            self._bump(self.projects[norm].name, version, "remove release")

    def delete_project(self, name: str) -> None:
        with self.lock:
            norm = canonicalize_name(name)
            p = self.projects.pop(norm)
            self.serial += 1
            self._changelog.append((p.name, None, int(time.time()), "remove project", self.serial))

    # ------------------------------------------------------------------ 2026 Warehouse
    def unyank(self, name: str, version: str) -> None:
        with self.lock:
            norm = canonicalize_name(name)
            for f in self.releases(norm)[version].files:
                f.yanked, f.yanked_reason = False, None
            self._bump(self.projects[norm].name, version, "unyank release")

    def delete_file(self, name: str, filename: str) -> None:
        with self.lock:
            norm = canonicalize_name(name)
            for rel in self.releases(norm).values():
                for f in rel.files:
                    if f.filename == filename:
                        rel.files.remove(f)
                        self._bump(self.projects[norm].name, rel.version, f"remove file {filename}")
                        return
            raise KeyError(filename)

    def set_status(self, name: str, status: str, reason: str | None = None) -> bool:
        """PEP 792 status. Quarantine and clearing it are journaled (``True``: the serial
        moved); archive, unarchive and deprecate are not, as on Warehouse."""
        if status not in STATUSES:
            raise ValueError(f"unknown project status {status!r}")
        with self.lock:
            p = self.projects[canonicalize_name(name)]
            was = p.quarantined
            p.status, p.status_reason = status, reason
            if p.quarantined and not was:
                self._bump(p.name, None, "project quarantined")
            elif was and not p.quarantined:
                self._bump(p.name, None, "project quarantine cleared")
            else:
                return False
            return True

    def vulnerabilities(self, norm: str, version: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(v) for v in self._vulns.get((norm, version), [])]

    def set_vulnerabilities(self, name: str, version: str, records: list[dict[str, Any]]) -> None:
        """Replace a release's vulnerabilities (records as :func:`osv_record` makes them, or
        just ``{"id": ...}``): not journaled, so the serial does not move."""
        with self.lock:
            norm = canonicalize_name(name)
            if version not in self.releases(norm):
                raise KeyError(version)
            full = [{**osv_record(str(r["id"])), **r} for r in records]
            self._vulns[(norm, version)] = full

    def ownership(self, norm: str) -> dict[str, Any]:
        with self.lock:
            p = self.projects[norm]
            roles = [{"role": r, "user": u} for r, u in p.role_list()]
            return {"organization": p.organization, "roles": roles}

    def set_organization(self, name: str, organization: str | None) -> None:
        """The owning organization (not journaled)."""
        with self.lock:
            self.projects[canonicalize_name(name)].organization = organization

    def set_role(self, name: str, user: str, role: str | None) -> None:
        """Add, change (``role``) or remove (``None``) a user's role: journaled as Warehouse
        does (``add Owner u``, ``change Owner u to Maintainer``, ``remove Maintainer u``)."""
        with self.lock:
            p = self.projects[canonicalize_name(name)]
            roles = p.role_list()
            old = next((r for r, u in roles if u == user), None)
            if old == role:
                return
            p.roles = [(r, u) for r, u in roles if u != user]
            if role is not None:
                p.roles.append((role, user))
            if old is None:
                action = f"add {role} {user}"
            elif role is None:
                action = f"remove {old} {user}"
            else:
                action = f"change {old} {user} to {role}"
            self._bump(p.name, None, action)

    def find_file(self, norm: str, version: str, filename: str) -> FakeFile | None:
        with self.lock:
            if norm not in self.projects:
                return None
            rel = self.releases(norm).get(version)
            return next((f for f in rel.files if f.filename == filename), None) if rel else None
