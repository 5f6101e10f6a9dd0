"""The pure steps of a project's fetch, without a client: parse (pypi/warehouse.py), plan
(which requests a project needs) and assemble (the Project from parsed parts and fetched
bodies); and the rendering of Warehouse's JSON API.

The plan's rule, as fetch_project has always applied it: at full depth, a version JSON is
asked for every version that has files and whose stored release has no ``info``, whether or
not its wheels advertise PEP 658 metadata (the version JSON is the release's ``info``, and the
fallback of a wheel whose METADATA cannot be parsed); a ``.metadata`` file is asked for every
new or changed wheel the simple page advertises one for; the simple page itself only when a
wheel is new or changed. At project depth nothing is asked beyond the project JSON.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from pypi_assets.pypi import InvalidResponse, LimitExceeded
from pypi_assets.pypi import warehouse as wh
from pypi_assets.pypi.fetch import (
    Bodies,
    assemble_project,
    conditional_etag,
    metadata_wanted,
    plan_project,
)
from pypi_assets.pypi.names import UnsafeValue
from pypi_assets.pypi.records import Distribution, Release, StoredProject
from pypi_assets.pypi.warehouse import ProjectError, parse_project

LIMITS = wh.JsonLimits(
    max_versions=50,
    max_files_per_release=10,
    base="https://pypi.example",
    allowed_hosts=frozenset({"pypi.example", "files.example"}),
)
SHA = {c: c * 64 for c in "abcdef"}


def _file(filename: str, sha: str, **extra: Any) -> dict[str, Any]:
    entry = {
        "filename": filename,
        "url": f"https://files.example/packages/{filename}",
        "digests": {"sha256": sha},
        "size": 100,
        "upload_time_iso_8601": "2024-01-02T03:04:05.000000Z",
        "yanked": False,
    }
    return entry | extra


def _doc(releases: dict[str, list[Any]], **info: Any) -> dict[str, Any]:
    return {
        "info": {"name": "Demo-Pkg", "version": "2.0", "summary": "project info"} | info,
        "last_serial": 7,
        "releases": releases,
    }


def _demo(**info: Any) -> dict[str, Any]:
    """1.0: a wheel and an sdist; 2.0 (latest): two wheels; 0.1: no files."""
    return _doc(
        {
            "0.1": [],
            "1.0": [
                _file("demo_pkg-1.0-py3-none-any.whl", SHA["a"]),
                _file("demo-pkg-1.0.tar.gz", SHA["b"]),
            ],
            "2.0": [
                _file("demo_pkg-2.0-py3-none-any.whl", SHA["c"]),
                _file("demo_pkg-2.0-cp312-cp312-linux_x86_64.whl", SHA["d"]),
            ],
        },
        **info,
    )


def _parse(doc: dict[str, Any], **kw: Any) -> wh.ParsedProject:
    args: dict[str, Any] = {"serial": None, "expected_serial": None, "etag": None} | kw
    return parse_project("demo_pkg", doc, LIMITS, **args)


def _stored_from(project: Any) -> StoredProject:
    return StoredProject(
        name=project.name,
        serial=project.serial,
        releases={r.version: r for r in project.releases},
        distributions={d.filename: d for d in project.distributions},
        etag=project.etag,
    )


def _info(version: str, **extra: Any) -> dict[str, Any]:
    return {"name": "Demo-Pkg", "version": version, "summary": f"summary {version}"} | extra


# -------------------------------------------------------------------------------------- parse
def test_parse_project_keeps_names_serial_and_files_in_order() -> None:
    p = _parse(_demo())
    assert (p.asked, p.name, p.display, p.serial) == ("demo_pkg", "demo-pkg", "Demo-Pkg", 7)
    assert list(p.files) == ["0.1", "1.0", "2.0"]
    f = p.files["1.0"][1]
    assert (f.filename, f.packagetype, f.sha256, f.size) == (
        "demo-pkg-1.0.tar.gz",
        "sdist",
        SHA["b"],
        100,
    )
    assert f.upload_time == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kw", "serial"),
    [
        ({"serial": 9}, 9),  # the answer's header wins over the body's last_serial
        ({}, 7),  # else last_serial
    ],
)
def test_parse_project_serial_source(kw: dict[str, Any], serial: int) -> None:
    assert _parse(_demo(), **kw).serial == serial


def test_parse_project_serial_falls_back_to_the_expected_one() -> None:
    doc = _demo()
    del doc["last_serial"]
    assert _parse(doc, expected_serial=5).serial == 5
    assert _parse(doc).serial == 0


def test_parse_project_keeps_only_a_short_etag() -> None:
    assert _parse(_demo(), etag='"abc"').etag == '"abc"'
    assert _parse(_demo(), etag='"' + "x" * 201 + '"').etag is None
    assert _parse(_demo(), etag="").etag is None


def test_parse_project_refuses_another_projects_answer() -> None:
    with pytest.raises(ProjectError, match=r"^demo_pkg: upstream answered for .*'Other'"):
        _parse(_doc({}, name="Other"))


def test_project_and_version_info_must_be_objects() -> None:
    with pytest.raises(ProjectError, match=r"^p: project JSON has no 'info' object"):
        wh.project_info("p", {"info": []})
    with pytest.raises(ProjectError, match=r"^p 1\.0: version JSON has no 'info' object"):
        wh.version_info("p", "1.0", [])
    assert wh.version_info("p", "1.0", {"info": {"a": 1}}) == {"a": 1}


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"yanked": "false"}, "yanked is not a boolean"),
        ({"url": "https://elsewhere.example/x.whl"}, ""),
        ({"size": -1}, "size out of range"),
        ({"digests": {"sha256": SHA["a"], "md5": "XYZ"}}, "malformed digest"),
    ],
)
def test_a_bad_file_entry_is_an_invalid_response_naming_the_project(
    entry: dict[str, Any], reason: str
) -> None:
    doc = _doc({"1.0": [_file("demo_pkg-1.0-py3-none-any.whl", SHA["a"], **entry)]})
    with pytest.raises(InvalidResponse, match=rf"^demo_pkg: .*{reason}"):
        _parse(doc)


def test_a_filename_is_unique_across_the_project() -> None:
    doc = _doc(
        {
            "1.0": [_file("demo_pkg-1.0.tar.gz", SHA["a"])],
            "1.1": [_file("demo_pkg-1.0.tar.gz", SHA["b"])],
        }
    )
    with pytest.raises(InvalidResponse, match="duplicate filename"):
        _parse(doc)


def test_a_relative_file_url_resolves_against_the_upstream() -> None:
    doc = _doc({"1.0": [_file("demo_pkg-1.0.tar.gz", SHA["a"], url="/p/demo_pkg-1.0.tar.gz")]})
    assert _parse(doc).files["1.0"][0].url == "https://pypi.example/p/demo_pkg-1.0.tar.gz"


def test_caps_are_applied_before_the_files_are_parsed() -> None:
    many = _doc({f"1.{i}": ["not even a file"] for i in range(51)})
    with pytest.raises(LimitExceeded, match=r"51 versions, over max_versions_per_project \(50\)"):
        _parse(many)
    wide = _doc({"1.0": [_file(f"f{i}.tar.gz", SHA["a"]) for i in range(11)]})
    with pytest.raises(LimitExceeded, match=r"1\.0: 11 files, over max_files_per_release"):
        _parse(wide)


def test_precount_refuses_a_large_document_from_its_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = json.dumps(_doc({"1.0": [{}] * 11}))
    wh.precount(LIMITS, "p", text)  # small documents are left to the full parse
    monkeypatch.setattr(wh, "PRECOUNT_CHARS", 0)
    with pytest.raises(LimitExceeded, match=r"^p: a release of 11 files"):
        wh.precount(LIMITS, "p", text)
    wh.precount(LIMITS, "p", "{not json")  # the full parse reports it


def test_parse_time() -> None:
    assert wh.parse_time("2024-01-02T03:04:05") == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert wh.parse_time("garbage") is None
    assert wh.parse_time(12) is None
    with pytest.raises(UnsafeValue, match="out of range"):
        wh.parse_time("0001-01-01T00:00:00")


# --------------------------------------------------------------------------------------- plan
def test_plan_for_a_new_project_asks_every_version_json_and_the_new_wheels() -> None:
    plan = plan_project(_parse(_demo()), None, "full")
    # every version with files; 0.1 has none
    assert plan.version_jsons == ["1.0", "2.0"]
    assert [f.filename for f in plan.new_wheels] == [
        "demo_pkg-1.0-py3-none-any.whl",
        "demo_pkg-2.0-py3-none-any.whl",
        "demo_pkg-2.0-cp312-cp312-linux_x86_64.whl",
    ]
    assert plan.simple_page
    assert plan.reused == {}


def test_plan_asks_metadata_only_of_wheels_the_simple_page_advertises() -> None:
    plan = plan_project(_parse(_demo()), None, "full")
    advertised = {
        "demo_pkg-2.0-py3-none-any.whl": "e" * 64,
        "demo_pkg-2.0-cp312-cp312-linux_x86_64.whl": None,
        "demo-pkg-1.0.tar.gz": "f" * 64,  # an sdist is never asked for
        "not-in-the-project.whl": None,
    }
    assert [f.filename for f in metadata_wanted(plan, advertised)] == [
        "demo_pkg-2.0-py3-none-any.whl",
        "demo_pkg-2.0-cp312-cp312-linux_x86_64.whl",
    ]
    # PEP 658 files do not spare a version its version JSON: 2.0 is still asked for
    assert "2.0" in plan.version_jsons


def test_plan_reuses_the_stored_project_and_asks_only_for_what_changed() -> None:
    parsed = _parse(_demo())
    first = assemble_project(
        parsed,
        plan_project(parsed, None, "full"),
        Bodies(infos={"1.0": _info("1.0"), "2.0": _info("2.0")}),
    )
    stored = _stored_from(first)
    stored.releases["1.0"].info = None  # stored without its version JSON
    doc = _demo()
    doc["releases"]["2.0"][1]["digests"] = {"sha256": SHA["e"]}  # a re-upload
    doc["releases"]["3.0"] = [_file("demo-pkg-3.0.tar.gz", SHA["f"])]
    plan = plan_project(_parse(doc), stored, "full")
    assert plan.version_jsons == ["1.0", "3.0"]
    assert [f.filename for f in plan.new_wheels] == ["demo_pkg-2.0-cp312-cp312-linux_x86_64.whl"]
    assert sorted(plan.reused) == [
        "demo-pkg-1.0.tar.gz",
        "demo_pkg-1.0-py3-none-any.whl",
        "demo_pkg-2.0-py3-none-any.whl",
    ]
    assert set(plan.stored_infos) == {"2.0"}


def test_plan_with_nothing_changed_asks_for_nothing() -> None:
    parsed = _parse(_demo())
    infos = {"1.0": _info("1.0"), "2.0": _info("2.0")}
    stored = _stored_from(
        assemble_project(parsed, plan_project(parsed, None, "full"), Bodies(infos=infos))
    )
    plan = plan_project(_parse(_demo()), stored, "full")
    assert (plan.version_jsons, plan.new_wheels, plan.simple_page) == ([], [], False)
    assert len(plan.reused) == 4


def test_project_depth_plans_no_request_and_full_depth_refetches_its_rows() -> None:
    parsed = _parse(_demo())
    shallow = plan_project(parsed, None, "project")
    assert (shallow.version_jsons, shallow.new_wheels) == ([], [])
    stored = _stored_from(assemble_project(parsed, shallow, Bodies()))
    assert {d.metadata_source for d in stored.distributions.values()} == {"none"}
    # project depth re-uses rows without metadata; full depth asks for their metadata
    assert len(plan_project(parsed, stored, "project").reused) == 4
    full = plan_project(parsed, stored, "full")
    assert full.reused == {}
    assert full.version_jsons == ["1.0", "2.0"]
    assert len(full.new_wheels) == 3


def test_conditional_etag() -> None:
    assert conditional_etag(None) is None
    stored = StoredProject("p", 1, {}, {}, etag='"v1"')
    assert conditional_etag(stored) == '"v1"'


# ----------------------------------------------------------------------------------- assemble
def _core_fields(name: str, version: str, summary: str) -> dict[str, Any]:
    return {"core_name": name, "core_version": version, "summary": summary, "description": "d"}


def test_assemble_takes_metadata_files_first_then_version_json() -> None:
    parsed = _parse(_demo())
    plan = plan_project(parsed, None, "full")
    wheel = "demo_pkg-2.0-py3-none-any.whl"
    other = "demo_pkg-2.0-cp312-cp312-linux_x86_64.whl"
    bodies = Bodies(
        # the second wheel advertised metadata that could not be parsed: version JSON
        core_meta={wheel: "e" * 64, other: "f" * 64},
        infos={"1.0": _info("1.0"), "2.0": _info("2.0", summary="from json")},
        metadata={wheel: _core_fields("demo.pkg", "2.0.0", "from METADATA")},
    )
    p = assemble_project(parsed, plan, bodies)
    by = {d.filename: d for d in p.distributions}
    w = by[wheel]
    assert (w.metadata_source, w.summary, w.name, w.version) == (
        "core-metadata",
        "from METADATA",
        "demo.pkg",
        "2.0.0",
    )
    assert w.core_metadata_sha256 == "e" * 64
    o = by[other]
    assert (o.metadata_source, o.summary, o.name, o.version) == (
        "version-json",
        "from json",
        "Demo-Pkg",
        "2.0",
    )
    assert o.core_metadata_sha256 == "f" * 64
    assert by["demo-pkg-1.0.tar.gz"].core_metadata_sha256 is None
    assert all(d.project == "demo-pkg" and d.project_serial == 7 for d in p.distributions)
    assert [r.version for r in p.releases] == ["0.1", "1.0", "2.0"]
    assert p.releases[0] == Release("demo-pkg", "0.1", None)


def test_a_missing_version_json_leaves_metadata_null_but_latest_uses_the_project_info() -> None:
    parsed = _parse(_demo())
    plan = plan_project(parsed, None, "full")
    p = assemble_project(parsed, plan, Bodies(no_info={"1.0", "2.0"}))
    assert p.latest_version == "2.0"
    sources = {d.filename: d.metadata_source for d in p.distributions}
    assert sources["demo-pkg-1.0.tar.gz"] == "none"
    assert sources["demo_pkg-2.0-py3-none-any.whl"] == "version-json"
    latest = next(r for r in p.releases if r.version == "2.0")
    assert latest.info is parsed.info
    none = next(d for d in p.distributions if d.metadata_source == "none")
    assert (none.name, none.version, none.summary) == ("Demo-Pkg", "1.0", None)


def test_assemble_copies_reused_rows_and_refreshes_their_file_attributes() -> None:
    parsed = _parse(_demo())
    infos = {"1.0": _info("1.0"), "2.0": _info("2.0")}
    stored = _stored_from(
        assemble_project(parsed, plan_project(parsed, None, "full"), Bodies(infos=infos))
    )
    doc = _demo()
    doc["last_serial"] = 8
    doc["releases"]["1.0"][1]["yanked"] = True
    doc["releases"]["1.0"][1]["yanked_reason"] = "broken"
    parsed2 = _parse(doc)
    plan = plan_project(parsed2, stored, "full")
    p = assemble_project(parsed2, plan, Bodies())
    sdist = next(d for d in p.distributions if d.filename == "demo-pkg-1.0.tar.gz")
    old = stored.distributions["demo-pkg-1.0.tar.gz"]
    assert sdist is not old
    assert (sdist.yanked, sdist.yanked_reason, sdist.project_serial) == (True, "broken", 8)
    assert (old.yanked, old.project_serial) == (False, 7)
    assert sdist.summary == "summary 1.0"  # the stored metadata is kept
    r = next(r for r in p.releases if r.version == "1.0")
    assert (r.yanked, r.yanked_reason, r.file_count) == (False, "broken", 2)


def test_a_release_is_yanked_when_all_its_files_are() -> None:
    doc = _doc(
        {
            "1.0": [
                _file(
                    "a-1.0.tar.gz",
                    SHA["a"],
                    yanked=True,
                    upload_time_iso_8601="2024-05-01T00:00:00Z",
                ),
                _file(
                    "a-1.0.zip", SHA["b"], yanked=True, upload_time_iso_8601="2024-04-01T00:00:00Z"
                ),
            ]
        }
    )
    r = wh.release_record("a", "1.0", _parse(doc).files["1.0"], None)
    assert r.yanked
    assert r.upload_time == datetime(2024, 4, 1, tzinfo=UTC)


def test_bad_version_json_fields_name_the_project_and_version() -> None:
    parsed = _parse(_demo())
    plan = plan_project(parsed, None, "full")
    bodies = Bodies(infos={"1.0": _info("1.0", classifiers="not a list"), "2.0": _info("2.0")})
    with pytest.raises(ProjectError, match=r"^demo_pkg 1\.0: expected a list of strings"):
        assemble_project(parsed, plan, bodies)


def test_assemble_shares_one_string_per_description() -> None:
    text = "README " * 1000
    parsed = _parse(_demo(description="".join(list(text))))
    plan = plan_project(parsed, None, "full")
    wheel = "demo_pkg-2.0-py3-none-any.whl"
    fields = _core_fields("Demo-Pkg", "2.0", "s") | {"description": "".join(list(text))}
    bodies = Bodies(
        infos={
            "1.0": _info("1.0", description="".join(list(text))),
            "2.0": _info("2.0", description="".join(list(text))),
        },
        metadata={wheel: fields},
    )
    p = assemble_project(parsed, plan, bodies)
    assert p.info is not None
    texts = [d.description for d in p.distributions] + [p.info["description"]]
    texts += [r.info["description"] for r in p.releases if r.info]
    assert len(texts) == 7 and all(t == text for t in texts)
    assert len({id(t) for t in texts}) == 1


# ------------------------------------------------------------------------------------- render
def _row(filename: str, version: str, **extra: Any) -> dict[str, Any]:
    row = {
        "filename": filename,
        "key": f"packages/aa/bb/{filename}",
        "sha256": SHA["a"],
        "md5": None,
        "blake2b_256": None,
        "size": 10,
        "upload_time": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "yanked": False,
        "yanked_reason": None,
        "file_requires_python": ">=3.9",
        "release_version": version,
        "packagetype": "sdist",
        "python_version": "source",
    }
    return row | extra


def test_render_json_api_documents() -> None:
    releases: dict[str, dict[str, Any] | None] = {"1.10": _info("1.10"), "1.9": None, "0.1": None}
    files = [
        _row("p-1.10.tar.gz", "1.10"),
        _row("p-1.9.tar.gz", "1.9"),
        _row("p-2.0.tar.gz", "2.0"),
    ]
    out = wh.render_json_api(
        "p", 3, {"name": "p", "version": "2.0"}, "2.0", releases, files, root_uri="https://m"
    )
    # 1.9 has no stored info and is not the latest: no version document
    assert sorted(out) == ["pypi/p/1.10/json", "pypi/p/2.0/json", "pypi/p/json"]
    project = json.loads(out["pypi/p/json"])
    # every stored release, files or not (keys sorted as text: sort_keys undoes version order)
    assert list(project["releases"]) == ["0.1", "1.10", "1.9", "2.0"]
    assert project["releases"]["0.1"] == []
    assert [u["filename"] for u in project["urls"]] == ["p-2.0.tar.gz"]
    f = project["releases"]["1.10"][0]
    assert f["url"] == "https://m/packages/aa/bb/p-1.10.tar.gz"
    assert f["upload_time_iso_8601"] == "2024-01-02T03:04:05.000000Z"
    assert f["digests"] == {"sha256": SHA["a"]}
    assert json.loads(out["pypi/p/2.0/json"])["info"] == {"name": "p", "version": "2.0"}
    assert json.loads(out["pypi/p/1.10/json"])["last_serial"] == 3


def test_fill_file_sets_every_file_attribute() -> None:
    f = _parse(_demo()).files["1.0"][0]
    d = wh.fill_file(Distribution(f.filename, "bdist_wheel", "x", "y"), f, "demo-pkg", 4)
    for name in ("url", "sha256", "md5", "blake2b_256", "size", "upload_time", "yanked"):
        assert getattr(d, name) == getattr(f, name)
    assert (d.release_version, d.project, d.project_serial) == ("1.0", "demo-pkg", 4)
