#!/usr/bin/env python3
"""Regenerate the documented default config from the schema in streamer/config/ (defaults +
descriptions): the packaged one (streamer/data/config.yaml, read when there is no ./config.yaml and
no --config) and its copy at the repository root.

    python tools/write_config.py --write      # both files
    python tools/write_config.py > my.yaml    # a copy to edit

The schema is the one source of truth; tests/config/test_config.py checks both files match it.
"""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streamer.config import PACKAGED_CONFIG, REPO_ROOT, CameraConfig, Config  # noqa: E402

TARGETS = (PACKAGED_CONFIG, REPO_ROOT / "config.yaml")

HEADER = """\
# streamer configuration. Every key is optional: a missing key takes the default shown here.
# Unknown keys and out-of-range values are rejected at start-up with the key's path.
# Command-line flags (--no-window, --output, ...) override these. With no --config, streamer reads
# ./config.yaml if there is one, else these defaults (packaged with it). Generated from the schema
# in streamer/config/ (`python tools/write_config.py --write` in a checkout).
"""


def _yaml_value(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text[:-4].strip() if text.endswith("\n...") else text.replace("\n...", "")


def render(config: Config) -> str:
    out = [HEADER]
    values = config.to_dict()  # plain lists, as YAML writes them
    for section_field in dataclasses.fields(config):
        section_name = section_field.name
        if section_name == "cameras":
            out.extend(_cameras(section_field, values[section_name]))
            continue
        out.append(f"\n{section_name}:")
        for field in dataclasses.fields(getattr(config, section_name)):
            for line in textwrap.wrap(field.metadata["description"], width=94):
                out.append(f"  # {line}")
            out.append(f"  {field.name}: {_yaml_value(values[section_name][field.name])}")
    return "\n".join(out) + "\n"


def _cameras(field, value) -> list:
    """The cameras mapping: its description, each camera key's (commented: there is no default
    camera), and its value."""
    out = [""]
    for line in textwrap.wrap(field.metadata["description"], width=96):
        out.append(f"# {line}")
    out.append("# Keys of each camera:")
    for key_field in dataclasses.fields(CameraConfig):
        for i, line in enumerate(textwrap.wrap(key_field.metadata["description"], width=84)):
            out.append(f"#   {key_field.name + ':' if i == 0 else '':<12} {line}".rstrip())
    out.append(f"cameras: {_yaml_value(value)}")
    return out


if __name__ == "__main__":
    text = render(Config())
    if sys.argv[1:] == ["--write"]:
        for target in TARGETS:
            target.write_text(text, encoding="utf-8")
            sys.stderr.write(f"wrote {target}\n")
    else:
        sys.stdout.write(text)
