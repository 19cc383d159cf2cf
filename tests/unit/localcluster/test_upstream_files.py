"""Pinned upstream files (CRDs, KServe presets, seed manifests): cache, mirror, download, checksum, clear failure."""
import hashlib
import io
import re
import urllib.error

import pytest

from localcluster import crds

DATA = b"kind: CustomResourceDefinition\n"
SOURCE = crds.SourceFile("crds/example/v1/thing.yaml", "https://example.invalid/v1/thing.yaml",
                         hashlib.sha256(DATA).hexdigest())


@pytest.fixture
def pinned(tmp_path, monkeypatch):
    """One pinned file, an empty cache under tmp_path, no mirror, and no network (urlopen records its calls)."""
    monkeypatch.setenv("LLM_SERVING_GKE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(crds.MIRROR_ENV, raising=False)
    monkeypatch.setattr(crds, "SIBLING_MIRROR", tmp_path / "no-sibling")
    monkeypatch.setitem(crds.UPSTREAM_FILES, SOURCE.relpath, SOURCE)
    calls = []

    def offline(url, timeout):
        calls.append(url)
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(crds.urllib.request, "urlopen", offline)
    return calls


def test_every_pinned_file_has_a_sha256_and_an_immutable_url():
    assert len(crds.UPSTREAM_FILES) == len(crds.CRD_FILES) + len(crds.PRESET_FILES) + len(crds.SEED_FILES)
    for source in crds.UPSTREAM_FILES.values():
        assert re.fullmatch(r"[0-9a-f]{64}", source.sha256), source.relpath
        # a release tag (vX.Y.Z) or a full commit id, never a branch
        assert re.search(r"/(v\d+\.\d+\.\d+|[0-9a-f]{40})/", source.url), source.url
        assert source.url.startswith("https://raw.githubusercontent.com/"), source.url


def test_cached_file_is_used_without_network(pinned, tmp_path):
    path = tmp_path / "cache" / "upstream" / SOURCE.relpath
    path.parent.mkdir(parents=True)
    path.write_bytes(DATA)
    assert crds.upstream_file(SOURCE.relpath) == path
    assert pinned == []


def test_mirror_file_is_checked_and_copied_into_the_cache(pinned, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    (mirror / SOURCE.relpath).parent.mkdir(parents=True)
    (mirror / SOURCE.relpath).write_bytes(DATA)
    monkeypatch.setenv(crds.MIRROR_ENV, str(mirror))
    path = crds.upstream_file(SOURCE.relpath)
    assert path == tmp_path / "cache" / "upstream" / SOURCE.relpath and path.read_bytes() == DATA
    assert pinned == []


def test_download_fills_the_cache(pinned, tmp_path, monkeypatch):
    monkeypatch.setattr(crds.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(DATA))
    assert crds.upstream_file(SOURCE.relpath).read_bytes() == DATA
    assert (tmp_path / "cache" / "upstream" / SOURCE.relpath).is_file()


def test_a_changed_file_is_refused_wherever_it_comes_from(pinned, tmp_path, monkeypatch):
    cached = tmp_path / "cache" / "upstream" / SOURCE.relpath
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"tampered")  # a corrupt cache entry is not used
    mirror = tmp_path / "mirror"
    (mirror / SOURCE.relpath).parent.mkdir(parents=True)
    (mirror / SOURCE.relpath).write_bytes(b"other")
    monkeypatch.setenv(crds.MIRROR_ENV, str(mirror))
    monkeypatch.setattr(crds.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(b"moved tag"))
    with pytest.raises(crds.UpstreamFileError) as err:
        crds.upstream_file(SOURCE.relpath)
    message = str(err.value)
    assert f"not the pinned {SOURCE.sha256}" in message
    assert str(mirror / SOURCE.relpath) in message and SOURCE.url in message
    assert cached.read_bytes() == b"tampered"


def test_no_cache_no_mirror_no_network_fails_naming_file_url_and_remedy(pinned):
    with pytest.raises(crds.UpstreamFileError) as err:
        crds.upstream_file(SOURCE.relpath)
    message = str(err.value)
    assert SOURCE.relpath in message and SOURCE.url in message and "cannot be downloaded" in message
    assert crds.MIRROR_ENV in message and "Allow the download" in message
    assert pinned == [SOURCE.url]


def test_unknown_file_is_refused():
    with pytest.raises(crds.UpstreamFileError, match="not a pinned upstream file"):
        crds.upstream_file("crds/unpinned.yaml")


def test_helpers_return_the_presets_folder_and_seed_manifests(pinned, tmp_path, monkeypatch):
    store = {source.url: f"# {source.relpath}\n".encode() for source in crds.UPSTREAM_FILES.values()}
    for relpath, source in list(crds.UPSTREAM_FILES.items()):
        monkeypatch.setitem(crds.UPSTREAM_FILES, relpath, crds.SourceFile(
            source.relpath, source.url, hashlib.sha256(store[source.url]).hexdigest()))
    monkeypatch.setattr(crds, "PRESET_FILES", tuple(crds.UPSTREAM_FILES[s.relpath] for s in crds.PRESET_FILES))
    monkeypatch.setattr(crds.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(store[url]))
    presets = crds.presets_dir()
    assert sorted(p.stem for p in presets.glob("*.yaml")) == sorted(crds.PRESET_NAMES)
    seed = crds.seed_manifest("llmisvc-gpu-pattern3.yaml")
    assert seed.read_text() == "# seed/manifests/llmisvc-gpu-pattern3.yaml\n"


def test_a_shared_folder_beside_the_checkout_is_a_mirror(pinned, tmp_path, monkeypatch):
    sibling = tmp_path / "shared"
    (sibling / "crds").mkdir(parents=True)
    (sibling / SOURCE.relpath).parent.mkdir(parents=True, exist_ok=True)
    (sibling / SOURCE.relpath).write_bytes(DATA)
    monkeypatch.setattr(crds, "SIBLING_MIRROR", sibling)
    assert crds.upstream_file(SOURCE.relpath).read_bytes() == DATA
    assert [mirror for mirror, _origin in crds.mirrors()] == [sibling]
