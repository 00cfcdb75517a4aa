"""Console script ``isamap-publish``: prediction COGs as an Earth Engine image asset."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from contract.publishing import PublishOptions
from core.commands import (
    add_logging_arguments,
    claim_output_folder,
    configure_logging,
    run_command,
)
from core.errors import ConfigError, InputDataError, StorageError
from core.parsers import command_parser
from core.storage import files
from inference.publish.image import PublishRequest, publish

PUBLISH_EXAMPLES = (
    ("see the manifest and Code Editor script first (no upload, no Earth Engine call)",
     "isamap-publish --prefix maps/wuhan_2023-06 --asset-id isamap/wuhan_2023-06 "
     "--project my-project --gcs-prefix gs://my-bucket/isamap --dry-run"),
    ("ingest it, readable by everyone, and wait for the task",
     "isamap-publish --prefix maps/wuhan_2023-06 --asset-id isamap/wuhan_2023-06 "
     "--project my-project --gcs-prefix gs://my-bucket/isamap --public --wait"),
)


def publish_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "isamap-publish",
        "Publish prediction COGs as an Earth Engine image asset (ingestion or COG-backed), "
        "optionally shared, with a Code Editor script.", PUBLISH_EXAMPLES)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prefix", help="prediction prefix (uses <prefix>_class/_prob.tif)")
    src.add_argument("--class-cog", help="class COG (with --prob-cog)")
    p.add_argument("--prob-cog", help="probability COG (with --class-cog)")
    p.add_argument("--asset-id", required=True,
                   help="projects/<p>/assets/<path>, users/<u>/<path>, or a path in --project")
    p.add_argument("--project", help="Cloud project registered for Earth Engine")
    p.add_argument("--gcs-prefix", help="gs://bucket/prefix to upload local COGs to")
    p.add_argument("--mode", choices=("ingest", "external"), default="ingest",
                   help="ingest: Earth Engine copies the pixels; external: COG-backed asset")
    p.add_argument("--public", action="store_true", help="readable by everyone")
    p.add_argument("--reader", action="append", default=[], metavar="MEMBER",
                   help="extra reader, e.g. user:a@b.com (repeatable)")
    p.add_argument("--metrics", help="JSON file of metrics to record as asset properties")
    p.add_argument("--month", help="YYYY-MM (default: the COG's month tag)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an asset that already exists at --asset-id")
    p.add_argument("--wait", action="store_true", help="wait for the ingestion task")
    p.add_argument("--out-dir", help="where the manifest and script are saved "
                                     "(default: beside the COGs, or .)")
    p.add_argument("--dry-run", action="store_true",
                   help="print and save the manifest and script; no upload, no EE call")
    add_logging_arguments(p)
    return p


def publish_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``isamap-publish``; returns the exit status."""
    parser = publish_parser()
    args = parser.parse_args(argv)
    if args.class_cog and not args.prob_cog:
        parser.error("--class-cog needs --prob-cog")
    configure_logging(args.verbose, args.quiet, args.debug)
    return run_command("isamap-publish", lambda: _publish(args), debug=args.debug)


def _publish(args: argparse.Namespace) -> int:
    options = PublishOptions(project=args.project, gcs_prefix=args.gcs_prefix,
                             public=args.public, readers=tuple(args.reader),
                             overwrite=args.overwrite, wait=args.wait)  # checked first
    class_cog = args.class_cog or f"{args.prefix}_class.tif"
    prob_cog = args.prob_cog or f"{args.prefix}_prob.tif"
    out_dir = args.out_dir or ("." if files.is_gcs(class_cog) else str(Path(class_cog).parent))
    for flag, path in (("--class-cog", class_cog), ("--prob-cog", prob_cog)):
        if not files.is_gcs(path) and not Path(path).exists():
            given = (f"--prefix {args.prefix}: {path}" if args.prefix else f"{flag} {path}")
            raise InputDataError(f"{given} does not exist; give the prefix of the maps "
                                 "isamap-predict wrote (PREFIX_class.tif, PREFIX_prob.tif) or "
                                 "the COGs themselves (--class-cog, --prob-cog)")
    try:
        metrics = json.loads(Path(args.metrics).read_text()) if args.metrics else {}
    except (FileNotFoundError, IsADirectoryError) as exc:
        what = "is a folder" if isinstance(exc, IsADirectoryError) else "does not exist"
        raise ConfigError(f"--metrics {args.metrics} {what}; give a JSON file of "
                          "metric: value") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--metrics {args.metrics} is not JSON ({exc}); give a JSON object "
                          "of metric: value") from None
    _check_out_dir(out_dir)
    request = PublishRequest(class_cog, prob_cog, args.asset_id, options, mode=args.mode,
                             metrics=metrics, month=args.month)
    result = publish(request, out_dir, dry_run=args.dry_run, echo=print)
    print(f"asset {result.asset}: {result.state}"
          + (f" (task {result.task_id})" if result.task_id else ""))
    return 0


def _check_out_dir(out_dir: str) -> None:
    """Refuse a folder the manifest and script cannot be saved in, or one another run holds.

    Before any upload; the folder stays held until the command ends (one run per folder).
    """
    try:
        claim_output_folder("--out-dir", out_dir)
    except OSError as exc:
        raise StorageError(f"the manifest and script cannot be saved in {out_dir} "
                           f"({exc.strerror or exc}); give --out-dir DIR, a folder you can "
                           "write to") from None


if __name__ == "__main__":  # ``python -m cli.publish``, the same as isamap-publish
    raise SystemExit(publish_main())
