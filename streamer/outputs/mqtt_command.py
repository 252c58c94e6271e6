"""``streamer mqtt retire CAMERA``: remove a camera that will not come back from the broker and
from Home Assistant (its retained state and its discovery configs); ``mqtt_session.py`` does the work."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``mqtt retire CAMERA [--mqtt HOST[:PORT]] [--force]``."""
    parser = subparsers.add_parser(
        "mqtt", help="MQTT housekeeping: retire a camera (remove its retained topics and Home Assistant entities)",
        description="retire CAMERA: clear every retained message under <prefix>/<CAMERA>/ and the camera's Home "
        "Assistant discovery configs (an empty retained message each, which removes its entities from Home "
        "Assistant). A run keeps a camera's entities on the broker after it ends (unavailable, not removed), so "
        "that a camera that restarts keeps its history; retire one that is gone for good. The broker, login and "
        "prefixes come from the config's mqtt section (--mqtt overrides the broker). Needs the mqtt extra: "
        "pip install 'streamer[mqtt]'.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", title="actions", required=True)
    retire = actions.add_parser("retire", help="remove a camera's retained topics and Home Assistant entities")
    retire.add_argument("camera", help="the camera name in the topics (mqtt.camera, or the name a run logged)")
    retire.add_argument("--mqtt", metavar="HOST[:PORT]", help="the broker (default: mqtt.host and mqtt.port)")
    retire.add_argument("--force", action="store_true",
                        help="retire it even though it is online (a run publishing it would put it back)")
    return parser


def main(args: argparse.Namespace) -> int:
    """``mqtt retire``: the topics cleared on stdout; MqttError (exit 2) when it cannot be done."""
    from ..config import override
    from .mqtt_messages import cli_overrides
    from .mqtt_session import retire

    config = args.config_obj
    if args.mqtt:
        config = override(config, cli_overrides(args.mqtt))
    cleared = retire(config.mqtt, args.camera, force=args.force)
    sys.stdout.write("".join(f"cleared {topic}\n" for topic in cleared))
    sys.stdout.write(f"camera {args.camera}: {len(cleared)} retained topics cleared on "
                     f"{config.mqtt.host}:{config.mqtt.port}\n")
    return 0
