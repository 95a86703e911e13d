"""Command line: ``python -m mlops_model {train,info,set-alias,prepare} ...`` printing JSON.

``prepare --name NAME --version N`` prepares a version registered by another tool
for the predictors' fast path (ONNX graph, check rows, tag ``mlops.fast_path``);
``train`` does that for the versions it registers.

Credentials for an MLflow server with basic auth come from MLflow's own
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``; with
``--password-stdin`` the password is read from standard input instead, so it
appears neither on a command line nor in an environment that a process
listing or a verbose Ansible log shows.

Exit status: 0 success, 1 bad input or registry error (message on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from mlops_model.ensure import ensure_model, model_info, prepare_version, set_alias
from mlops_model.errors import MlopsModelError
from mlops_model.registry import DEFAULT_REQUEST_TIMEOUT
from mlops_model.schema import DEFAULT_ALIAS, DEFAULT_MODEL_NAME
from mlops_model.train import TrainParams


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def _max_depth(text: str) -> int | None:
    if text.lower() in ("none", "null", ""):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer or 'none', got {text!r}") from None


def _connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI"),
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)",
    )
    parser.add_argument("--model-name", "--name", default=DEFAULT_MODEL_NAME)
    parser.add_argument(
        "--request-timeout",
        type=int,
        default=DEFAULT_REQUEST_TIMEOUT,
        help="seconds per HTTP request to MLflow",
    )
    parser.add_argument(
        "--username",
        default=os.environ.get("MLFLOW_TRACKING_USERNAME"),
        help="basic-auth user (default: $MLFLOW_TRACKING_USERNAME)",
    )
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the basic-auth password from the first line of standard input "
        "(default: $MLFLOW_TRACKING_PASSWORD)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m mlops_model", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="ensure a trained version exists and holds alias")
    _connection_args(train)
    train.add_argument(
        "--alias", default=DEFAULT_ALIAS, help="alias to move behind the gate; '' moves none"
    )
    train.add_argument("--experiment-name", default=None)
    defaults = TrainParams()
    train.add_argument("--n-estimators", type=int, default=defaults.n_estimators)
    train.add_argument("--max-depth", type=_max_depth, default=defaults.max_depth)
    train.add_argument("--min-samples-leaf", type=int, default=defaults.min_samples_leaf)
    train.add_argument("--random-state", type=int, default=defaults.random_state)
    train.add_argument("--test-size", type=float, default=defaults.test_size)
    train.add_argument("--min-accuracy", type=float, default=0.9)
    train.add_argument(
        "--force", action="store_true", help="promote even if worse than the current holder"
    )
    train.add_argument("--check", action="store_true", help="report, write nothing")
    train.add_argument(
        "--require-fast-path",
        action="store_true",
        help="move the alias only to a version prepared for the fast path",
    )

    info = commands.add_parser("info", help="versions and aliases of a registered model")
    _connection_args(info)

    alias = commands.add_parser("set-alias", help="point an alias at an existing version")
    _connection_args(alias)
    alias.add_argument("--alias", default=DEFAULT_ALIAS)
    alias.add_argument("--version", required=True)
    alias.add_argument(
        "--no-require-gate", action="store_true", help="allow a version tagged mlops.gate=failed"
    )
    alias.add_argument("--check", action="store_true")
    alias.add_argument(
        "--require-fast-path",
        action="store_true",
        help="refuse a version not tagged mlops.fast_path=passed",
    )

    prepare = commands.add_parser(
        "prepare", help="prepare a registered version for the predictors' fast path"
    )
    _connection_args(prepare)
    prepare.add_argument("--version", required=True)
    prepare.add_argument(
        "--force", action="store_true", help="prepare again even if already prepared"
    )
    prepare.add_argument("--check", action="store_true")
    return parser


def _password(args: argparse.Namespace) -> str | None:
    if not args.password_stdin:
        return os.environ.get("MLFLOW_TRACKING_PASSWORD")
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise MlopsModelError("--password-stdin: standard input holds no password")
    return password


def run(args: argparse.Namespace) -> dict[str, Any]:
    if not args.tracking_uri:
        raise MlopsModelError("--tracking-uri (or MLFLOW_TRACKING_URI) is required")
    common: dict[str, Any] = {
        "request_timeout": args.request_timeout,
        "username": args.username or None,
        "password": _password(args),
    }
    if args.command == "train":
        params = TrainParams(
            n_estimators=args.n_estimators,
            max_depth=args.max_depth,
            min_samples_leaf=args.min_samples_leaf,
            random_state=args.random_state,
            test_size=args.test_size,
        )
        return ensure_model(
            args.tracking_uri,
            args.model_name,
            args.alias or None,
            params,
            args.min_accuracy,
            args.force,
            args.check,
            require_fast_path=args.require_fast_path,
            experiment_name=args.experiment_name,
            **common,
        )
    if args.command == "info":
        return model_info(args.tracking_uri, args.model_name, **common)
    if args.command == "prepare":
        return prepare_version(
            args.tracking_uri,
            args.model_name,
            args.version,
            check_mode=args.check,
            force=args.force,
            **common,
        )
    return set_alias(
        args.tracking_uri,
        args.model_name,
        args.alias,
        args.version,
        check_mode=args.check,
        require_gate=not args.no_require_gate,
        require_fast_path=args.require_fast_path,
        **common,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except MlopsModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
