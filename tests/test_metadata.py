"""Core metadata 1.0 to 2.4 and version-JSON info mapped onto the schema's columns."""

from __future__ import annotations

import pytest

from pypi_assets.pypi.metadata import (
    MetadataError,
    fields_from_core_metadata,
    fields_from_version_info,
)

M10 = b"""Metadata-Version: 1.0
Name: Old_Pkg
Version: 0.1
Summary: An old one
Home-page: http://old.example
Author: A. Author
Author-email: a@old.example
License: GPL
Keywords: old legacy, things
Platform: UNKNOWN
Description: First line
        |
        |Second paragraph
"""

M11 = b"""Metadata-Version: 1.1
Name: mid
Version: 1.1
Summary: s
Download-URL: http://dl.example/mid-1.1.tgz
Classifier: Programming Language :: Python
Classifier: Topic :: Utilities
Supported-Platform: RedHat 7.2
Supported-Platform: i386-win32
Platform: linux
Platform: win32
"""

M12 = b"""Metadata-Version: 1.2
Name: twelve
Version: 1.2
Maintainer: M
Maintainer-email: m@example.org
Requires-Python: >=2.7
Requires-Dist: six (>=1.0)
Requires-Dist: pywin32; sys_platform == "win32"
Provides-Dist: twelve_compat
Obsoletes-Dist: Gorgon
Requires-External: C
Requires-External: libpng (>=1.5)
Project-URL: Bug Tracker, http://bugs.example/
Project-URL: Source, http://src.example/
"""

M21 = b"""Metadata-Version: 2.1
Name: twentyone
Version: 2.1
Description-Content-Type: text/markdown; charset=UTF-8
Provides-Extra: test
Requires-Dist: pytest; extra == "test"

# Body

The description is the body.
"""

M22 = b"""Metadata-Version: 2.2
Name: twentytwo
Version: 2.2
Dynamic: Requires-Dist
Dynamic: Version
"""

M23 = b"""Metadata-Version: 2.3
Name: twenty-three
Version: 2.3
Summary: normalised names
"""

M24 = b"""Metadata-Version: 2.4
Name: twentyfour
Version: 2.4
License-Expression: MIT AND (Apache-2.0 OR BSD-2-Clause)
License-File: LICENSE
License-File: licenses/NOTICE
"""


def test_metadata_1_0() -> None:
    f = fields_from_core_metadata(M10)
    assert f["metadata_version"] == "1.0"
    assert (f["core_name"], f["core_version"]) == ("Old_Pkg", "0.1")
    assert f["summary"] == "An old one"
    assert f["home_page"] == "http://old.example"
    assert (f["author"], f["author_email"]) == ("A. Author", "a@old.example")
    assert f["license"] == "GPL"
    assert f["keywords"] == "old legacy, things"  # kept as written
    assert f["platform"] == ["UNKNOWN"]
    assert f["description"] == "First line\n\nSecond paragraph"  # setuptools' folding removed
    assert f["requires_dist"] == [] and f["classifiers"] == [] and f["project_url"] == []


def test_metadata_1_1() -> None:
    f = fields_from_core_metadata(M11)
    assert f["download_url"] == "http://dl.example/mid-1.1.tgz"
    assert f["classifiers"] == ["Programming Language :: Python", "Topic :: Utilities"]
    assert f["supported_platform"] == ["RedHat 7.2", "i386-win32"]
    assert f["platform"] == ["linux", "win32"]


def test_metadata_1_2() -> None:
    f = fields_from_core_metadata(M12)
    assert (f["maintainer"], f["maintainer_email"]) == ("M", "m@example.org")
    assert f["requires_python"] == ">=2.7"
    assert f["requires_dist"] == ["six (>=1.0)", 'pywin32; sys_platform == "win32"']
    assert f["provides_dist"] == ["twelve_compat"]
    assert f["obsoletes_dist"] == ["Gorgon"]
    assert f["requires_external"] == ["C", "libpng (>=1.5)"]
    assert f["project_url"] == ["Bug Tracker, http://bugs.example/", "Source, http://src.example/"]


def test_metadata_2_1_body_description() -> None:
    f = fields_from_core_metadata(M21)
    assert f["description"] == "# Body\n\nThe description is the body.\n"
    assert f["description_content_type"] == "text/markdown; charset=UTF-8"
    assert f["provides_extra"] == ["test"]
    assert f["requires_dist"] == ['pytest; extra == "test"']


