"""`python -m ft.finish.export.install`: put llama.cpp's converters where `ft export` finds them.

llama-cpp-python's wheel carries llama.cpp's library but not its Python converters; its source release
carries both. This downloads the source release of the llama-cpp-python version installed here (pip's
cache answers the second time) and copies convert_hf_to_gguf.py, convert_lora_to_gguf.py, the
`conversion` package and the `gguf` package beside them into <environment>/share/llama.cpp.
`make install-export` runs it after installing `.[export]`.
"""

import importlib.metadata
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

WANTED = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion/", "gguf-py/")


def install(target: Path) -> None:
    version = importlib.metadata.version("llama-cpp-python")
    with tempfile.TemporaryDirectory() as scratch:
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
        subprocess.run([*command, f"llama-cpp-python=={version}", "-d", scratch], check=True)
        (sdist,) = Path(scratch).glob("*.tar.gz")
        prefix = f"{sdist.name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
        staging = Path(scratch) / "llama.cpp"
        with tarfile.open(sdist) as archive:
            members = [m for m in archive.getmembers() if m.name.removeprefix(prefix).startswith(WANTED)]
            for member in members:
                member.name = member.name.removeprefix(prefix)
            archive.extractall(staging, members=members, filter="data")
        (staging / "VERSION").write_text(f"llama-cpp-python {version}\n")
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(staging, target)
    print(f"ft: llama.cpp's converters (llama-cpp-python {version}) installed in {target}")


if __name__ == "__main__":
    install(Path(sys.prefix) / "share" / "llama.cpp")
