"""Download and archive helpers named as in ``torchvision.datasets.utils``: MD5
checks, a streamed download that appears under its name only once complete and
verified, and a ``tar`` extraction that refuses links, devices, absolute paths
and ``..`` and moves each entry into place only once fully unpacked.
"""

import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath
from urllib.request import urlopen

__all__ = ["ArchiveError", "calculate_md5", "check_md5", "check_integrity", "download_url",
           "extract_archive", "download_and_extract_archive"]

# The most an archive may unpack to: CIFAR-100's is 0.18 GB, so more is damaged or hostile.
MAX_UNPACKED_BYTES = 4 << 30
_CHUNK = 1 << 20


class ArchiveError(ValueError):
    """An archive is corrupt, truncated, or holds a member that may not be extracted."""


def calculate_md5(fpath, chunk_size=_CHUNK):
    digest = hashlib.md5()
    with open(fpath, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def check_md5(fpath, md5, **kwargs):
    return md5 == calculate_md5(fpath, **kwargs)


def check_integrity(fpath, md5=None):
    """``fpath`` is a file and, when ``md5`` is given, has that MD5."""
    if not os.path.isfile(fpath):
        return False
    return md5 is None or check_md5(fpath, md5)


def download_url(url, root, filename=None, md5=None, timeout=30):
    """Fetch ``url`` into ``root/filename`` (default: the URL's last part) unless a
    file with that MD5 is already there; returns the path. The body is streamed
    into a hidden temporary file beside the target, checked, and renamed into
    place, so a failed or interrupted download leaves nothing under the name.
    Network failures raise ``OSError`` (``URLError``), a wrong MD5 ``RuntimeError``."""
    root = Path(os.path.expanduser(str(root)))
    filename = filename or os.path.basename(url)
    fpath = root / filename
    if check_integrity(fpath, md5):
        return fpath
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=root)
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urlopen(url, timeout=timeout) as response:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if md5 is not None and digest.hexdigest() != md5:
            raise RuntimeError(f"{url}: MD5 {digest.hexdigest()} does not match the expected {md5}")
        os.replace(tmp, fpath)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        if created:
            _remove_if_empty(root)
        raise
    return fpath


def extract_archive(from_path, to_path=None, remove_finished=False):
    """Unpack the tar archive ``from_path`` (plain, gz, bz2 or xz) into ``to_path``
    (default: its folder); returns ``to_path``. Members are unpacked into a hidden
    folder inside ``to_path`` first; then each top-level entry is renamed into
    place (an existing folder is merged file by file), so no half-written file
    ever stands under its final name. Raises ``ArchiveError`` for a corrupt archive
    or one with links, devices, absolute paths, ``..`` or more than
    ``MAX_UNPACKED_BYTES``, having extracted nothing."""
    from_path = Path(from_path)
    to_path = Path(to_path) if to_path is not None else from_path.parent
    to_path.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=to_path))
    try:
        try:
            with tarfile.open(from_path, "r:*") as tar:
                _unpack_members(tar, staging, from_path)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise ArchiveError(f"{from_path}: corrupt or truncated archive ({exc})") from None
        for entry in sorted(staging.iterdir()):
            _move_into_place(entry, to_path / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if remove_finished:
        from_path.unlink()
    return to_path


def download_and_extract_archive(url, download_root, extract_root=None, filename=None, md5=None,
                                 remove_finished=False):
    archive = download_url(url, download_root, filename, md5)
    return extract_archive(archive, extract_root if extract_root is not None else download_root,
                           remove_finished)


def _unpack_members(tar, staging, source):
    unpacked = 0
    for member in tar:
        parts = PurePosixPath(member.name).parts
        if member.name.startswith("/") or ".." in parts or "\\" in member.name:
            raise ArchiveError(f"{source}: refusing member {member.name!r}: absolute path or '..' "
                               "(it would land outside the extraction folder)")
        if not parts and member.isdir():
            continue
        target = staging.joinpath(*parts)
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
        elif member.isfile():
            unpacked += member.size
            if unpacked > MAX_UNPACKED_BYTES:
                raise ArchiveError(f"{source}: unpacks to more than {MAX_UNPACKED_BYTES} bytes "
                                   "(utils.MAX_UNPACKED_BYTES)")
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
        else:
            kind = "link" if member.issym() or member.islnk() else "special file"
            raise ArchiveError(f"{source}: refusing member {member.name!r}: a {kind} "
                               "(only regular files and folders are extracted)")


def _move_into_place(src, dest):
    if not os.path.lexists(dest):
        os.replace(src, dest)
    elif src.is_dir() and dest.is_dir():
        for child in sorted(src.iterdir()):
            _move_into_place(child, dest / child.name)
    elif src.is_file() and dest.is_file():
        os.replace(src, dest)
    else:
        raise ArchiveError(f"cannot extract {src.name}: {dest} exists and is not a "
                           f"{'folder' if src.is_dir() else 'file'}")


def _remove_if_empty(folder):
    try:
        folder.rmdir()
    except OSError:
        pass