def test_metadata_2_2_dynamic() -> None:
    assert fields_from_core_metadata(M22)["dynamic"] == ["Requires-Dist", "Version"]


def test_metadata_2_3() -> None:
    f = fields_from_core_metadata(M23)
    assert (f["metadata_version"], f["core_name"], f["summary"]) == (
        "2.3",
        "twenty-three",
        "normalised names",
    )


def test_metadata_2_4_licenses() -> None:
    f = fields_from_core_metadata(M24)
    assert f["license_expression"] == "MIT AND (Apache-2.0 OR BSD-2-Clause)"
    assert f["license_files"] == ["LICENSE", "licenses/NOTICE"]
    assert f["license"] is None


def test_metadata_without_version_is_an_error() -> None:
    with pytest.raises(MetadataError):
        fields_from_core_metadata(b"Name: x\nVersion: 1\n")


def test_version_info_mapping() -> None:
    info = {
        "name": "Foo",
        "version": "1.0",
        "summary": "",
        "description": "d",
        "keywords": "a,b",
        "home_page": "https://home",
        "download_url": "https://dl",
        "author": "A",
        "author_email": None,
        "license": "MIT",
        "requires_python": ">=3.9",
        "requires_dist": None,
        "classifiers": ["C :: D"],
        "platform": "any",
        "project_urls": {
            "Homepage": "https://home",
            "Download": "https://dl",
            "Docs": "https://docs",
        },
    }
    f = fields_from_version_info(info)
    assert f["summary"] is None  # "" means absent
    assert f["keywords"] == "a,b"
    assert f["requires_dist"] == []
    assert f["platform"] == ["any"]
    assert f["project_url"] == ["Docs, https://docs"]  # Home-page / Download-URL folded back out
    # Not exposed by the JSON API: unknown, not empty.
    for col in (
        "metadata_version",
        "provides_dist",
        "obsoletes_dist",
        "requires_external",
        "supported_platform",
    ):
        assert f[col] is None


def test_version_info_rejects_hostile_types() -> None:
    with pytest.raises(MetadataError):
        fields_from_version_info({"summary": {"not": "a string"}})
    with pytest.raises(MetadataError):
        fields_from_version_info({"requires_dist": "x"})


@pytest.mark.parametrize(
    "text",
    [
        "Metadata-Version: 2.1\nName: a\nVersion: 1\nSummary: s\n\nThe body.\n\nMore.\n",
        "Metadata-Version: 2.1\r\nName: a\r\nVersion: 1\r\n\r\nCRLF body.\r\n",
        "Metadata-Version: 1.0\nName: a\nVersion: 1\nDescription: head\n        |more\n\nbody\n",
        "Metadata-Version: 2.1\nName: a\nVersion: 1\nnot a header line\nSummary: x\n",
        "Metadata-Version: 2.1\nName: a\nVersion: 1\nKeywords: a, b\n",
        "Metadata-Version: 2.1\nName: a\nVersion: 1\n\n",
    ],
    ids=["body", "crlf", "header-and-body", "defect-line", "no-body", "empty-body"],
)
def test_body_split_matches_the_email_parser(text: str) -> None:
    """The body is split off without the email parser (no copy of a huge description cut
    into lines); the columns are those of parsing the whole file with packaging."""
    from packaging.metadata import parse_email

    got = fields_from_core_metadata(text)
    raw, _unparsed = parse_email(text)
    assert got["description"] == (raw.get("description") or None)
    assert got["summary"] == raw.get("summary")
    assert got["core_name"] == raw.get("name")


def test_invalid_utf8_is_replaced_not_dropped() -> None:
    from pypi_assets.pypi.metadata import decode_core_metadata

    data = b"Metadata-Version: 2.1\nName: a\nVersion: 1\nSummary: caf\xe9\nAuthor: x\xff\n\nb\xfe\n"
    text, repaired = decode_core_metadata(data)
    assert repaired
    fields = fields_from_core_metadata(text)
    assert (fields["summary"], fields["author"], fields["description"]) == (
        "caf\ufffd",
        "x\ufffd",
        "b\ufffd\n",
    )
    assert decode_core_metadata(b"Summary: caf\xc3\xa9\n") == ("Summary: caf\u00e9\n", False)
