"""Tests for jsnq.outputs (and the one-line error names): outputs never overwrite an input,
never follow a symlink out of an output folder, and fail in one line."""

from __future__ import annotations

import os
import stat
import sys

import numpy as np
import pytest

from jsnq.errors import JsnqInputError, safe_display_name
from jsnq.io import load_image, save_image, save_labels
from jsnq.outputs import atomic_output, check_output, check_output_dir, write_atomic

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="non-UTF-8 file names are a Linux (bytes) case")


def _one_line(info) -> str:
    message = str(info.value)
    assert "\n" not in message
    message.encode("utf-8")  # printable on a UTF-8 stream
    return message


def _image(tmp_path, name="a.png"):
    path = tmp_path / name
    save_image(path, np.arange(32 * 32, dtype=np.float32).reshape(32, 32))
    return path


# -- an output that is an input ------------------------------------------------------------------


def test_output_that_is_an_input_is_refused(tmp_path):
    a = _image(tmp_path)
    before = a.read_bytes()
    # segment a.png -o a.png; measure a.png b.png --figure ./a.png; measure-batch pairs.csv --out pairs.csv
    for output in (a, tmp_path / "." / "a.png", tmp_path / "sub" / ".." / "a.png"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(JsnqInputError) as info:
            check_output(output, inputs=[None, tmp_path / "b.png", a])
        assert f"output would overwrite the input {a}" in _one_line(info)
    with pytest.raises(JsnqInputError, match="would overwrite the input"):
        write_atomic(a, b"x", inputs=[a])
    with pytest.raises(JsnqInputError, match="would overwrite the input"):
        save_labels(a, np.ones((32, 32), np.uint8), inputs=[a])
    assert a.read_bytes() == before


def test_output_linked_to_an_input_is_refused(tmp_path):
    a = _image(tmp_path)
    os.link(a, tmp_path / "hard.png")
    with pytest.raises(JsnqInputError, match="would overwrite the input"):
        check_output(tmp_path / "hard.png", inputs=[a])  # same inode, other name
    (tmp_path / "soft.png").symlink_to(a)
    with pytest.raises(JsnqInputError, match="would overwrite the input"):
        check_output(tmp_path / "soft.png", inputs=[a])
    with pytest.raises(JsnqInputError, match="would overwrite the input"):
        check_output(a, inputs=[tmp_path / "soft.png"])  # the input given through a link


def test_other_outputs_pass(tmp_path):
    a = _image(tmp_path)
    assert check_output(tmp_path / "out.png", inputs=[a]) == tmp_path / "out.png"
    write_atomic(tmp_path / "out.txt", "é\n", inputs=[a])
    assert (tmp_path / "out.txt").read_text(encoding="utf-8") == "é\n"
    assert stat.S_IMODE(os.stat(tmp_path / "out.txt").st_mode) == 0o644
    write_atomic(tmp_path / "out.txt", b"again")  # overwriting an earlier output is fine
    assert (tmp_path / "out.txt").read_bytes() == b"again"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "out.txt"]  # no temporary left


# -- symlinks in an output folder -------------------------------------------------------------------


