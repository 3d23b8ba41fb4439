import contextlib
import os
import shutil
from pathlib import Path


@contextlib.contextmanager
def unwritable(folder: Path):
    """Makes `folder` refuse writes: chmod, or (for root, whom chmod does not stop) a plain file
    put where the folder was. Restores it afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o500)
    aside = None
    if os.access(folder, os.W_OK):  # root
        os.chmod(folder, 0o700)
        aside = folder.with_name(folder.name + ".aside")
        folder.rename(aside)
        folder.write_text("not a folder: storage made unwritable by a test\n")
    try:
        yield
    finally:
        if aside is None:
            os.chmod(folder, 0o700)
        else:
            folder.unlink()
            if folder.exists():
                shutil.rmtree(folder)
            aside.rename(folder)
