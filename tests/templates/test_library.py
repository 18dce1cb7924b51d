"""The template library without a build: manifests round-trip, digests follow what they fingerprint, lineage and
staleness follow the bases, and a template another one is built on cannot be removed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crane_iac.templates import digests
from crane_iac.templates.library import Library, TemplateError
from crane_iac.templates.manifest import Manifest
from tests.templates.helpers import add_template, fake_root


def test_a_manifest_round_trips_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    library = Library(tmp_path / "lib")
    made = add_template(library, "cfd", "dir", str(fake_root(tmp_path / "root")))
    assert library.manifest("cfd") == made
    text = made.to_json().replace('"version": 1', '"version": 99')
    with pytest.raises(ValueError, match="manifest version 99 is newer"):
        Manifest.from_json(text, "x/manifest.json")


def test_a_missing_template_is_named_with_those_there_are(tmp_path: Path) -> None:
    library = Library(tmp_path / "lib")
    add_template(library, "cfd", "dir", str(fake_root(tmp_path / "root")))
    with pytest.raises(TemplateError, match=r"no template 'nope' in the library .* \(templates: cfd\)"):
        library.manifest("nope")
    with pytest.raises(TemplateError, match="template name"):
        library.path("../escape")


def test_the_tree_digest_follows_content_mode_and_links(tmp_path: Path) -> None:
    tree = tmp_path / "upper"
    (tree / "opt").mkdir(parents=True)
    (tree / "opt/tool").write_text("v1")
    first = digests.tree_digest(tree)
    assert digests.tree_digest(tree) == first
    (tree / "opt/tool").write_text("v2")
    second = digests.tree_digest(tree)
    assert second != first
    os.chmod(tree / "opt/tool", 0o755)
    third = digests.tree_digest(tree)
    assert third != second
    (tree / "opt/link").symlink_to("tool")
    assert digests.tree_digest(tree) != third


def test_added_packages_are_the_new_and_the_upgraded(tmp_path: Path) -> None:
    root = fake_root(tmp_path, "Package: a\nStatus: install ok installed\nVersion: 1\n\n"
                               "Package: b\nStatus: deinstall ok config-files\nVersion: 1\n")
    before = digests.packages(root)
    assert before == {"a": "1"}
    after = {"a": "2", "c": "5"}
    assert digests.added_packages(before, after) == ["a=2", "c=5"]


def test_lineage_and_staleness_follow_the_bases(tmp_path: Path) -> None:
    root = fake_root(tmp_path / "root")
    library = Library(tmp_path / "lib")
    add_template(library, "base-tools", "dir", str(root), content="sha256:tools")
    add_template(library, "cfd", "template", "base-tools", content="sha256:cfd")
    assert [m.name for m in library.lineage("cfd")] == ["cfd", "base-tools"]
    assert library.layers("cfd") == ([library.path("cfd") / "layer.img", library.path("base-tools") / "layer.img"],
                                     str(root))
    assert library.stale("cfd") is None
    # an upgrade of the base (its package database changes): both are stale, named at the template built on it
    (root / "var/lib/dpkg/status").write_text("Package: base-files\nStatus: install ok installed\nVersion: 13\n")
    stale = library.stale("cfd")
    assert stale is not None and (stale.template, stale.base) == ("base-tools", str(root))
    assert "its base" in str(stale) and "rebuild it" in str(stale)


def test_a_template_rebuilt_under_its_child_makes_the_child_stale(tmp_path: Path) -> None:
    library = Library(tmp_path / "lib")
    add_template(library, "base-tools", "dir", str(fake_root(tmp_path / "root")), content="sha256:one")
    add_template(library, "cfd", "template", "base-tools")
    (library.path("base-tools") / "manifest.json").write_text(
        library.manifest("base-tools").to_json().replace("sha256:one", "sha256:two"))
    stale = library.stale("cfd")
    assert stale is not None and (stale.template, stale.base) == ("cfd", "base-tools")


def test_removing_a_template_another_is_built_on_is_refused(tmp_path: Path) -> None:
    library = Library(tmp_path / "lib")
    add_template(library, "base-tools", "dir", str(fake_root(tmp_path / "root")))
    add_template(library, "cfd", "template", "base-tools")
    with pytest.raises(TemplateError, match="'base-tools' is the base of cfd; remove it first"):
        library.remove("base-tools")
    library.remove("cfd")
    library.remove("base-tools")
    assert library.names() == []
