"""`fides-movable-ink`: install into Fides, build the upload zip, run the sandbox or the demo."""

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from fides_movable_ink import installer


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="fides-movable-ink", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    for name, help_text in (
        ("install", "make the Fides server in this Python environment offer and run the connector"),
        ("uninstall", "undo `install`"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument(
            "--fides-dir",
            type=Path,
            default=Path.cwd(),
            help="the Fides server's working directory (where it reads data/saas); default: here",
        )

    package = commands.add_parser("package", help="build the zip for Fides' 'Upload integration'")
    package.add_argument("-o", "--output", type=Path, default=Path("movable_ink.zip"))

    commands.add_parser("sandbox", help="serve a local Movable Ink DSR API simulator", add_help=False)
    commands.add_parser("demo", help="run an erasure through a real Fides against the sandbox", add_help=False)

    args, rest = parser.parse_known_args(argv)
    if args.command == "sandbox":
        from fides_movable_ink import sandbox

        return sandbox.main(rest)
    if args.command == "demo":
        from fides_movable_ink.devstack import demo

        return demo.main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")

    try:
        if args.command == "install":
            lines = installer.install(args.fides_dir.resolve())
            lines.append("Restart the Fides webserver and workers to load the connector.")
        elif args.command == "uninstall":
            lines = installer.uninstall(args.fides_dir.resolve())
            lines.append("Restart the Fides webserver and workers to unload the connector.")
        else:
            path = installer.package(args.output)
            lines = [
                f"wrote {path}",
                "Upload it in Fides (Integrations > Upload integration). Fides does not run Python "
                "from uploaded zips: run `fides-movable-ink install` in the Fides environment too.",
            ]
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
