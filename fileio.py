"""Writing files so that nothing is ever half-written: every writer of the project goes through here.

    atomic_write(path, write)     write(tmp) fills a temporary file beside path (PATH.PID.tmp), which replaces path in
                                  one rename; on any failure (full disk, read-only folder, Ctrl-C) the
                                  temporary file is removed and path is left as it was
    append_line(path, line)       one line appended whole, or the file truncated back to where it was
    read_jsonl(path)              the rows of a JSON-lines file; a torn last line (a write cut short before this
                                  module existed, or by a crash of the machine) is skipped with a warning

Deliberately left out: fsync (a crash of the whole machine may lose the last writes, never mix two files).
"""
import errno
import json
import os
import sys

TMP_SUFFIX = ".tmp"


def atomic_write(path, write):
    """Call write(tmp_path), then rename tmp_path over path. Raises what write or the rename raised."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.{os.getpid()}{TMP_SUFFIX}"         # two processes writing one path never share a temporary
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.lexists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and e.filename == tmp:          # name the file asked for, not the temporary
            raise OSError(e.errno, e.strerror, path) from e
        raise


def write_text(path, text):
    """text (UTF-8) to path, atomically."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    atomic_write(path, write)


def write_json(path, obj):
    write_text(path, json.dumps(obj, ensure_ascii=False, indent=2))


def save_figure(fig, path, **kwargs):
    """A matplotlib figure to path (PNG), atomically."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", **kwargs))


def append_line(path, line):
    """Append line and a newline to path as one write; on failure the file is cut back to its old size."""
    data = (line + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except BaseException:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def read_jsonl(path):
    """The JSON objects of path's lines, skipping blank lines and lines that do not parse (with a warning)."""
    rows, torn = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                torn += 1
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                torn += 1
    if torn:
        print(f"warning: skipped {torn} unreadable line(s) of {path}", file=sys.stderr)
    return rows
