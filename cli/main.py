"""The `convbot` command: argument parsing only; the work is done by importable functions."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cli.doctor import run_doctor
from cli.render import render_quant_choices, render_result, render_summary, render_validation
from converter.errors import BadOptionsError, ConvbotError
from converter.inspection import inspect
from converter.isolation import convert_variants
from converter.options import (
    DEFAULT_MAX_CALIBRATION_MB,
    INPUT_RANGES,
    ConversionOptions,
    parse_shape,
    parse_targets,
    quantization_variants,
    split_quantization,
)
from converter.quant_choice import AUTO, choose_smallest_passing, remove_unchosen, tried_variants
from converter.quant_plot import write_size_error_plot
from converter.result import ConversionResult


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convbot",
        description="Turn trained TensorFlow models into TensorFlow Lite and TensorFlow.js files.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    inspect = commands.add_parser("inspect", help="show a model's nodes and suggested inputs and outputs")
    inspect.add_argument("model", type=Path, help="frozen graph, SavedModel folder or archive, Keras file")
    inspect.add_argument("--json", action="store_true", help="print JSON for scripts")
    inspect.add_argument("--all-nodes", action="store_true", help="list every node, not the first 40")

    convert = commands.add_parser("convert", help="convert a model to TFLite, TF.js, a frozen graph or a SavedModel")
    convert.add_argument("model", type=Path)
    convert.add_argument(
        "--to",
        default="tflite,tfjs",
        help="tflite, tfjs, tfjs-layers (Keras), pb (frozen graph), savedmodel (zipped); comma-separated; all",
    )
    convert.add_argument("--inputs", default="", help="input nodes or signature keys, comma-separated")
    convert.add_argument("--outputs", default="", help="output nodes or signature keys, comma-separated")
    convert.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="NAME:DIMS",
        help="full shape of an input, e.g. image:1,224,224,3, or ratio:scalar (repeatable)",
    )
    convert.add_argument(
        "--quant",
        default="none",
        help="none, float16, dynamic, uint8, uint16, int8, int8-io (TFLite full-integer, with --calibration), "
        "or per target: tflite:dynamic,tfjs:uint16; auto: per target the smallest file that passes its tolerance",
    )
    convert.add_argument(
        "--calibration",
        type=Path,
        metavar="FILE",
        help="int8: your samples, an .npz/.npy of inputs or a .zip/.tar.gz of JPEG/PNG images "
        "(in one folder per class: also the top-1 agreement)",
    )
    convert.add_argument(
        "--input-range",
        choices=list(INPUT_RANGES),
        help="int8 from images: what the model's input takes for pixels 0..255",
    )
    convert.add_argument("-o", "--output-dir", type=Path, default=Path("out"), help="where to write (default ./out)")
    convert.add_argument("--timeout", type=float, default=600.0, help="seconds before the conversion is stopped")
    convert.add_argument("--no-verify", action="store_true", help="skip running and comparing the artifacts")
    convert.add_argument(
        "--verify-inputs",
        type=Path,
        metavar="FILE",
        help="also verify on these inputs: a .npy (one input) or .npz keyed by input name",
    )
    convert.add_argument(
        "--compare-quant",
        action="store_true",
        help="convert every quantization variant and print their sizes and errors side by side",
    )
    convert.add_argument(
        "--plot",
        type=Path,
        metavar="FILE.png",
        help="with --compare-quant or --quant auto: draw each variant's size against its error",
    )
    convert.add_argument("--json", action="store_true", help="print JSON for scripts")
    database = commands.add_parser("db", help="database maintenance")
    database.add_argument(
        "action",
        choices=["upgrade", "check", "current"],
        help="upgrade: migrate to the newest schema; check: models and database agree; current: the schema revision",
    )

    commands.add_parser(
        "run", help="run the bot: on Telegram with CONVBOT_TOKEN set, else in this terminal (console mode)"
    )

    commands.add_parser(
        "worker",
        help="run a conversion worker for the bot (CONVBOT_WORKERS processes); needs only CONVBOT_BROKER_URL",
    )

    cleanup = commands.add_parser("cleanup", help="delete expired models and artifacts now (for cron)")
    cleanup.add_argument("--dry-run", action="store_true", help="only say what would be removed")

    doctor = commands.add_parser(
        "doctor", help="check settings, database, TensorFlow, Node.js, disk space and the Bot API; exit 1 on a failure"
    )
    doctor.add_argument("--quick", action="store_true", help="skip the slow TensorFlow import (for health checks)")
    return parser


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def run_inspect(args: argparse.Namespace) -> int:
    summary = inspect(args.model)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=1))
    else:
        print(render_summary(summary, all_nodes=args.all_nodes))
    return 0


def run_convert(args: argparse.Namespace) -> int:
    # Imported by the commands that use them, not at every start (`convbot --help`: 0.5 s; every import at the
    # top: 2.9 s): here numpy and the converter's pipeline, 0.45 s; below SQLAlchemy, Alembic, pydantic-settings
    # and python-telegram-bot.
    from converter.conversion import artifact_stem

    auto = args.quant.strip().lower() == AUTO  # converts what --compare-quant does, then keeps the smallest passing
    _check_variant_options(args, auto)
    tflite_quant, tfjs_quant, warnings = split_quantization("none" if auto else args.quant)
    variants_wanted = bool(args.compare_quant or auto)
    # With several variants, the samples go to the int8 variant alone (see quantization_variants).
    calibration = str(args.calibration) if args.calibration else None
    options = ConversionOptions(
        targets=parse_targets(args.to),
        inputs=_split(args.inputs),
        outputs=_split(args.outputs),
        shapes=tuple(parse_shape(text) for text in args.shape),
        tflite_quantization=tflite_quant,
        tfjs_quantization=tfjs_quant,
        verify=not args.no_verify,
        verify_inputs=str(args.verify_inputs) if args.verify_inputs else None,
        warnings=tuple(warnings),
        calibration=None if variants_wanted else calibration,
        input_range=args.input_range,
        max_calibration_mb=_max_calibration_mb() if args.calibration else DEFAULT_MAX_CALIBRATION_MB,
    )
    stem = artifact_stem(args.model)
    if variants_wanted:
        variants: list[tuple[ConversionOptions, str | None]] = [
            (variant, f"{stem}_{name}") for name, variant in quantization_variants(options, calibration)
        ]
    else:
        variants = [(options, stem)]
    results = convert_variants(args.model, args.output_dir, variants, timeout=args.timeout)
    if auto:
        return _keep_smallest_passing(results, args)
    if args.plot:
        write_size_error_plot(tried_variants(results), args.plot, title=_plot_title(args))
    if args.json:
        data = [result.to_dict() for result in results]
        print(json.dumps(data if args.compare_quant else data[0], indent=1))
    elif args.compare_quant:
        print(render_validation(results))
    else:
        print(render_result(results[0]))
    failed = any(check.status in ("failed", "error") for result in results for check in result.validation)
    return 2 if failed else 0


def _check_variant_options(args: argparse.Namespace, auto: bool) -> None:
    if auto and args.no_verify:
        raise BadOptionsError("--quant auto chooses by verifying every variant; leave out --no-verify")
    if args.plot and not (auto or args.compare_quant):
        raise BadOptionsError("--plot draws the variants of --compare-quant or --quant auto; add one of them")
    if args.plot and not args.plot.resolve().parent.is_dir():  # said before minutes of converting, not after
        raise BadOptionsError(f"--plot: there is no folder {args.plot.resolve().parent}")


def _plot_title(args: argparse.Namespace) -> str:
    return f"{args.model.name}: size against error of each quantization"


def _keep_smallest_passing(results: list[ConversionResult], args: argparse.Namespace) -> int:
    """`--quant auto`: per target, keep the smallest passing file, delete the others, say why; exit 2 when a
    target keeps a file that fails (nothing quantized passed, nor float32) or none at all."""
    choices = choose_smallest_passing(tried_variants(results))
    remove_unchosen(choices)
    if args.plot:
        kept = [choice.kept for choice in choices if choice.kept is not None]
        tried = [variant for choice in choices for variant in choice.tried]
        write_size_error_plot(tried, args.plot, kept=kept, title=_plot_title(args))
    if args.json:
        print(json.dumps({"choices": [choice.to_dict() for choice in choices]}, indent=1))
    else:
        print(render_quant_choices(choices))
    return 0 if all(choice.kept is not None and choice.kept.passed for choice in choices) else 2


def _max_calibration_mb() -> float:
    from jobs.settings import load_settings

    return load_settings().max_calibration_mb


def _attach_input_range(argv: Sequence[str]) -> list[str]:
    """`--input-range -1,1` as `--input-range=-1,1`: argparse takes a value starting with '-' for an option."""
    joined: list[str] = []
    for arg in argv:
        if joined and joined[-1] == "--input-range" and arg.startswith("-") and arg not in ("-h", "--help"):
            joined[-1] = f"--input-range={arg}"
        else:
            joined.append(arg)
    return joined


def run_db(args: argparse.Namespace) -> int:
    # Per command: see run_convert.
    from db import migrate
    from jobs.settings import load_settings

    url = load_settings().sqlalchemy_url
    if args.action == "upgrade":
        migrate.upgrade(url)
        print(f"database at revision {migrate.current_revision(url)}")
        return 0
    if args.action == "current":
        print(migrate.current_revision(url) or "not migrated")
        return 0
    problems = migrate.check(url)
    for problem in problems:
        print(problem)
    print("models and database agree" if not problems else f"{len(problems)} differences")
    return 1 if problems else 0


def run_cleanup_once(args: argparse.Namespace) -> int:
    # Per command: see run_convert.
    from db.session import open_database
    from jobs.cleanup import run_cleanup
    from jobs.settings import load_settings

    settings = load_settings()
    sessions = open_database(settings.sqlalchemy_url)
    with sessions() as session:
        report = run_cleanup(session, settings, dry_run=args.dry_run)
        if not args.dry_run:
            session.commit()
    for path in report.removed:
        print(f"{'would remove' if args.dry_run else 'removed'}: {path}")
    print(report.summary())
    return 0


def run_bot_command(args: argparse.Namespace) -> int:
    # Per command: see run_convert.
    from bot.app import run_bot
    from bot.settings import BotSettings
    from jobs.settings import load_settings_as
    from jobs.startup_checks import check_services

    settings = load_settings_as(BotSettings)
    check_services(settings)  # a bad storage or broker setting stops here, in one line
    if settings.token:
        run_bot(settings)
        return 0
    # No token: the same bot against an embedded Bot API server, with a chat in this terminal. Imported here: the
    # bot with a token starts without the emulator's server (0.36 s).
    from bot.console import run_console

    asyncio.run(run_console(settings))
    return 0


def run_worker_command(args: argparse.Namespace) -> int:
    from jobs.celery_app import run_worker
    from jobs.settings import load_settings

    return run_worker(load_settings())


def run_doctor_command(args: argparse.Namespace) -> int:
    return run_doctor(quick=args.quick)


def main(argv: Sequence[str] | None = None) -> int:
    # pydantic-settings (0.7 s) is not needed to print `--help` or a usage error.
    from jobs.settings import SettingsError

    args = _build_parser().parse_args(_attach_input_range(sys.argv[1:] if argv is None else argv))
    handlers = {
        "inspect": run_inspect,
        "convert": run_convert,
        "db": run_db,
        "cleanup": run_cleanup_once,
        "run": run_bot_command,
        "worker": run_worker_command,
        "doctor": run_doctor_command,
    }
    try:
        return handlers[args.command](args)
    except SettingsError as error:
        print(f"convbot: {error}", file=sys.stderr)
        return 2
    except ConvbotError as error:
        print(f"convbot: {error.message}", file=sys.stderr)
        if getattr(args, "json", False):
            print(json.dumps({"error": error.message, "kind": type(error).__name__, "log": error.log}))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`convbot inspect big.pb | head`): no traceback; stdout is pointed at
        # /dev/null so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
