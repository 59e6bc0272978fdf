"""Writing files so that nothing is ever half-written: every writer of the project goes through here.

    atomic_write(path, write)     write(tmp) fills a temporary file beside path (PATH.PID.tmp), which replaces path in
                                  one rename; on any failure (full disk, read-only folder, Ctrl-C) the
                                  temporary file is removed and path is left as it was; a path that exists and
                                  is not a regular file (a device, FIFO, socket, folder) is refused; temporaries
                                  of path left by a process that died (killed at the rename) are removed
    atomic_write_all(items)       several files all or none: every temporary is written first, then renamed
    check_target(path, overwrite) a UserError unless path may be written: never a non-regular file, an existing
                                  file only with overwrite (what every command that writes a user-named file asks)
    append_line(path, line)       one line appended whole, or the file truncated back to where it was
    read_jsonl(path)              the rows of a JSON-lines file; a torn last line (a write cut short before this
                                  module existed, or by a crash of the machine) is skipped with a warning

Deliberately left out: fsync (a crash of the whole machine may lose the last writes, never mix two files).
"""
import errno
import json
import os
import stat
import sys

from config import UserError

TMP_SUFFIX = ".tmp"


def check_target(path, overwrite=False, flag="--overwrite"):
    """Refuse to write path (UserError) when it is a folder, a device, FIFO or socket (always: a rename would
    put a regular file in its place), or an existing file and overwrite is not set."""
    if os.path.isdir(path) or path.endswith(os.sep):
        raise UserError(f"{path} is a folder; give the file to write, e.g. {os.path.join(path, 'out')}")
    if os.path.lexists(path) and not os.path.isfile(path):
        raise UserError(f"{path} is not a regular file (a device, pipe, socket or broken link): it is never "
                        "written; give a file's path")
    if os.path.exists(path) and not overwrite:
        raise UserError(f"{path} exists; pass {flag} to replace it, or write elsewhere")


def refuse_special(path):
    """A UserError when path exists and is not a regular file (atomic_write's rename would replace it)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError:
        if os.path.lexists(path):                 # a broken link, or one looping
            raise UserError(f"{path} is not a regular file; it is never written")
        return
    if stat.S_ISDIR(mode):
        raise UserError(f"{path} is a folder; give the file to write")
    if not stat.S_ISREG(mode):
        raise UserError(f"{path} is not a regular file (a device, pipe or socket): it is never written")


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:               # EPERM: someone else's live process
        return True
    return True


def remove_stale(path):
    """Remove path's temporaries (PATH.PID.tmp) whose process is gone: a write killed before its rename."""
    folder, base = os.path.split(os.path.abspath(path))
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        pid = name[len(base) + 1:-len(TMP_SUFFIX)] if name.startswith(base + ".") and name.endswith(TMP_SUFFIX) else ""
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass


def temporary(path):
    return f"{path}.{os.getpid()}{TMP_SUFFIX}"     # two processes writing one path never share a temporary


def atomic_write(path, write):
    """Call write(tmp_path), then rename tmp_path over path. Raises what write or the rename raised."""
    atomic_write_all([(path, write)])


def atomic_write_all(items):
    """[(path, write)]: each write(tmp) fills its temporary; only when all have succeeded are they renamed into
    place, so a failure (full disk, Ctrl-C) leaves every path as it was and no temporary behind. An OSError
    names the file asked for, not its temporary."""
    for path, _ in items:
        refuse_special(path)
    done = []
    try:
        for path, write in items:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            remove_stale(path)
            tmp = temporary(path)
            done.append(tmp)
            try:
                write(tmp)
            except OSError as e:
                if e.filename in (tmp, None) or e.errno == errno.ENOSPC:   # the target's write failed
                    raise OSError(e.errno, e.strerror, path) from e
                raise
        for (path, _), tmp in zip(items, done):
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise OSError(e.errno, e.strerror, path) from e
    except BaseException:
        for tmp in done:
            if os.path.lexists(tmp):
                os.remove(tmp)
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


def read_records(path, *fields):
    """[(value of each field, lists joined into one string)] of the records of one raw JSON file; an
    unreadable file is a UserError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return [tuple("".join(r[k]) if isinstance(r[k], list) else r[k] for k in fields) for r in json.load(f)]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"cannot read {path} ({type(e).__name__}); delete it and run again: the missing file "
                        "is fetched anew (or, with --raw-dir, replace it from your copy)")
