"""Point the manifests' own images at a registry and tag: the step between CI's push and apply.

    python3 k8s/set_images.py --registry ghcr.io/acme --tag 3f2c1e0 \\
        < k8s-deployment.yaml > rendered.yaml

Rewrites every `image: <anything>/trading-<name>:<tag>` line (the five services and ibsim) to
`image: <registry>/trading-<name>:<tag>` and leaves every other image (Redis, the IB Gateway)
untouched. Standard library only, so it runs on a bare CI runner. Fails (exit 2) when it finds
none of our images, so a renamed image cannot slip through to an apply of stale placeholders.
"""

from __future__ import annotations

import argparse
import re
import sys

OWN_IMAGE = re.compile(
    r"^(?P<indent>\s*(?:-\s+)?image:\s*)(?P<quote>[\"']?)"
    r"(?P<registry>[^\s\"']+)/trading-(?P<name>[a-z0-9-]+):(?P<tag>[^\s\"'@]+)(?P=quote)\s*$"
)
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
"""A Docker tag: letters, digits, underscore, period and dash, at most 128 characters."""
REGISTRY = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
"""A registry host with an optional port and lowercase repository path (no tag, no digest)."""


def set_images(manifest: str, registry: str, tag: str) -> tuple[str, list[str]]:
    """The manifest with our images rewritten, and the image names rewritten (in order)."""
    if not REGISTRY.match(registry):
        raise ValueError(f"registry={registry!r} is not a lowercase registry/path")
    if not TAG.match(tag):
        raise ValueError(f"tag={tag!r} is not a valid image tag")
    names: list[str] = []
    lines = []
    for line in manifest.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        match = OWN_IMAGE.match(body)
        if match:
            names.append(match["name"])
            end = line[len(body) :]
            line = f"{match['indent']}{registry}/trading-{match['name']}:{tag}{end}"
        lines.append(line)
    return "".join(lines), names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", required=True, help="e.g. ghcr.io/acme (lowercase)")
    parser.add_argument("--tag", required=True, help="e.g. the commit SHA CI built")
    args = parser.parse_args(argv)
    try:
        out, names = set_images(sys.stdin.read(), args.registry, args.tag)
    except ValueError as exc:
        print(f"set_images: {exc}", file=sys.stderr)
        return 2
    if not names:
        print("set_images: no trading-<name> image found in the input", file=sys.stderr)
        return 2
    sys.stdout.write(out)
    print(f"set_images: {', '.join(names)} -> {args.registry} tag {args.tag}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
