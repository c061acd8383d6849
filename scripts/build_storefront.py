"""Build the shipped popup script from its one source, storefront_js/popup.js.

The same bytes go to two places: the Shopify theme app extension's asset
(extensions/popsync-embed/assets/popup.js) and the file the app serves at /storefront/popup.js
(app/storefront/static/popup.js). Both copies are committed; tests/unit/test_storefront_bundle.py checks
they match a fresh build.

The source is minified with terser (pinned in package.json, installed by `npm ci`): Shopify's theme-check
caps an app embed's JavaScript asset at 10,000 bytes as stored, so readable source alone does not fit.

    python scripts/build_storefront.py          # rebuild both copies
    python scripts/build_storefront.py --check  # exit 1 when a copy differs from a fresh build
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "storefront_js" / "popup.js"
TARGETS = (
    ROOT / "extensions" / "popsync-embed" / "assets" / "popup.js",
    ROOT / "app" / "storefront" / "static" / "popup.js",
)
TERSER = ROOT / "node_modules" / "terser" / "bin" / "terser"
# ES2020 output: every browser a storefront supports runs it; `unsafe_arrows` only turns function
# expressions that never use `this` or `new` into arrows.
TERSER_ARGS = (
    "--ecma",
    "2020",
    "--compress",
    "passes=3,unsafe_arrows=true,ecma=2020",
    "--mangle",
    "--comments",
    "/^!/",
)
# theme-check's AssetSizeAppBlockJavaScript limit (bytes on disk) and the design's gzip budget.
MAX_BYTES = 10_000
MAX_GZIP_BYTES = 10_240


class BuildError(RuntimeError):
    """Node or terser is missing, or terser failed."""


def build() -> bytes:
    """The shipped script: the source minified by the pinned terser."""
    node = shutil.which("node")
    if node is None:
        raise BuildError("node is not installed: the storefront build needs Node.js (apt-get install nodejs)")
    if not TERSER.exists():
        raise BuildError(f"{TERSER.relative_to(ROOT)} is missing: run `npm ci` in {ROOT}")
    result = subprocess.run(  # noqa: S603 - fixed arguments, our own files
        [node, str(TERSER), str(SOURCE), *TERSER_ARGS],
        capture_output=True,
        check=False,
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise BuildError(f"terser failed: {result.stderr.decode(errors='replace')}")
    return result.stdout.rstrip(b"\n") + b"\n"


def gzip_size(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare the copies with a fresh build")
    args = parser.parse_args(argv)
    try:
        shipped = build()
    except BuildError as error:
        print(f"build_storefront: {error}", file=sys.stderr)
        return 2
    source_size = len(SOURCE.read_bytes())
    print(f"popup.js: {source_size} B source, {len(shipped)} B shipped, {gzip_size(shipped)} B gzipped")
    problems = []
    if len(shipped) > MAX_BYTES:
        problems.append(f"shipped script is {len(shipped)} B, over theme-check's {MAX_BYTES} B")
    if gzip_size(shipped) > MAX_GZIP_BYTES:
        problems.append(f"shipped script is {gzip_size(shipped)} B gzipped, over {MAX_GZIP_BYTES} B")
    for target in TARGETS:
        name = target.relative_to(ROOT)
        if args.check:
            if not target.exists() or target.read_bytes() != shipped:
                problems.append(f"{name} is out of date: run python scripts/build_storefront.py")
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(shipped)
            print(f"wrote {name}")
    for problem in problems:
        print(f"build_storefront: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
