"""distnn.vision.datasets.utils: MD5 checks, atomic download, and tar extraction that
refuses links, devices, absolute paths and '..' while leaving nothing half-done."""

import hashlib
import io
import tarfile
import urllib.error

import pytest

from distnn.vision.datasets import utils


_TYPES = (tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE)


def make_tar(path, members, mode="w:gz"):
    """``members``: (name, file contents or a member type such as tarfile.SYMTYPE[, link target])."""
    with tarfile.open(path, mode) as tar:
        for name, payload, *link in members:
            info = tarfile.TarInfo(name)
            if payload not in _TYPES:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                info.type = payload
                if link:
                    info.linkname = link[0]
                tar.addfile(info)
    return path


def test_extracts_files_and_merges_into_an_existing_folder(tmp_path):
    archive = make_tar(tmp_path / "a.tar.gz", [("pkg/", tarfile.DIRTYPE), ("pkg/x", b"new x"),
                                               ("pkg/sub/y", b"y")])
    (tmp_path / "out" / "pkg").mkdir(parents=True)
    (tmp_path / "out" / "pkg" / "x").write_bytes(b"old x")
    (tmp_path / "out" / "pkg" / "keep").write_bytes(b"keep")
    utils.extract_archive(archive, tmp_path / "out")
    out = tmp_path / "out" / "pkg"
    assert (out / "x").read_bytes() == b"new x" and (out / "sub" / "y").read_bytes() == b"y"
    assert (out / "keep").read_bytes() == b"keep"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["pkg"]  # no staging folder left


@pytest.mark.parametrize("member, match", [
    (("../evil", b"x"), r"refusing member '../evil': absolute path or '..'"),
    (("pkg/../../evil", b"x"), "absolute path or '..'"),
    (("/etc/evil", b"x"), "absolute path"),
    (("pkg/link", tarfile.SYMTYPE, "/etc/passwd"), "a link"),
    (("pkg/hard", tarfile.LNKTYPE, "pkg/ok"), "a link"),
    (("pkg/fifo", tarfile.FIFOTYPE), "a special file"),
])
def test_unsafe_members_are_refused_and_nothing_is_extracted(tmp_path, member, match):
    archive = make_tar(tmp_path / "a.tar", [("pkg/ok", b"fine"), member], mode="w")
    with pytest.raises(utils.ArchiveError, match=match):
        utils.extract_archive(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "evil").exists()


def test_corrupt_archive_is_an_archive_error(tmp_path):
    archive = make_tar(tmp_path / "a.tar.gz", [("pkg/x", bytes(range(256)) * 400)])
    archive.write_bytes(archive.read_bytes()[:300])
    with pytest.raises(utils.ArchiveError, match="corrupt or truncated archive"):
        utils.extract_archive(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_oversized_archive_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(utils, "MAX_UNPACKED_BYTES", 10)
    archive = make_tar(tmp_path / "a.tar.gz", [("x", b"0123456789ab")])
    with pytest.raises(utils.ArchiveError, match="unpacks to more than 10 bytes"):
        utils.extract_archive(archive, tmp_path / "out")


def test_download_url_is_atomic_and_checked(tmp_path, monkeypatch):
    payload = b"payload" * 1000
    served = []

    def fake_urlopen(url, timeout=None):
        served.append(url)
        if "down" in url:
            raise urllib.error.URLError("offline")
        return io.BytesIO(payload)

    monkeypatch.setattr(utils, "urlopen", fake_urlopen)
    md5 = hashlib.md5(payload).hexdigest()
    path = utils.download_url("https://host/f.bin", tmp_path, md5=md5)
    assert path == tmp_path / "f.bin" and path.read_bytes() == payload and utils.check_integrity(path, md5)
    utils.download_url("https://host/f.bin", tmp_path, md5=md5)
    assert len(served) == 1  # verified file reused
    with pytest.raises(RuntimeError, match="does not match the expected 0000"):
        utils.download_url("https://host/g.bin", tmp_path, md5="0000")
    with pytest.raises(urllib.error.URLError):
        utils.download_url("https://down/h.bin", tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