def test_symlink_in_an_output_folder_is_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere.png"
    elsewhere.write_bytes(b"precious")
    figures = check_output_dir(tmp_path / "figures")
    (figures / "x.png").symlink_to(elsewhere)  # --figures DIR with DIR/x.png -> /elsewhere
    with pytest.raises(JsnqInputError) as info:
        write_atomic(figures / "x.png", b"figure", folder=figures)
    assert "output is a symbolic link; jsnq does not write through links" in _one_line(info)
    with pytest.raises(JsnqInputError, match="symbolic link"):
        save_image(figures / "x.png", np.eye(20))
    (figures / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(JsnqInputError, match="symbolic link"):
        check_output(figures / "dangling.png")
    assert elsewhere.read_bytes() == b"precious" and not (tmp_path / "nowhere.png").exists()


def test_name_leaving_the_output_folder_is_refused(tmp_path):
    figures = check_output_dir(tmp_path / "figures")
    with pytest.raises(JsnqInputError, match="is not inside the output folder"):
        check_output(figures / ".." / "x.png", folder=figures)
    check_output(figures / "x.png", folder=figures)


def test_check_output_dir(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(JsnqInputError, match="exists and is not a directory"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(JsnqInputError, match="parent directory does not exist"):
        check_output_dir(tmp_path / "no" / "such")
    with pytest.raises(JsnqInputError, match="output directory does not exist"):
        check_output_dir(tmp_path / "new", create=False)
    assert check_output_dir(tmp_path / "new").is_dir()
    with pytest.raises(JsnqInputError, match="is a directory, not a file name"):
        check_output(tmp_path / "new")
    with pytest.raises(JsnqInputError, match="output directory does not exist"):
        check_output(tmp_path / "missing" / "x.png")


# -- unwritable folders: one line, no OSError traceback -----------------------------------------------


@pytest.mark.skipif(IS_ROOT, reason="root writes into read-only folders; covered by the EROFS test below")
def test_read_only_folder_is_one_line(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(JsnqInputError) as info:
            check_output(folder / "labels.png")
        assert "cannot write to the folder" in _one_line(info)
        with pytest.raises(JsnqInputError, match="cannot write"):
            save_labels(folder / "labels.png", np.ones((4, 4), np.uint8))
    finally:
        folder.chmod(0o755)


def test_read_only_file_system_is_one_line(tmp_path, monkeypatch):
    # segment -o into a read-only mount used to end in "OSError: [Errno 30]" and a traceback.
    # Simulated (the tests may run as root, who ignores permission bits): os.access passes,
    # then every attempt to create or write a file under tmp_path fails with EROFS.
    import builtins
    import errno

    real_os_open, real_open = os.open, builtins.open
    folder = os.fspath(tmp_path)

    def erofs():
        return OSError(errno.EROFS, os.strerror(errno.EROFS))

    def os_open(path, flags, *args, **kwargs):
        if os.fsdecode(path).startswith(folder) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise erofs()
        return real_os_open(path, flags, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and os.fsdecode(file).startswith(folder) \
                and set(mode) & set("wax+"):
            raise erofs()
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", open_)
    labels = np.where(np.arange(16)[:, None] < 8, 1, 2).repeat(16, axis=1).astype(np.uint8)
    with pytest.raises(JsnqInputError) as info:
        save_labels(tmp_path / "labels.png", labels)
    assert _one_line(info) == f"{tmp_path / 'labels.png'}: cannot write: Read-only file system"
    with pytest.raises(JsnqInputError, match="cannot write: Read-only file system"):
        write_atomic(tmp_path / "out.json", "{}")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_failure_while_writing_leaves_no_partial_file(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer crashed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


# -- file names that are not UTF-8 -----------------------------------------------------------------------


@linux_only
def test_non_utf8_file_name_reads_and_displays(tmp_path):
    raw = os.fsencode(tmp_path) + b"/caf\xe9 \xff.png"  # Latin-1 bytes: not valid UTF-8
    name = os.fsdecode(raw)  # "caf\udce9 \udcff.png": surrogate escapes
    with pytest.raises(UnicodeEncodeError):
        name.encode("utf-8")  # what crashed matplotlib's set_text and the HTML report
    save_image(name, np.arange(400.0).reshape(20, 20))
    assert os.path.exists(raw)
    image = load_image(raw)  # a bytes path works too, and its source is the str name
    assert image.source == name and load_image(name).shape == (20, 20)
    shown = safe_display_name(name)
    assert shown == safe_display_name(raw) == f"{tmp_path}/caf\\xe9 \\xff.png"
    shown.encode("utf-8")
    write_atomic(os.fsdecode(os.fsencode(tmp_path) + b"/r\xe9port.html"), f"<h1>{shown}</h1>")
    with pytest.raises(JsnqInputError, match="text to write is not valid UTF-8"):
        write_atomic(tmp_path / "bad.html", f"<h1>{name}</h1>")  # raw name: refused in one line
    with pytest.raises(JsnqInputError) as info:
        load_image(os.fsdecode(os.fsencode(tmp_path) + b"/missing\xe9.png"))
    assert _one_line(info).endswith("missing\\xe9.png: file not found")


def test_display_name_escapes_control_characters():
    assert safe_display_name("plain é.png") == "plain é.png"
    assert safe_display_name("a\nb.png") == "a\\nb.png"
    assert safe_display_name("\x1b[31mred\u202e.png") == "\\x1b[31mred\\u202e.png"
    assert safe_display_name("\ud800.png") == "\\ud800.png"  # a surrogate that is no file-system escape
    err = JsnqInputError("scan\n7.png", "file not found")
    assert str(err) == "scan\\n7.png: file not found" and err.source == "scan\n7.png"
